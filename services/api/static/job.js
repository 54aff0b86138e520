/* A job: the create/edit form with handler-specific fields, its schedules with a live
   preview of the next fire times and backfill, run now (with arguments), pause/resume. Errors of a 422 are shown beside
   the field they name. */
"use strict";

Sundial.page(() => {
  const { api, el, fill, $, $$, when, statusBadge, duration, isAdmin, describeSchedule, ApiError } = Sundial;
  const jobId = document.body.dataset.jobId;
  const form = $("#job-form");
  let job = null;

  // --- errors beside fields -------------------------------------------------------------

  function clearErrors(root) {
    $$(".field.invalid", root).forEach((f) => f.classList.remove("invalid"));
    $$(".field .error", root).forEach((e) => { e.hidden = true; e.textContent = ""; });
    $$(".form-error", root).forEach((e) => { e.hidden = true; e.textContent = ""; });
  }

  /* The field whose data-field is the longest prefix of `name` ("payload.headers.X"
     lands on "payload.headers"); schedule fields are looked up in their own fieldset. */
  function fieldFor(root, name) {
    name = name.replace(/\[(\d+)\]/g, ".$1");  // "schedules[0].cron" as "schedules.0.cron"
    let scope = root;
    for (const box of $$("[data-schedule]", root)) {
      const prefix = box.dataset.prefix;
      if (!box.hidden && (prefix ? name.startsWith(prefix) : true) && $(`[data-field="${name.slice(prefix.length).split(".")[0]}"]`, box)) {
        scope = box;
        name = name.slice(prefix.length);
        break;
      }
    }
    const fields = $$("[data-field]", scope).filter((f) => !f.closest("[hidden]"));
    let best = null;
    for (const f of fields) {
      const key = f.dataset.field;
      if ((name === key || name.startsWith(key + ".") || name.startsWith(key + "["))
          && (!best || key.length > best.dataset.field.length)) best = f;
    }
    return best;
  }

  function showErrors(root, err) {
    clearErrors(root);
    let problems = Array.isArray(err.detail) ? err.detail
      : [{ field: err.status === 409 ? "name" : "", reason: err.message }];
    if (err.status === 409 && !/name/i.test(err.message)) problems = [{ field: "", reason: err.message }];
    const general = [];
    let first = null;
    for (const p of problems) {
      const field = p.field ? fieldFor(root, p.field) : null;
      if (!field) { general.push(p.msg || p.reason); continue; }
      field.classList.add("invalid");
      const box = $(".error", field);
      const suffix = field.dataset.field === p.field || p.field.endsWith("." + field.dataset.field) ? "" : ` (${p.field})`;
      box.textContent = (box.textContent ? box.textContent + "; " : "") + p.reason + suffix;
      box.hidden = false;
      first = first || field;
    }
    const top = $(".form-error", root);
    if (general.length && top) { top.textContent = general.join("; "); top.hidden = false; top.scrollIntoView({ block: "nearest" }); }
    if (first) $("input, select, textarea", first)?.focus();
  }

  // --- the handler's fields ------------------------------------------------------------------

  function showHandler() {
    const handler = form.elements.handler.value;
    $$("fieldset[data-handler]", form).forEach((f) => { f.hidden = f.dataset.handler !== handler; });
  }

  function lines(text) { return text.split("\n").map((l) => l.trim()).filter(Boolean); }

  function json(text, field, fallback) {
    if (!text.trim()) return fallback;
    try { return JSON.parse(text); } catch (e) { throw new ApiError(422, [{ field, reason: "is not valid JSON: " + e.message }]); }
  }

  /* The payload from the visible fields, over the stored payload so other keys are kept. */
  function payload() {
    const handler = form.elements.handler.value;
    const v = (name) => form.elements[name].value.trim();
    const p = job && job.handler === handler ? { ...job.payload } : {};
    const set = (key, value) => { if (value === undefined || value === "" || value === null) delete p[key]; else p[key] = value; };
    if (handler === "sleep") set("seconds", v("seconds") === "" ? undefined : Number(v("seconds")));
    if (handler === "http") {
      set("url", v("url"));
      set("method", v("method"));
      const headers = {};
      for (const line of lines(form.elements.headers.value)) {
        const at = line.indexOf(":");
        if (at < 1) throw new ApiError(422, [{ field: "payload.headers", reason: `"${line}" is not "Name: value"` }]);
        headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
      }
      set("headers", Object.keys(headers).length ? headers : undefined);
      set("body", form.elements.body.value || undefined);
      const expected = lines(v("expected_status").replace(/,/g, "\n")).map(Number);
      set("expected_status", !expected.length ? undefined : expected.length === 1 ? expected[0] : expected);
    }
    if (handler === "command") {
      set("argv", lines(form.elements.argv.value));
      set("cwd", v("cwd"));
    }
    if (handler === "python") {
      set("function", v("function"));
      set("args", json(form.elements.args.value, "payload.args", undefined));
      set("kwargs", json(form.elements.kwargs.value, "payload.kwargs", undefined));
    }
    return p;
  }

  function fillPayload(handler, p) {
    const put = (name, value) => { form.elements[name].value = value === undefined || value === null ? "" : value; };
    if (handler === "sleep") put("seconds", p.seconds);
    if (handler === "http") {
      put("url", p.url);
      put("method", (p.method || "GET").toUpperCase());
      put("headers", Object.entries(p.headers || {}).map(([k, val]) => k + ": " + val).join("\n"));
      put("body", typeof p.body === "string" ? p.body : "");
      put("expected_status", Array.isArray(p.expected_status) ? p.expected_status.join(", ") : p.expected_status);
    }
    if (handler === "command") { put("argv", (p.argv || []).join("\n")); put("cwd", p.cwd); }
    if (handler === "python") {
      put("function", p.function);
      put("args", p.args ? JSON.stringify(p.args) : "");
      put("kwargs", p.kwargs ? JSON.stringify(p.kwargs) : "");
    }
  }

  function jobBody() {
    const v = (name) => form.elements[name].value.trim();
    const body = {
      name: v("name"), description: form.elements.description.value, handler: v("handler"),
      payload: payload(), queue: v("queue"), concurrency_policy: v("concurrency_policy"),
      enabled: form.elements.enabled.checked,
      timeout_seconds: v("timeout_seconds") === "" ? undefined : Number(v("timeout_seconds")),
    };
    if (v("max_attempts") !== "") body.max_attempts = Number(v("max_attempts"));
    return body;
  }

  function fillJob(j) {
    for (const name of ["name", "description", "handler", "queue", "concurrency_policy"]) form.elements[name].value = j[name];
    form.elements.timeout_seconds.value = j.timeout_seconds;
    form.elements.max_attempts.value = j.max_attempts;
    form.elements.enabled.checked = j.enabled;
    showHandler();
    fillPayload(j.handler, j.payload);
  }

  // --- the schedule editor -----------------------------------------------------------------------

  /* A preview's fire times, in the schedule's own zone: a 02:00 Europe/Paris cron reads
     02:00 CET wherever the browser is. */
  const fireTimes = (preview) => preview.times.map((t) => el("li", {},
    el("time", { datetime: t }, Sundial.time(t, preview.timezone, "weekday"))));

  function scheduleEditor(box) {
    const f = (name) => $(`[name="${name}"]`, box);
    const state = { saved: null, timer: null, seq: 0 };

    function spec() {
      const kind = f("kind").value;
      if (!kind) return null;
      const s = { kind, jitter_seconds: Number(f("jitter_seconds").value || 0), misfire_policy: f("misfire_policy").value };
      if (kind === "cron") { s.cron = f("cron").value.trim(); s.timezone = f("timezone").value.trim() || "UTC"; }
      if (kind === "interval") s.interval_seconds = f("interval").value === "" ? null : Number(f("interval").value) * Number(f("unit").value);
      if (kind === "once") {
        const at = f("run_at").value ? new Date(f("run_at").value) : null;
        s.run_at = at && !isNaN(at) ? at.toISOString() : null;
      }
      return s;
    }

    function showKind() {
      const kind = f("kind").value;
      $$("[data-kind]", box).forEach((part) => { part.hidden = !part.dataset.kind.split(" ").includes(kind); });
    }

    function fill(s) {
      state.saved = s;
      f("kind").value = s ? s.kind : "";
      if (s) {
        f("cron").value = s.cron || "";
        f("timezone").value = s.timezone || "UTC";
        const unit = [86400, 3600, 60, 1].find((u) => s.interval_seconds && s.interval_seconds % u === 0) || 1;
        f("unit").value = String(unit);
        f("interval").value = s.interval_seconds ? s.interval_seconds / unit : "";
        if (s.run_at) {
          const d = new Date(s.run_at);
          f("run_at").value = new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
        }
        f("jitter_seconds").value = s.jitter_seconds || 0;
        f("misfire_policy").value = s.misfire_policy;
      }
      showKind();
      update();
    }

    function same(a, b) {
      return a && b && ["kind", "cron", "timezone", "interval_seconds", "run_at"].every((k) =>
        k === "run_at" ? (a[k] ? new Date(a[k]).getTime() : null) === (b[k] ? new Date(b[k]).getTime() : null)
          : (a[k] ?? null) === (b[k] ?? null));
    }

    async function times(s) {
      if (state.saved && state.saved.id && same(s, state.saved)) {
        return api("GET", `/api/schedules/${state.saved.id}/preview?count=5`);
      }
      if (!isAdmin()) return null;  // previewing an unsaved schedule is a POST: admins only
      return api("POST", "/api/schedules/preview?count=5", s);
    }

    async function update() {
      const s = spec();
      const words = $("[data-words]", box), note = $("[data-preview-note]", box), list = $("[data-times]", box);
      if (!s) return;
      words.textContent = (s.kind === "cron" && !s.cron) || (s.kind === "interval" && !(s.interval_seconds > 0))
        || (s.kind === "once" && !s.run_at) ? "—" : describeSchedule(s);
      const seq = ++state.seq;
      note.textContent = "";
      try {
        const next = await times(s);
        if (seq !== state.seq) return;
        if (next === null) {
          Sundial.fill(list);
          note.textContent = "The next fire times show once the schedule is saved.";
          return;
        }
        Sundial.fill(list, fireTimes(next));
        note.textContent = next.times.length ? "Next fire times (" + next.timezone + "):" : "It will not fire again.";
        clearErrors(box);
      } catch (err) {
        if (seq !== state.seq) return;
        Sundial.fill(list);
        if (err.status === 422) showErrors(box, err);
        else note.textContent = err.message;
      }
    }

    function changed() {
      showKind();
      clearTimeout(state.timer);
      state.timer = setTimeout(update, 350);
    }
    box.addEventListener("input", changed);
    box.addEventListener("change", changed);
    if (f("timezone").value === "UTC" && !state.saved) {
      try { f("timezone").value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch { /* keep UTC */ }
    }
    showKind();
    return { spec, fill, update };
  }

  // --- saving ---------------------------------------------------------------------------------------

  async function createJob(editor) {
    const body = jobBody();
    const s = editor.spec();
    body.schedules = s ? [s] : [];
    const created = await api("POST", "/api/jobs", body);
    location.assign("/jobs/" + created.id + "?created=1");
  }

  async function saveJob() {
    const body = jobBody();
    const changes = {};
    for (const [k, v] of Object.entries(body)) {
      if (JSON.stringify(v) !== JSON.stringify(job[k])) changes[k] = v;
    }
    if (!Object.keys(changes).length) { Sundial.flash("Nothing changed."); return; }
    job = await api("PATCH", "/api/jobs/" + job.id, changes);
    Sundial.flash("Saved.");
    delete form.dataset.filled;
    show(job);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("#save-job");
    button.disabled = true;
    clearErrors(form);
    try {
      if (job) await saveJob(); else await createJob(newSchedule);
    } catch (err) {
      if (err.status !== 401) showErrors(form, err);
    } finally { button.disabled = false; }
  });
  form.elements.handler.addEventListener("change", showHandler);
  // An error stays beside its field until that field is changed.
  for (const root of [form, $("#schedule-form")].filter(Boolean)) {
    root.addEventListener("input", (event) => {
      const field = event.target.closest(".field.invalid");
      if (!field) return;
      field.classList.remove("invalid");
      $(".error", field).hidden = true;
      $(".error", field).textContent = "";
    });
  }

  // --- an existing job: schedules, runs, actions ------------------------------------------------

  let editing = null;  // the schedule being edited, or {} for a new one
  const editor = jobId ? scheduleEditor($("#schedule-form")) : null;
  const newSchedule = jobId ? null : scheduleEditor($("#new-schedule"));

  function scheduleCard(s) {
    const declared = job.managed_by === "code";
    const preview = el("ol", { class: "times" });
    api("GET", `/api/schedules/${s.id}/preview?count=5`).then((p) => Sundial.fill(preview, fireTimes(p)))
      .catch(() => {});
    return el("div", { class: "schedule-card", dataset: { schedule: s.id } },
      el("div", { class: "head" },
        el("strong", { class: "words" }, describeSchedule(s)),
        el("span", { class: "pill " + (s.is_active ? "on" : "off") },
          s.set_aside_at ? "set aside" : s.is_active ? "active" : "paused")),
      el("dl", { class: "facts", "data-spaced": "" },
        el("dt", {}, "Next run"), el("dd", { "data-next-run": "" }, s.is_active ? when(s.next_run_at, s.timezone) : "—"),
        el("dt", {}, "Last run"), el("dd", {}, when(s.last_run_at, s.timezone)),
        el("dt", {}, "Runs"), el("dd", {}, s.run_count + (s.failure_count ? `, ${s.failure_count} dispatch failures` : "")),
        // Set aside by the scheduler: it cannot be planned until edited; the error says why.
        s.set_aside_at ? [el("dt", {}, "Set aside"), el("dd", { "data-set-aside": "" }, when(s.set_aside_at), ": ", s.last_error)]
          : s.last_error ? [el("dt", {}, "Last error"), el("dd", {}, s.last_error)] : null),
      el("div", { class: "muted", "data-spaced": "" }, "Next fire times (" + s.timezone + "):"), preview,
      isAdmin() ? el("div", { class: "actions", dataset: { write: "" } },
        Sundial.action(s.is_active ? "Pause" : "Resume", async () => {
          await api("POST", `/api/schedules/${s.id}/${s.is_active ? "pause" : "resume"}`);
          load();
        }, { class: "btn small" }),
        declared ? null : Sundial.action("Edit", async () => openEditor(s), { class: "btn small" }),
        Sundial.action("Backfill…", async () => openBackfill(s), { class: "btn small" }),
        declared && s.managed_key !== null ? null : Sundial.action("Delete", async () => {
          if (!confirm("Delete this schedule? Its past runs stay in the history.")) return;
          await api("DELETE", `/api/schedules/${s.id}`);
          load();
        }, { class: "btn small danger" })) : null);
  }

  function openEditor(s) {
    editing = s || {};
    const box = $("#schedule-form");
    clearErrors(box);
    $("#schedule-form-title").textContent = s ? "Edit schedule" : "New schedule";
    box.hidden = false;
    editor.fill(s || { kind: "cron", cron: "", timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC", jitter_seconds: 0, misfire_policy: "run_once" });
    $("[name=kind]", box).focus();
  }

  // --- run with arguments, backfill -----------------------------------------------------------

  let backfilling = null;  // the schedule of the open backfill form

  function openBackfill(s) {
    backfilling = s;
    const box = $("#backfill-form");
    clearErrors(box);
    $("#backfill-title").textContent = `Backfill: ${describeSchedule(s)}`;
    $("#backfill-result").hidden = true;
    box.hidden = false;
    box.elements.from.focus();
  }

  /* A datetime-local value (the browser's time zone) as an instant with its offset. */
  function instant(value) {
    const t = new Date(value);
    return Number.isNaN(t.getTime()) ? value : t.toISOString();
  }

  async function backfill(dryRun) {
    const box = $("#backfill-form");
    clearErrors(box);
    try {
      const done = await api("POST", `/api/schedules/${backfilling.id}/backfill`, {
        from: instant(box.elements.from.value), to: instant(box.elements.to.value), dry_run: dryRun });
      const result = $("#backfill-result");
      result.textContent = `${done.slots} slot(s) in the range, ${done.existing} with a run already: `
        + (dryRun ? `${done.created} run(s) would be made.` : `${done.created} run(s) made.`);
      result.hidden = false;
      if (!dryRun) latestRuns();
    } catch (err) { if (err.status !== 401) showErrors(box, err); }
  }

  async function runWithArguments() {
    const box = $("#run-form");
    clearErrors(box);
    const body = {};
    const text = box.elements.payload.value.trim();
    if (text) {
      try { body.payload = JSON.parse(text); } catch (err) {
        showErrors(box, { detail: [{ field: "payload", reason: "is not JSON: " + err.message }] });
        return;
      }
      body.mode = box.elements.mode.value;
    }
    if (box.elements.idempotency_key.value) body.idempotency_key = box.elements.idempotency_key.value;
    if (box.elements.priority.value !== "") body.priority = Number(box.elements.priority.value);
    try {
      const queued = await api("POST", `/api/jobs/${jobId}/trigger`, body);
      Sundial.flash(queued.replayed ? `Run #${queued.run_id} has this key already (${queued.status}): no new run.`
        : `Run #${queued.run_id} queued.`, "ok", { href: "/runs/" + queued.run_id, text: "Open it" });
      box.hidden = true;
      latestRuns();
    } catch (err) { if (err.status !== 401) showErrors(box, err); }
  }

  function show(j) {
    job = j;
    document.title = j.name + " · Sundial";
    $("#job-title").textContent = j.name;
    fill($("#job-enabled"), el("span", { class: "pill " + (j.enabled ? "on" : "off") }, j.enabled ? "enabled" : "paused"),
      j.managed_by === "code" ? [" ", Sundial.codeBadge()] : null);
    // Declared in code: what the next `sundial sync` would undo is not offered.
    const declared = j.managed_by === "code";
    const note = $("#managed-note");
    if (note) { note.hidden = !declared; note.textContent = declared ? Sundial.CODE_MANAGED : ""; }
    for (const id of ["#save-job", "#delete-job", "#add-schedule"]) {
      const node = $(id);
      if (node) node.hidden = declared;
    }
    const toggle = $("#toggle-job");
    if (toggle) toggle.textContent = j.enabled ? "Pause" : "Resume";
    if (!form.dataset.filled) { fillJob(j); form.dataset.filled = "1"; }
    fill($("#schedules"), j.schedules.length ? j.schedules.map(scheduleCard)
      : el("p", { class: "muted" }, "No schedule: this job runs only when triggered."));
  }

  async function load() {
    show(await api("GET", "/api/jobs/" + jobId));
  }

  async function latestRuns() {
    const page = await api("GET", `/api/runs?job=${jobId}&limit=10`);
    fill($("#job-runs-count"), page.total ? [Sundial.countOf(page.items.length, page.total, "run", page.total_exact), " · ",
      el("a", { href: "/runs?job=" + jobId }, "all of them")] : null);
    fill($("#job-latest-runs tbody"), page.items.length ? page.items.map((r) => el("tr", {},
      el("td", { "data-label": "Run" }, el("a", { href: "/runs/" + r.id }, "#" + r.id)),
      el("td", { "data-label": "Status" }, statusBadge(r.status)),
      el("td", { "data-label": "Created" }, when(r.created_at)),
      el("td", { "data-label": "Duration" }, duration(r.duration_s))))
      : el("tr", {}, el("td", { class: "empty", colspan: 4 }, "No runs yet.")));
  }

  function percent(rate) {
    return rate === null ? "—" : (Math.round(rate * 1000) / 10) + " %";
  }

  /* Success and error rates and durations of the runs that finished in the chosen window. */
  async function health() {
    const h = await api("GET", `/api/jobs/${jobId}/health?window=${$("#health-window").value}`);
    $("#health-success").textContent = percent(h.success_rate);
    $("#health-error").textContent = percent(h.error_rate);
    $("#health-finished").textContent = `${h.finished} finished`;
    $("#health-failed").textContent = `${h.failed} failed, ${h.cancelled} cancelled, ${h.skipped} skipped`;
    $("#health-avg").textContent = duration(h.avg_duration_s);
    $("#health-p95").textContent = duration(h.p95_duration_s);
    fill($("#health-last-success"), "last success ", when(h.last_success_at));
  }

  if (jobId) {
    load().catch((err) => Sundial.flash(err.message, "error"));
    Sundial.poll(latestRuns, 3000);
    const refreshHealth = Sundial.poll(health, 10000);
    $("#health-window").addEventListener("change", () => refreshHealth());
    if (new URLSearchParams(location.search).get("created")) Sundial.flash("Job created.");
    if (isAdmin()) {
      $("#run-now").addEventListener("click", async () => {
        try {
          const queued = await api("POST", `/api/jobs/${jobId}/trigger`);
          Sundial.flash(`Run #${queued.run_id} queued.`, "ok", { href: "/runs/" + queued.run_id, text: "Open it" });
          latestRuns();
        } catch (err) { Sundial.flash(err.message, "error"); }
      });
      $("#run-with").addEventListener("click", () => {
        const box = $("#run-form");
        clearErrors(box);
        box.hidden = false;
        box.elements.payload.focus();
      });
      $("#run-cancel").addEventListener("click", () => { $("#run-form").hidden = true; });
      $("#run-form").addEventListener("submit", (event) => { event.preventDefault(); runWithArguments(); });
      $("#backfill-preview").addEventListener("click", () => backfill(true));
      $("#backfill-cancel").addEventListener("click", () => { $("#backfill-form").hidden = true; });
      $("#backfill-form").addEventListener("submit", (event) => { event.preventDefault(); backfill(false); });
      $("#toggle-job").addEventListener("click", async () => {
        try { show(await api("POST", `/api/jobs/${jobId}/${job.enabled ? "pause" : "resume"}`)); } catch (err) { Sundial.flash(err.message, "error"); }
      });
      $("#delete-job").addEventListener("click", async () => {
        if (!confirm(`Delete ${job.name} with its schedules and its run history?`)) return;
        try { await api("DELETE", "/api/jobs/" + jobId); location.assign("/jobs"); } catch (err) { Sundial.flash(err.message, "error"); }
      });
      $("#add-schedule").addEventListener("click", () => openEditor(null));
      $("#schedule-cancel").addEventListener("click", () => { $("#schedule-form").hidden = true; });
      $("#schedule-form").addEventListener("submit", async (event) => {
        event.preventDefault();
        const box = $("#schedule-form");
        clearErrors(box);
        try {
          const s = editor.spec();
          if (editing.id) await api("PATCH", `/api/schedules/${editing.id}`, s);
          else await api("POST", "/api/schedules", { job_id: Number(jobId), ...s });
          box.hidden = true;
          Sundial.flash("Schedule saved.");
          load();
        } catch (err) { if (err.status !== 401) showErrors(box, err); }
      });
    }
  } else {
    showHandler();
  }

  if (!isAdmin()) $$("input, select, textarea", form).forEach((input) => { input.disabled = true; });

  const zones = $("#timezones");
  try { Sundial.append(zones, Intl.supportedValuesOf("timeZone").map((z) => el("option", { value: z }))); } catch { /* an old browser */ }
});
