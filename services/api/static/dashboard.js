/* Sundial dashboard: shared helpers. Every page script calls the JSON API through
   Sundial.api() with the key kept in sessionStorage. Data is put on the page with
   textContent only (never innerHTML): the key must stay out of reach of injected markup. */
"use strict";

const Sundial = (() => {
  const KEY = "sundial.key";
  const ROLE = "sundial.role";
  const NAME = "sundial.name";
  const ZONE = "sundial.zone";
  const FINAL = ["succeeded", "failed", "timed_out", "cancelled", "skipped", "dead"];
  // The runs a person may cancel, and those worth retrying (the API refuses the others).
  const CANCELLABLE = ["queued", "running"];
  const RETRYABLE = ["failed", "dead", "timed_out", "cancelled"];
  const STATUS = {
    queued: { icon: "◷", label: "queued" },
    running: { icon: "", label: "running" },
    succeeded: { icon: "✓", label: "succeeded" },
    failed: { icon: "✕", label: "failed" },
    timed_out: { icon: "⏱", label: "timed out" },
    cancelled: { icon: "⊘", label: "cancelled" },
    skipped: { icon: "↷", label: "skipped" },
    dead: { icon: "☠", label: "dead" },
  };

  class ApiError extends Error {
    constructor(status, detail) {
      super(typeof detail === "string" ? detail : (detail || []).map((d) => d.msg || d.reason).join("; "));
      this.status = status;
      this.detail = detail;
    }
  }

  // --- the key and the role ---------------------------------------------------------------

  const key = () => sessionStorage.getItem(KEY);
  const role = () => sessionStorage.getItem(ROLE);
  const isAdmin = () => role() === "admin";

  /* Why the sign-in page is shown. The URL carries only the name of a reason, so a link
     cannot put words of its own on the page. */
  const SIGN_IN_REASONS = {
    refused: "Your key was refused. Paste a valid one.",
    revoked: "This API key was revoked. Paste another one.",
    expired: "This API key has expired. Paste another one.",
  };

  const signInReason = (name) => (Object.hasOwn(SIGN_IN_REASONS, name) ? SIGN_IN_REASONS[name] : null);

  /* Where to go after signing in: a path on this site, else "/". Resolved the way the
     browser would, so no spelling of another origin (//host, /\host, a tab inside, a
     scheme) gets through. */
  function safeNext(next) {
    if (typeof next !== "string" || !next.startsWith("/")) return "/";
    let url;
    try { url = new URL(next, location.origin); } catch { return "/"; }
    return url.origin === location.origin ? url.pathname + url.search + url.hash : "/";
  }

  /* reason: a key of SIGN_IN_REASONS, or none. */
  function signOut(reason) {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ROLE);
    sessionStorage.removeItem(NAME);
    const next = location.pathname + location.search;
    const query = new URLSearchParams({ next });
    if (reason) query.set("reason", reason);
    location.assign("/login?" + query.toString());
  }

  /* The reason a 401's detail gives, as a key of SIGN_IN_REASONS. */
  function refusal(detail) {
    const text = typeof detail === "string" ? detail : "";
    return ["revoked", "expired"].find((word) => text.includes(word)) || "refused";
  }

  async function request(method, path, body, apiKey) {
    const headers = { Authorization: "Bearer " + (apiKey || key() || ""), Accept: "application/json" };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    const text = await response.text();
    if (text) {
      try { data = JSON.parse(text); } catch { data = { detail: text }; }
    }
    const total = response.headers.get("X-Total-Count");
    return { status: response.status, ok: response.ok, data, total: total === null ? null : Number(total) };
  }

  /* The parsed body of a 2xx answer; ApiError otherwise. A refused key ends the session. */
  async function api(method, path, body) {
    return (await answer(method, path, body)).data;
  }

  /* A list and its total (the X-Total-Count header of /api/jobs and /api/schedules). */
  async function list(path) {
    const r = await answer("GET", path);
    return { items: r.data, total: r.total };
  }

  async function answer(method, path, body) {
    const r = await request(method, path, body);
    if (r.status === 401) {
      signOut(refusal(r.data && r.data.detail));
      throw new ApiError(401, "signed out");
    }
    if (!r.ok) throw new ApiError(r.status, r.data ? r.data.detail : "HTTP " + r.status);
    return r;
  }

  /* "3 of 7 jobs"; "50 of 10000+ runs" when the total is a lower bound (exact false). */
  function countOf(shown, total, noun, exact = true) {
    return shown + " of " + total + (exact ? "" : "+") + " " + noun + (total === 1 ? "" : "s");
  }

  /* The key's name and role (viewers get no write buttons). */
  async function whoIs(apiKey) {
    const me = await request("GET", "/api/me", undefined, apiKey);
    if (!me.ok) throw new ApiError(me.status, me.data && me.data.detail);
    return { role: me.data.role, name: me.data.name };
  }

  async function signIn(apiKey) {
    const who = await whoIs(apiKey);
    sessionStorage.setItem(KEY, apiKey);
    sessionStorage.setItem(ROLE, who.role);
    sessionStorage.setItem(NAME, who.name);
    return who;
  }

  // --- DOM ---------------------------------------------------------------------------------

  /* el("a", {href: "/x", class: "c"}, "text", child) */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fill(node, ...children) {
    node.replaceChildren();
    return append(node, children);
  }

  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));

  function flash(message, kind, link) {
    const box = $("#flash");
    if (!box) return;
    fill(box, message, link ? [" ", el("a", { href: link.href }, link.text)] : []);
    box.className = "flash " + (kind || "ok");
    box.hidden = false;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 10000 : 5000);
  }

  /* A button that runs an async action, disabled meanwhile; errors are flashed. */
  function action(label, run, attrs) {
    const button = el("button", { type: "button", class: "btn", ...(attrs || {}) }, label);
    button.addEventListener("click", async () => {
      button.disabled = true;
      try { await run(); } catch (err) { if (err.status !== 401) flash(err.message, "error"); } finally { button.disabled = false; }
    });
    return button;
  }

  // --- formatting ----------------------------------------------------------------------------

  /* Times of runs, workers and the scheduler are shown in the zone the user picked (the
     browser's by default, UTC, or any other; kept in localStorage); a schedule's fire times
     in the schedule's own zone. Every time carries its date and its zone's name. */
  function browserZone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch { return "UTC"; }
  }

  /* "browser", "UTC" or an IANA name. */
  function zoneChoice() {
    const chosen = localStorage.getItem(ZONE);
    if (!chosen || chosen === "browser") return "browser";
    try { new Intl.DateTimeFormat(undefined, { timeZone: chosen }); return chosen; } catch { return "browser"; }
  }

  const zone = () => (zoneChoice() === "browser" ? browserZone() : zoneChoice());

  function setZone(choice) {
    localStorage.setItem(ZONE, choice || "browser");
    document.dispatchEvent(new Event("sundial:zone"));
  }

  const FORMATS = new Map();

  /* style: "full" (date, time, zone), "weekday" (the same with the day's name), "minute"
     (hour and minute only, with the zone). */
  function formatter(timeZone, style) {
    const id = timeZone + " " + style;
    if (!FORMATS.has(id)) {
      const options = { timeZone, hourCycle: "h23", hour: "2-digit", minute: "2-digit", timeZoneName: "short" };
      if (style !== "minute") Object.assign(options, { year: "numeric", month: "short", day: "numeric", second: "2-digit" });
      if (style === "weekday") options.weekday = "short";
      if (style === "parts") Object.assign(options, { month: "2-digit", day: "2-digit", timeZoneName: undefined });
      // "parts" are read as numbers: Latin digits whatever the browser's language.
      const locale = style === "parts" ? "en-US" : undefined;
      let format;
      try { format = new Intl.DateTimeFormat(locale, options); } catch {
        format = new Intl.DateTimeFormat(locale, { ...options, timeZone: "UTC" });
      }
      FORMATS.set(id, format);
    }
    return FORMATS.get(id);
  }

  /* "2 Dec 2026, 02:00:00 CET": in timeZone (a schedule's), else in the user's zone. */
  function time(iso, timeZone, style) {
    if (!iso) return "—";
    return formatter(timeZone || zone(), style || "full").format(new Date(iso));
  }

  function relative(iso) {
    if (!iso) return "—";
    const s = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
    const a = Math.abs(s);
    const text = a < 5 ? "now" : a < 60 ? a + " s" : a < 3600 ? Math.round(a / 60) + " min"
      : a < 86400 ? Math.round(a / 3600) + " h" : Math.round(a / 86400) + " d";
    if (text === "now") return "just now";
    return s < 0 ? text + " ago" : "in " + text;
  }

  /* <time> showing the exact instant with its date and zone, how long ago on hover. */
  function when(iso, timeZone) {
    if (!iso) return el("span", { class: "muted" }, "—");
    return el("time", { datetime: iso, title: relative(iso) }, time(iso, timeZone));
  }

  /* <time> showing how long ago (heartbeats, scheduler passes), the exact instant on hover. */
  function ago(iso) {
    if (!iso) return el("span", { class: "muted" }, "—");
    return el("time", { datetime: iso, title: time(iso) }, relative(iso));
  }

  /* How far (ms) timeZone's wall clock is ahead of UTC at the instant t. */
  function offsetAt(t, timeZone) {
    const parts = {};
    for (const p of formatter(timeZone, "parts").formatToParts(new Date(t))) parts[p.type] = p.value;
    const wall = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second);
    return wall - Math.floor(t / 1000) * 1000;
  }

  /* A datetime-local value ("2026-12-02T02:00") read as a wall time in timeZone (the
     user's zone by default): the ISO instant, or null. */
  function instantIn(local, timeZone) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(local || "");
    if (!m) return null;
    const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
    const zoneName = timeZone || zone();
    let t = wall - offsetAt(wall, zoneName);
    t = wall - offsetAt(t, zoneName);  // the offset at the instant itself (DST days)
    return new Date(t).toISOString();
  }

  /* An ISO instant as a datetime-local value in timeZone (the user's zone by default). */
  function localIn(iso, timeZone) {
    const t = new Date(iso).getTime();
    if (Number.isNaN(t)) return "";
    return new Date(t + offsetAt(t, timeZone || zone())).toISOString().slice(0, 16);
  }

  /* The zone picker of the top bar. */
  function zonePicker(select) {
    const option = (value, label) => el("option", { value }, label);
    let zones = [];
    try { zones = Intl.supportedValuesOf("timeZone"); } catch { /* an old browser: the two choices */ }
    fill(select, option("browser", "Browser (" + browserZone() + ")"), option("UTC", "UTC"),
      el("optgroup", { label: "Other zones" }, zones.filter((z) => z !== "UTC").map((z) => option(z, z))));
    select.value = zoneChoice();
    select.addEventListener("change", () => setZone(select.value));
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 60) return seconds.toFixed(seconds < 10 ? 2 : 1) + " s";
    const m = Math.floor(seconds / 60);
    if (m < 60) return m + " min " + Math.round(seconds % 60) + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  function statusBadge(status) {
    const s = STATUS[status] || { icon: "?", label: status || "—" };
    return el("span", { class: "status status-" + status, dataset: { status } },
      status === "running" ? el("span", { class: "spinner", "aria-hidden": "true" })
        : el("span", { class: "icon", "aria-hidden": "true" }, s.icon),
      s.label);
  }

  // --- schedules in words ----------------------------------------------------------------

  const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
  const MONTHS = ["", "January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December"];
  const ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
  };
  const NAMES = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6, jan: 1, feb: 2, mar: 3,
    apr: 4, may: 5, jun: 6, jul: 7, aug: 8, sep: 9, oct: 10, nov: 11, dec: 12 };

  function every(seconds) {
    const units = [[86400, "day"], [3600, "hour"], [60, "min"], [1, "s"]];
    for (const [size, unit] of units) {
      if (seconds >= size && seconds % size === 0) {
        const n = seconds / size;
        if (n === 1) return unit === "min" ? "every minute" : unit === "s" ? "every second" : "every " + unit;
        return "every " + n + " " + (unit === "day" || unit === "hour" ? unit + "s" : unit);
      }
    }
    return "every " + seconds + " s";
  }

  const two = (n) => String(n).padStart(2, "0");

  function listing(items) {
    return items.length < 2 ? items.join("") : items.slice(0, -1).join(", ") + " and " + items[items.length - 1];
  }

  /* One cron field as numbers (null for *), or undefined when it is beyond these words. */
  function values(field, lo, hi) {
    if (field === "*" || field === "?") return null;
    const out = [];
    for (const part of field.split(",")) {
      const m = /^(\*|[a-z0-9]+)(?:-([a-z0-9]+))?(?:\/(\d+))?$/i.exec(part);
      if (!m) return undefined;
      const num = (t) => (t === undefined ? undefined : /^\d+$/.test(t) ? Number(t) : NAMES[t.toLowerCase()]);
      const a = m[1] === "*" ? lo : num(m[1]);
      const b = m[2] !== undefined ? num(m[2]) : m[3] || m[1] === "*" ? hi : a;
      const step = m[3] ? Number(m[3]) : 1;
      if (a === undefined || b === undefined || a < lo || b > hi || a > b || step < 1) return undefined;
      for (let v = a; v <= b; v += step) out.push(v);
    }
    return out;
  }

  function dayPhrase(field, names) {
    const m = /^([a-z0-9]+)-([a-z0-9]+)$/i.exec(field);
    if (m) {
      const [a, b] = [values(m[1], 0, 7), values(m[2], 0, 7)];
      if (a && b) return names[a[0]] + " through " + names[b[0]];
    }
    const days = values(field, 0, 7);
    return days ? "on " + listing([...new Set(days.map((d) => names[d]))]) : undefined;
  }

  /* "every 5 min", "At 09:00 on Monday"; undefined when too intricate for these words. */
  function describeCron(expr) {
    const parts = (ALIASES[expr.trim().toLowerCase()] || expr).trim().split(/\s+/);
    if (parts.length !== 5) return undefined;
    const [min, hour, dom, mon, dow] = parts;
    const step = (f) => { const m = /^\*\/(\d+)$/.exec(f); return m ? Number(m[1]) : null; };
    let when;
    const minutes = values(min, 0, 59);
    const hours = values(hour, 0, 23);
    if (minutes === undefined || hours === undefined) return undefined;
    if (minutes === null && hours === null) when = "every minute";
    else if (step(min) && hours === null) when = "every " + step(min) + " min";
    else if (minutes && minutes.length === 1 && hours === null) {
      when = minutes[0] === 0 ? "every hour" : "every hour at :" + two(minutes[0]);
    } else if (minutes && minutes.length === 1 && step(hour)) {
      when = "every " + step(hour) + " hours" + (minutes[0] ? " at :" + two(minutes[0]) : "");
    } else if (minutes && minutes.length === 1 && hours.length <= 6) {
      when = "At " + listing(hours.map((h) => two(h) + ":" + two(minutes[0])));
    } else if (minutes && minutes.length <= 4 && hours && hours.length === 1) {
      when = "At " + listing(minutes.map((m) => two(hours[0]) + ":" + two(m)));
    } else return undefined;
    const days = [];
    if (dom !== "*" && dom !== "?") {
      const d = values(dom, 1, 31);
      if (!d) return undefined;
      days.push("on day " + listing(d.map(String)) + " of the month");
    }
    if (dow !== "*" && dow !== "?") {
      const phrase = dayPhrase(dow, DAYS);
      if (!phrase) return undefined;
      days.push(phrase);
    }
    if (mon !== "*") {
      const m = values(mon, 1, 12);
      if (!m) return undefined;
      days.push("in " + listing(m.map((x) => MONTHS[x])));
    }
    if (!days.length && /^At /.test(when)) days.push("every day");
    return [when, ...days].join(" ");
  }

  /* A schedule (API shape) in words, e.g. "At 09:00 on Monday (Europe/Paris)". */
  function describeSchedule(s) {
    if (s.kind === "interval") return every(Number(s.interval_seconds));
    if (s.kind === "once") return "once, " + time(s.run_at, s.timezone || "UTC");
    const words = describeCron(s.cron || "");
    if (!words) return "cron " + s.cron + " (" + (s.timezone || "UTC") + ")";
    // Only a time of day or a calendar day depends on the zone: "every 5 min" does not.
    const [, hour, dom, mon, dow] = (ALIASES[s.cron.trim().toLowerCase()] || s.cron).trim().split(/\s+/);
    const local = [hour, dom, mon, dow].some((f) => f !== "*" && f !== "?");
    return local ? words + " (" + (s.timezone || "UTC") + ")" : words;
  }

  // --- the page life ---------------------------------------------------------------------------

  /* fn() now and every `ms` while the tab is visible; returns a function that runs it at once. */
  function poll(fn, ms) {
    let timer = null;
    const tick = async () => {
      clearTimeout(timer);
      try { await fn(); } catch (err) { if (err.status !== 401) flash(err.message, "error"); }
      timer = setTimeout(() => { if (!document.hidden) tick(); }, ms);
    };
    document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });
    document.addEventListener("sundial:zone", tick);
    tick();
    return tick;
  }

  /* Run the page's script once a key is present; write controls are removed for viewers. */
  function page(main) {
    document.addEventListener("DOMContentLoaded", () => {
      if (document.body.dataset.page === "login") { main(); return; }
      if (!key()) { signOut(); return; }
      document.body.classList.add("role-" + role());
      if (!isAdmin()) $$("[data-write]").forEach((node) => node.remove());
      const who = $("#who");
      if (who) fill(who, sessionStorage.getItem(NAME) || "", " ", el("span", { class: "pill" }, role()));
      const picker = $("#zone");
      if (picker) zonePicker(picker);
      const out = $("#logout");
      if (out) out.addEventListener("click", () => signOut());
      main();
    });
  }

  /* A job declared in code: `sundial sync` writes it, so its fields and schedules are
     changed in code; pause, resume and run now stay here. */
  const CODE_MANAGED = "Managed by code: change its declaration and run `sundial sync`. "
    + "Pause, resume and run now stay available here.";
  function codeBadge() {
    return el("span", { class: "pill code", title: CODE_MANAGED, "data-managed": "code" }, "code");
  }

  return {
    CODE_MANAGED, codeBadge,
    FINAL, CANCELLABLE, RETRYABLE, STATUS, ApiError, api, list, countOf, signIn, signOut, signInReason, safeNext, key, role, isAdmin,
    el, fill, append, $, $$,
    flash, action, zone, setZone, instantIn, localIn, time, relative, when, ago, duration, statusBadge, every, describeCron,
    describeSchedule, poll, page,
  };
})();
