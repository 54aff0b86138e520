/* /login: check the pasted key against the API, keep it for this tab, go back. */
"use strict";

Sundial.page(() => {
  const { $ } = Sundial;
  const params = new URLSearchParams(location.search);
  const reason = Sundial.signInReason(params.get("reason"));
  if (reason) { $("#reason").textContent = reason; $("#reason").hidden = false; }
  const field = $('[data-field="key"]');
  const error = $(".error", field);
  $("#login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("#key").value.trim();
    field.classList.remove("invalid");
    error.hidden = true;
    if (!key) { error.textContent = "Paste a key first."; error.hidden = false; field.classList.add("invalid"); return; }
    try {
      await Sundial.signIn(key);
    } catch (err) {
      error.textContent = err.status === 401 ? (err.message || "This key was refused.") : "The API did not answer: " + err.message;
      error.hidden = false;
      field.classList.add("invalid");
      return;
    }
    location.assign(Sundial.safeNext(params.get("next")));
  });
});
