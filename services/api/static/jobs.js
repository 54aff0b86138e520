/* Jobs: every job with its schedules in words, next run, last status; run now, pause, resume. */
"use strict";

Sundial.page(() => {
  const { api, el, fill, $, when, statusBadge, action, isAdmin, describeSchedule } = Sundial;

  function scheduleCell(schedules) {
    if (!schedules.length) return el("span", { class: "muted" }, "only when run by hand");
    return schedules.map((s) => el("div", { class: s.is_active ? "" : "muted", title: s.set_aside_at ? s.last_error : null },
      describeSchedule(s), s.set_aside_at ? " (set aside: cannot be planned)" : s.is_active ? null : " (paused)"));
  }

  function actions(job) {
    if (!isAdmin()) return null;
    return el("div", { class: "actions", dataset: { write: "" } },
      action("Run now", async () => {
        const queued = await api("POST", `/api/jobs/${job.id}/trigger`);
        Sundial.flash(`Run #${queued.run_id} of ${job.name} queued.`, "ok", { href: "/runs/" + queued.run_id, text: "Open it" });
        refresh();
      }, { class: "btn small primary", "data-action": "run-now" }),
      action(job.enabled ? "Pause" : "Resume", async () => {
        await api("POST", `/api/jobs/${job.id}/${job.enabled ? "pause" : "resume"}`);
        refresh();
      }, { class: "btn small", "data-action": job.enabled ? "pause" : "resume" }));
  }

  /* The zone of the schedule whose slot this is: a fire time reads in its schedule's zone. */
  function zoneOf(iso, schedules) {
    const s = schedules.find((x) => x.is_active && x.next_run_at && new Date(x.next_run_at).getTime() === new Date(iso).getTime());
    return s ? s.timezone : undefined;
  }

  function row(job, schedules) {
    return el("tr", { dataset: { job: job.name } },
      el("td", { "data-label": "Name" }, el("a", { href: "/jobs/" + job.id }, job.name),
        job.managed_by === "code" ? [" ", Sundial.codeBadge()] : null,
        job.description ? el("div", { class: "muted" }, job.description) : null),
      el("td", { "data-label": "Handler" }, el("span", { class: "mono" }, job.handler)),
      el("td", { "data-label": "Schedule", class: "schedule" }, scheduleCell(schedules)),
      el("td", { "data-label": "Next run" }, job.enabled ? when(job.next_run_at, zoneOf(job.next_run_at, schedules)) : el("span", { class: "muted" }, "paused")),
      el("td", { "data-label": "Last status" }, job.last_run_status ? statusBadge(job.last_run_status) : el("span", { class: "muted" }, "never run")),
      el("td", { "data-label": "Enabled" }, el("span", { class: "pill " + (job.enabled ? "on" : "off") }, job.enabled ? "enabled" : "paused")),
      el("td", { class: "actions-cell" }, actions(job)));
  }

  async function refresh() {
    const [page, schedules] = await Promise.all([
      Sundial.list("/api/jobs?limit=1000"), api("GET", "/api/schedules?limit=1000")]);
    const jobs = page.items;
    $("#jobs-count").textContent = page.total ? Sundial.countOf(jobs.length, page.total, "job") : "";
    const byJob = new Map();
    for (const s of schedules) byJob.set(s.job_id, [...(byJob.get(s.job_id) || []), s]);
    fill($("#jobs tbody"), jobs.length ? jobs.map((j) => row(j, byJob.get(j.id) || []))
      : el("tr", {}, el("td", { class: "empty", colspan: 7 }, "No jobs yet.",
        isAdmin() ? [" ", el("a", { href: "/jobs/new" }, "Create one")] : null)));
  }

  Sundial.poll(refresh, 5000);
});
