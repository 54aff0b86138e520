/* The audit log: who changed what, newest first, with filters kept in the address. */
"use strict";

Sundial.page(() => {
  const { api, el, fill, $, when } = Sundial;
  const form = $("#audit-filters");
  const params = new URLSearchParams(location.search);
  let items = [];
  let cursor = null;

  for (const name of ["actor", "action"]) if (params.get(name)) form.elements[name].value = params.get(name);

  function query(extra) {
    const q = new URLSearchParams({ limit: "50", ...extra });
    for (const name of ["actor", "action"]) if (form.elements[name].value.trim()) q.set(name, form.elements[name].value.trim());
    for (const name of ["since", "until"]) {
      if (form.elements[name].value) q.set(name, new Date(form.elements[name].value).toISOString());
    }
    return q;
  }

  function target(e) {
    const href = { job: "/jobs/", run: "/runs/" }[e.target_type];
    const label = e.target_type + (e.target_id ? " " + e.target_id : "");
    return href && e.target_id && e.action !== "job.delete" ? el("a", { href: href + e.target_id }, label) : label;
  }

  function row(e) {
    return el("tr", { dataset: { audit: e.id, action: e.action } },
      el("td", { "data-label": "When" }, when(e.at)),
      el("td", { "data-label": "Actor" }, e.actor),
      el("td", { "data-label": "Action" }, el("span", { class: "mono" }, e.action)),
      el("td", { "data-label": "Target" }, target(e)),
      el("td", { "data-label": "Details", class: "mono" }, Object.keys(e.details).length ? JSON.stringify(e.details) : "—"));
  }

  function render() {
    fill($("#audit tbody"), items.length ? items.map(row) : el("tr", {}, el("td", { class: "empty", colspan: 5 }, "No entries match.")));
    $("#older").hidden = !cursor;
  }

  async function load() {
    const page = await api("GET", "/api/audit?" + query().toString());
    items = page.items;
    cursor = page.next_cursor;
    render();
  }

  $("#older").addEventListener("click", async () => {
    const page = await api("GET", "/api/audit?" + query({ cursor: String(cursor) }).toString());
    items = items.concat(page.items);
    cursor = page.next_cursor;
    render();
  });

  function refilter() {
    const q = query();
    q.delete("limit");
    history.replaceState(null, "", "/audit" + (q.toString() ? "?" + q.toString() : ""));
    load().catch((err) => Sundial.flash(err.message, "error"));
  }
  form.addEventListener("change", refilter);
  form.addEventListener("reset", () => setTimeout(refilter, 0));
  form.addEventListener("submit", (event) => { event.preventDefault(); refilter(); });
  refilter();
});
