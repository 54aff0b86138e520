/* Overview: scheduler status, totals, workers, runs per minute over the last hour. */
"use strict";

Sundial.page(() => {
  const { api, el, fill, $, when, ago, statusBadge, duration, action, isAdmin } = Sundial;
  const ORDER = ["succeeded", "failed", "timed_out", "dead", "cancelled", "skipped", "running", "queued"];
  const MINUTES = 60;

  const trigger = $("#trigger-scheduler");
  if (trigger) {
    trigger.addEventListener("click", async () => {
      trigger.disabled = true;
      try {
        await api("POST", "/api/scheduler/trigger");
        Sundial.flash("A scheduler pass was requested.");
        setTimeout(refresh, 800);
      } catch (err) { Sundial.flash(err.message, "error"); } finally { trigger.disabled = false; }
    });
  }

  function showScheduler(s) {
    const badge = $("#scheduler-badge");
    badge.className = "badge " + s.status;
    badge.textContent = s.status;
    badge.title = s.status === "stale" ? "No scheduler pass for more than " + s.stale_after_s + " s" : "";
    fill($("#scheduler-last"), ago(s.last_run));
    fill($("#scheduler-next"), ago(s.next_run), s.trigger_requested ? " (a pass was requested)" : "");
    const live = s.instances.filter((i) => i.status === "running");
    fill($("#scheduler-instances"), s.instances.length
      ? live.length + " of " + s.instances.length + " " + (s.instances.length === 1 ? "instance" : "instances")
        + " (" + s.instances.map((i) => i.host + ":" + i.pid + " " + i.status).join(", ") + ")"
      : "none seen yet");
    // The API's tzdata release, and any running instance's that differs from it.
    const other = [...new Set(live.map((i) => i.tzdata).filter((v) => v && v !== s.tzdata))];
    fill($("#scheduler-tzdata"), "tzdata " + s.tzdata + (other.length ? " (schedulers: " + other.join(", ") + ")" : ""));
    // A RabbitMQ memory or disk alarm blocks publishing: runs wait in the outbox.
    const blocked = live.filter((i) => i.broker_blocked_since);
    fill($("#scheduler-broker"), blocked.length
      ? el("span", { class: "badge blocked" }, "blocked")
      : "publishing", blocked.length
      ? [" by RabbitMQ since ", when(blocked[0].broker_blocked_since),
        " (" + (blocked[0].broker_blocked_reason || "no reason given") + "): runs wait in the outbox"]
      : []);
  }

  function showStats(s, workers) {
    const j = s.jobs, x = s.executions;
    $("#stat-jobs").textContent = j.total;
    $("#stat-jobs-sub").textContent = j.enabled + " enabled, " + j.disabled + " paused";
    $("#stat-runs").textContent = x.total;
    $("#stat-runs-sub").textContent = x.successful + " succeeded, " + x.failed + " failed, "
      + x.running + " running, " + x.queued + " queued";
    $("#stat-rate").textContent = x.success_rate === null ? "—" : (x.success_rate * 100).toFixed(1) + " %";
    $("#stat-rate-sub").textContent = "of finished runs";
    const online = workers.filter((w) => w.online);
    $("#stat-workers").textContent = online.length;
    $("#stat-workers-sub").textContent = workers.length - online.length + " offline";
    fill($("#workers tbody"), workers.length ? workers.map((w) => el("tr", {},
      el("td", { "data-label": "Worker" }, el("span", { class: "pill " + (w.online ? "on" : "off") }, w.online ? "online" : "offline"),
        " ", el("span", { class: "mono" }, w.host + ":" + w.pid)),
      el("td", { "data-label": "Queues" }, w.queues.join(", ")),
      el("td", { "data-label": "Running" }, w.running + " / " + w.concurrency),
      el("td", { "data-label": "Heartbeat" }, ago(w.last_heartbeat)))) : el("tr", {}, el("td", { class: "empty", colspan: 4 }, "No worker has registered yet.")));
  }

  /* Queues: paused ones hold their runs (queued, unpublished) until resumed. */
  function showQueues(q) {
    const note = $("#all-paused");
    note.hidden = !q.all_paused;
    if (q.all_paused) fill(note, "Every queue is paused since ", when(q.all_paused_at), " by " + q.all_paused_by + ": no run is published.");
    const all = $("#pause-all");
    if (all) all.textContent = q.all_paused ? "Resume every queue" : "Pause every queue";
    const state = (x) => (x.paused ? el("span", { class: "pill off", title: "since " + Sundial.time(x.paused_at) + " by " + x.paused_by }, "paused")
      : q.all_paused ? el("span", { class: "pill off" }, "held (all paused)") : el("span", { class: "pill on" }, "publishing"));
    fill($("#queues tbody"), q.queues.length ? q.queues.map((x) => el("tr", { dataset: { queue: x.queue } },
      el("td", { "data-label": "Queue" }, el("span", { class: "mono" }, x.queue)),
      el("td", { "data-label": "State" }, state(x)),
      el("td", { "data-label": "Jobs" }, x.jobs),
      el("td", { "data-label": "Queued runs" }, el("a", { href: "/runs?" + new URLSearchParams({ queue: x.queue, status: "queued" }) }, x.queued)),
      el("td", { class: "actions-cell" }, isAdmin() ? action(x.paused ? "Resume" : "Pause", async () => {
        await api("POST", `/api/queues/${encodeURIComponent(x.queue)}/${x.paused ? "resume" : "pause"}`);
        refresh();
      }, { class: "btn small", "data-action": x.paused ? "resume" : "pause" }) : null)))
      : el("tr", {}, el("td", { class: "empty", colspan: 5 }, "No job yet, so no queue.")));
    lastQueues = q;
  }
  let lastQueues = null;

  const pauseAll = $("#pause-all");
  if (pauseAll) {
    pauseAll.addEventListener("click", async () => {
      const resume = lastQueues && lastQueues.all_paused;
      if (!resume && !confirm("Pause every queue? No run will be published until you resume.")) return;
      pauseAll.disabled = true;
      try {
        await api("POST", `/api/queues/${resume ? "resume" : "pause"}`);
        Sundial.flash(resume ? "Every queue resumed." : "Every queue paused.");
        refresh();
      } catch (err) { Sundial.flash(err.message, "error"); } finally { pauseAll.disabled = false; }
    });
  }

  function showRecent(runs) {
    fill($("#recent-runs tbody"), runs.length ? runs.slice(0, 10).map((r) => el("tr", {},
      el("td", { "data-label": "Run" }, el("a", { href: "/runs/" + r.id }, "#" + r.id)),
      el("td", { "data-label": "Job" }, el("a", { href: "/jobs/" + r.job_id }, r.job)),
      el("td", { "data-label": "Status" }, statusBadge(r.status)),
      el("td", { "data-label": "Created" }, when(r.created_at)),
      el("td", { "data-label": "Duration" }, duration(r.duration_s)))) : el("tr", {}, el("td", { class: "empty", colspan: 5 }, "No runs yet.")));
  }

  /* Every run created in the last hour (newest first), a few pages at most. */
  async function lastHour() {
    const since = new Date(Date.now() - MINUTES * 60000).toISOString();
    let runs = [];
    let cursor = null;
    for (let page = 0; page < 10; page++) {
      const query = new URLSearchParams({ since, limit: "500" });
      if (cursor) query.set("cursor", cursor);
      const body = await api("GET", "/api/runs?" + query.toString());
      runs = runs.concat(body.items);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    return runs;
  }

  function chart(runs) {
    const now = Date.now();
    const start = Math.floor(now / 60000) * 60000 - (MINUTES - 1) * 60000;
    const buckets = Array.from({ length: MINUTES }, () => ({}));
    for (const r of runs) {
      const i = Math.floor((new Date(r.created_at).getTime() - start) / 60000);
      if (i >= 0 && i < MINUTES) buckets[i][r.status] = (buckets[i][r.status] || 0) + 1;
    }
    const totals = buckets.map((b) => Object.values(b).reduce((a, n) => a + n, 0));
    const top = Math.max(4, ...totals);
    const W = 600, H = 160, left = 28, bottom = 18, plotH = H - bottom - 6, slot = (W - left) / MINUTES;
    const svg = (tag, attrs, ...kids) => {
      const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      kids.forEach((k) => node.append(k instanceof Node ? k : document.createTextNode(String(k))));
      return node;
    };
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", "aria-hidden": "true" });
    for (const frac of [0, 0.5, 1]) {
      const y = 6 + plotH * (1 - frac);
      root.append(svg("line", { x1: left, x2: W, y1: y, y2: y, stroke: "#e5e7eb", "stroke-width": 1 }));
      root.append(svg("text", { x: left - 4, y: y + 3, "text-anchor": "end", class: "axis" }, Math.round(top * frac)));
    }
    const colors = getComputedStyle(document.documentElement);
    buckets.forEach((b, i) => {
      let y = 6 + plotH;
      const minute = Sundial.time(new Date(start + i * 60000).toISOString(), undefined, "minute");
      for (const status of ORDER) {
        const n = b[status];
        if (!n) continue;
        const h = (n / top) * plotH;
        y -= h;
        root.append(svg("rect", { x: left + i * slot + 1, y, width: Math.max(slot - 2, 1), height: h,
          fill: colors.getPropertyValue("--c-" + status).trim(), "data-status": status },
        svg("title", {}, `${minute}: ${n} ${Sundial.STATUS[status].label}`)));
      }
    });
    for (const [i, label] of [[0, "−60 min"], [30, "−30 min"], [MINUTES - 1, "now"]]) {
      root.append(svg("text", { x: left + i * slot + slot / 2, y: H - 4, "text-anchor": i === 0 ? "start" : i === MINUTES - 1 ? "end" : "middle", class: "axis" }, label));
    }
    fill($("#chart"), root);
    $("#chart").setAttribute("aria-label", `Runs per minute over the last hour: ${runs.length} runs`);
    fill($("#chart-legend"), ORDER.map((s) => el("span", { "data-swatch": s }, Sundial.STATUS[s].label)));
    Sundial.$$("#chart-legend span").forEach((span) => span.style.setProperty("--swatch", colors.getPropertyValue("--c-" + span.dataset.swatch)));
  }

  async function refresh() {
    const [status, stats, workers, runs, queues] = await Promise.all([
      api("GET", "/api/scheduler/status"), api("GET", "/api/stats"), api("GET", "/api/workers"), lastHour(),
      api("GET", "/api/queues")]);
    showScheduler(status);
    showQueues(queues);
    showStats(stats, workers);
    chart(runs);
    if (runs.length < 10) {
      showRecent((await api("GET", "/api/runs?limit=10")).items);
    } else showRecent(runs);
  }

  Sundial.poll(refresh, 3000);
});
