/* One run: status, timings, result, error, output (a running run's output as its worker
   writes it at each heartbeat); cancel and retry. Live until final. */
"use strict";

Sundial.page(() => {
  const { api, el, fill, $, ago, statusBadge, duration, FINAL, CANCELLABLE, RETRYABLE, isAdmin } = Sundial;
  const id = document.body.dataset.runId;
  let run = null;

  function fact(label, value) {
    return [el("dt", {}, label), el("dd", {}, value === null || value === undefined || value === "" ? "—" : value)];
  }

  function show(r) {
    run = r;
    document.title = `Run #${r.id} · ${r.job} · Sundial`;
    fill($("#run-title"), `Run #${r.id} · `, el("a", { href: "/jobs/" + r.job_id }, r.job));
    fill($("#run-status"), statusBadge(r.status), r.cancel_requested && !FINAL.includes(r.status) ? el("span", { class: "muted" }, " (stopping)") : null);
    const wait = r.started_at ? (new Date(r.started_at) - new Date(r.available_at)) / 1000 : null;
    fill($("#run-facts"),
      fact("Handler", el("span", { class: "mono" }, r.handler)),
      fact("Trigger", r.trigger + (r.triggered_by ? " by " + r.triggered_by : "")),
      fact("Schedule", r.schedule_id ? "#" + r.schedule_id : null),
      fact("Attempt", r.attempt + " of " + r.max_attempts),
      fact("Scheduled for", Sundial.time(r.scheduled_for)),
      fact("Available at", Sundial.time(r.available_at)),
      fact("Published", Sundial.time(r.published_at)),
      fact("Started", Sundial.time(r.started_at)),
      fact("Finished", Sundial.time(r.finished_at)),
      fact("Waited", wait === null ? null : duration(Math.max(wait, 0))),
      fact("Duration", duration(r.duration_s)),
      fact("Last heartbeat", ago(r.heartbeat_at)),
      fact("Worker", r.worker_id ? el("span", { class: "mono" }, r.worker_id) : null));
    $("#run-result").textContent = r.result === null || r.result === undefined ? "—" : JSON.stringify(r.result, null, 2);
    const out = $("#run-output");
    const following = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    out.textContent = r.output || "—";
    if (r.status === "running" && following) out.scrollTop = out.scrollHeight;  // follow the tail
    fill($("#run-output-at"), r.status === "running" && r.output_at ? ["live, last written ", ago(r.output_at)] : "");
    $("#error-card").hidden = !r.error;
    $("#run-error").textContent = r.error || "";
    if (isAdmin()) {
      // Cancel while queued or running; retry only what did not succeed (a succeeded or
      // skipped run has nothing to retry: run its job again instead).
      $("#cancel").hidden = !CANCELLABLE.includes(r.status) || r.cancel_requested;
      $("#retry").hidden = !RETRYABLE.includes(r.status);
    }
  }

  async function refresh() {
    if (run && FINAL.includes(run.status)) return;
    show(await api("GET", "/api/runs/" + id));
  }

  if (isAdmin()) {
    $("#cancel").addEventListener("click", async () => {
      if (!confirm(`Cancel run #${id}?`)) return;
      try {
        const result = await api("POST", `/api/runs/${id}/cancel`);
        Sundial.flash(result.status === "cancelled" ? "Run cancelled." : "The worker was asked to stop the run.");
        run = null;
        tick();
      } catch (err) { Sundial.flash(err.message, "error"); }
    });
    $("#retry").addEventListener("click", async () => {
      try {
        const queued = await api("POST", `/api/runs/${id}/retry`);
        location.assign("/runs/" + queued.run_id);
      } catch (err) { Sundial.flash(err.message, "error"); }
    });
  }

  const tick = Sundial.poll(refresh, 1500);
  // A final run is no longer polled: a new zone choice still redraws its times.
  document.addEventListener("sundial:zone", () => { if (run) show(run); });
});
