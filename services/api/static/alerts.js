/* Alerts: notification channels and rules (admins add, test, enable, delete; viewers
   look), and the notifications sent or waiting, live while open. */
"use strict";

Sundial.page(() => {
  const { api, el, fill, append, $, when, action, flash, isAdmin } = Sundial;
  const KINDS = {
    run_failed: "a run fails", schedule_silent: "no success for", missed_slot: "a slot is late by",
    scheduler_stale: "a scheduler is silent for", queue_unattended: "a queue has no worker for",
    outbox_backlog: "the outbox holds more than",
  };
  let channels = [];

  const sendsTo = (c) => (c.kind === "email" ? (c.config.to || []).join(", ") : c.config.url || "");

  function when_(r) {
    if (r.kind === "run_failed") return KINDS[r.kind] + " (" + r.statuses.join(", ") + ")";
    if (r.kind === "outbox_backlog") return KINDS[r.kind] + " " + r.threshold + " runs";
    const span = Sundial.every(r.within_seconds).replace(/^every /, "");
    return KINDS[r.kind] + " " + (/^\d/.test(span) ? span : "1 " + span);
  }

  function scope(r) {
    const parts = [];
    if (r.job) parts.push("job " + r.job);
    if (r.queue) parts.push("queue " + r.queue);
    if (r.schedule_id) parts.push("schedule " + r.schedule_id);
    return parts.join(", ") || "everything";
  }

  async function tested(path) {
    const queued = await api("POST", path);
    flash("Test notification " + queued.notification_id + " queued: a scheduler sends it within seconds (see below).");
    tick();
  }

  function controls(base, item, reload) {
    if (!isAdmin()) return el("td", {});
    return el("td", { class: "actions" },
      action("Test", () => tested(base + "/" + item.id + "/test")),
      action(item.enabled ? "Disable" : "Enable", async () => {
        await api("PATCH", base + "/" + item.id, { enabled: !item.enabled });
        await reload();
      }),
      action("Delete", async () => {
        if (!confirm("Delete " + item.name + "?")) return;
        await api("DELETE", base + "/" + item.id);
        await loadAll();
      }, { class: "btn danger" }));
  }

  async function loadChannels() {
    channels = await api("GET", "/api/notifications/channels");
    fill($("#channels tbody"), channels.length ? channels.map((c) => el("tr", { dataset: { channel: c.name } },
      el("td", { "data-label": "Name" }, c.name),
      el("td", { "data-label": "Kind" }, c.kind, c.has_signing_secret ? el("span", { class: "muted" }, " (signed)") : null),
      el("td", { "data-label": "Sends to" }, sendsTo(c)),
      el("td", { "data-label": "Enabled" }, c.enabled ? "yes" : "no"),
      controls("/api/notifications/channels", c, loadChannels)))
      : el("tr", {}, el("td", { class: "empty", colspan: 5 }, "No channels yet.")));
    const select = $("#r-channel");
    if (select) fill(select, channels.map((c) => el("option", { value: c.id }, c.name + " (" + c.kind + ")")));
  }

  async function loadRules() {
    const rules = await api("GET", "/api/notifications/rules");
    fill($("#rules tbody"), rules.length ? rules.map((r) => el("tr", { dataset: { rule: r.name } },
      el("td", { "data-label": "Name" }, r.name),
      el("td", { "data-label": "When" }, when_(r)),
      el("td", { "data-label": "Scope" }, scope(r)),
      el("td", { "data-label": "Channel" }, r.channel),
      el("td", { "data-label": "Max/hour" }, String(r.max_per_hour)),
      el("td", { "data-label": "Enabled" }, r.enabled ? "yes" : "no"),
      controls("/api/notifications/rules", r, loadRules)))
      : el("tr", {}, el("td", { class: "empty", colspan: 7 }, "No rules yet.")));
  }

  async function loadHistory() {
    const items = await api("GET", "/api/notifications?limit=50");
    fill($("#history tbody"), items.length ? items.map((x) => el("tr", { dataset: { notification: x.id, status: x.status } },
      el("td", { "data-label": "#" }, String(x.id)),
      el("td", { "data-label": "Created" }, when(x.created_at)),
      el("td", { "data-label": "Rule" }, x.rule || "—"),
      el("td", { "data-label": "Channel" }, x.channel),
      el("td", { "data-label": "State" }, x.state),
      el("td", { "data-label": "Status" }, el("span", { class: "badge status-" + x.status }, x.status)),
      el("td", { "data-label": "Attempts" }, String(x.attempts)),
      el("td", { "data-label": "Summary" }, x.summary, x.last_error ? el("div", { class: "muted" }, x.last_error) : null)))
      : el("tr", {}, el("td", { class: "empty", colspan: 8 }, "Nothing sent yet.")));
  }

  async function loadAll() {
    await Promise.all([loadChannels(), loadRules()]);
  }

  const channelForm = $("#channel-form");
  if (channelForm) channelForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = channelForm.elements;
    const body = { name: f.name.value.trim(), kind: f.kind.value };
    if (f.url.value.trim()) body.url = f.url.value.trim();
    const to = f.to.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (to.length) body.to = to;
    try {
      const created = await api("POST", "/api/notifications/channels", body);
      channelForm.reset();
      const box = $("#signing-secret");
      if (created.signing_secret) {
        fill(box, "Signing secret of " + created.name + " (shown only once; the receiver verifies Sundial-Signature with it): ",
          el("code", {}, created.signing_secret));
        box.hidden = false;
      }
      flash("Channel " + created.name + " added.");
      await loadChannels();
    } catch (err) { if (err.status !== 401) flash(err.message, "error"); }
  });

  const ruleForm = $("#rule-form");
  if (ruleForm) ruleForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = ruleForm.elements;
    const body = { name: f.name.value.trim(), kind: f.kind.value, channel_id: Number(f.channel_id.value),
      max_per_hour: Number(f.max_per_hour.value || 30) };
    if (f.job_id.value) body.job_id = Number(f.job_id.value);
    if (f.queue.value.trim()) body.queue = f.queue.value.trim();
    if (f.within_seconds.value) body.within_seconds = Number(f.within_seconds.value);
    if (f.threshold.value) body.threshold = Number(f.threshold.value);
    try {
      const created = await api("POST", "/api/notifications/rules", body);
      ruleForm.reset();
      flash("Rule " + created.name + " added.");
      await loadRules();
    } catch (err) { if (err.status !== 401) flash(err.message, "error"); }
  });

  loadAll().catch((err) => { if (err.status !== 401) flash(err.message, "error"); });
  if ($("#r-job")) {
    api("GET", "/api/jobs?limit=1000").then((jobs) => {
      append($("#r-job"), jobs.map((j) => el("option", { value: j.id }, j.name)));
    }).catch(() => {});
  }
  const tick = Sundial.poll(loadHistory, 3000);
});
