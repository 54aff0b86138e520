/* Runs: the history with filters (kept in the address), newest first, live while open. */
"use strict";

Sundial.page(() => {
  const { api, el, fill, $, when, statusBadge, duration, isAdmin } = Sundial;
  const form = $("#run-filters");
  const params = new URLSearchParams(location.search);
  const rows = new Map();
  let cursor = null;
  let older = false;
  let total = null;
  let totalExact = true;

  for (const name of ["status", "queue"]) {
    if (params.get(name)) form.elements[name].value = params.get(name);
  }

  /* From and Until are wall times in the zone the user picked; the address keeps instants. */
  function showRange() {
    const shown = new URLSearchParams(location.search);
    for (const name of ["since", "until"]) {
      form.elements[name].value = shown.get(name) ? Sundial.localIn(shown.get(name)) : "";
    }
    Sundial.$$("[data-zone-name]").forEach((node) => { node.textContent = "(" + Sundial.zone() + ")"; });
  }
  showRange();
  document.addEventListener("sundial:zone", showRange);

  function query(extra) {
    const q = new URLSearchParams({ limit: "50", ...extra });
    const job = form.elements.job.value || params.get("job");
    if (job) q.set("job", job);
    if (form.elements.status.value) q.set("status", form.elements.status.value);
    if (form.elements.queue.value.trim()) q.set("queue", form.elements.queue.value.trim());
    for (const name of ["since", "until"]) {
      const instant = Sundial.instantIn(form.elements[name].value);
      if (instant) q.set(name, instant);
    }
    return q;
  }

  function row(r) {
    return el("tr", { dataset: { run: r.id, status: r.status } },
      el("td", { "data-label": "Run" }, el("a", { href: "/runs/" + r.id }, "#" + r.id)),
      el("td", { "data-label": "Job" }, el("a", { href: "/jobs/" + r.job_id }, r.job)),
      el("td", { "data-label": "Status" }, statusBadge(r.status)),
      el("td", { "data-label": "Trigger" }, r.trigger, r.triggered_by ? el("span", { class: "muted" }, " by " + r.triggered_by) : null),
      el("td", { "data-label": "Attempt" }, r.attempt + " of " + r.max_attempts),
      el("td", { "data-label": "Scheduled for" }, when(r.scheduled_for)),
      el("td", { "data-label": "Started" }, when(r.started_at)),
      el("td", { "data-label": "Duration" }, duration(r.duration_s)));
  }

  function render() {
    const all = [...rows.values()].sort((a, b) => b.id - a.id);
    fill($("#runs tbody"), all.length ? all.map(row) : el("tr", {}, el("td", { class: "empty", colspan: 8 }, "No runs match.")));
    $("#older").hidden = !cursor;
    if (total !== null) {
      $("#runs-count").textContent = total ? Sundial.countOf(all.length, total, "run", totalExact) : "";
    }
  }

  /* The newest page: new runs appear, shown ones change status in place. */
  async function refresh() {
    const page = await api("GET", "/api/runs?" + query().toString());
    if (!older) { rows.clear(); cursor = page.next_cursor; }
    total = page.total;
    totalExact = page.total_exact;
    for (const r of page.items) rows.set(r.id, r);
    render();
  }

  $("#older").addEventListener("click", async () => {
    const page = await api("GET", "/api/runs?" + query({ cursor: String(cursor) }).toString());
    older = true;
    total = page.total;
    totalExact = page.total_exact;
    for (const r of page.items) rows.set(r.id, r);
    cursor = page.next_cursor;
    render();
  });

  function refilter() {
    const q = query();
    q.delete("limit");
    history.replaceState(null, "", "/runs" + (q.toString() ? "?" + q.toString() : ""));
    params.delete("job");
    older = false;
    rows.clear();
    tick();
  }
  form.addEventListener("change", refilter);
  form.addEventListener("reset", () => setTimeout(refilter, 0));
  form.addEventListener("submit", (event) => { event.preventDefault(); refilter(); });

  const tick = Sundial.poll(refresh, 3000);

  /* The list's filters as the body of a bulk action. */
  function selection() {
    const q = query();
    const body = {};
    for (const name of ["job", "queue", "since", "until"]) if (q.get(name)) body[name] = q.get(name);
    if (q.get("status")) body.status = [q.get("status")];
    return body;
  }

  /* Count first (dry_run), confirm, then act on the runs the filters select. */
  async function bulk(action, what, done) {
    const body = selection();
    const dry = await api("POST", `/api/runs/${action}`, { ...body, dry_run: true });
    if (!dry.matched) { Sundial.flash(`No ${what} run matches these filters.`); return; }
    if (!confirm(`${action === "cancel" ? "Cancel" : "Retry"} ${dry.matched} ${what} ${dry.matched === 1 ? "run" : "runs"}?`)) return;
    Sundial.flash(done(await api("POST", `/api/runs/${action}`, body)));
    older = false;
    tick();
  }

  if (isAdmin()) {
    $("#bulk-cancel").addEventListener("click", () => bulk("cancel", "queued or running",
      (r) => `${r.cancelled} cancelled` + (r.stopping ? `, ${r.stopping} asked to stop.` : ".")).catch((err) => Sundial.flash(err.message, "error")));
    $("#bulk-retry").addEventListener("click", () => bulk("retry", "failed, dead, timed out or cancelled",
      (r) => `${r.queued.length} new ${r.queued.length === 1 ? "run" : "runs"} queued.`).catch((err) => Sundial.flash(err.message, "error")));
  }

  api("GET", "/api/jobs?limit=1000").then((jobs) => {
    const wanted = params.get("job");
    for (const j of jobs) form.elements.job.append(el("option", { value: String(j.id) }, j.name));
    if (wanted) {
      const match = jobs.find((j) => String(j.id) === wanted || j.name === wanted);
      if (match) form.elements.job.value = String(match.id);
    }
  }).catch(() => {});
});
