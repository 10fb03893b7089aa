// The sign-in page: POST /api/v1/session, keep the CSRF token for this tab, go to the screen.
// A first login with a one-time password asks for a new one (POST /api/v1/session/password).

import { api, setCsrfToken, ApiError } from "./api.js";

const form = document.getElementById("login-form");
const error = document.getElementById("login-error");
const totpRow = document.getElementById("totp-row");
let mustChange = null;

function next() {
  const n = new URLSearchParams(location.search).get("next") || "/";
  return n.startsWith("/") && !n.startsWith("//") ? n : "/";
}

function askNewPassword(current) {
  mustChange = current;
  form.querySelector("h2")?.remove();
  const h = document.createElement("h2"); h.textContent = "Choose a new password";
  const l = document.createElement("label"); l.htmlFor = "new-password"; l.textContent = "New password (at least 12 characters)";
  const i = document.createElement("input"); i.id = "new-password"; i.type = "password"; i.required = true; i.autocomplete = "new-password";
  form.replaceChildren(h, l, i, document.getElementById("login-button"), error);
  document.getElementById("login-button").textContent = "Set password";
  i.focus();
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  error.textContent = "";
  try {
    if (mustChange !== null) {
      const res = await api("/api/v1/session/password", { method: "POST",
        body: { current_password: mustChange, new_password: document.getElementById("new-password").value } });
      setCsrfToken(res.csrf_token);
      location.assign(next());
      return;
    }
    const body = { username: form.username.value, password: form.password.value };
    if (!totpRow.hidden && form.totp.value) body.totp = form.totp.value;
    const res = await api("/api/v1/session", { method: "POST", body });
    setCsrfToken(res.csrf_token);
    if (res.password_change_required) { askNewPassword(body.password); return; }
    location.assign(next());
  } catch (e) {
    if (e instanceof ApiError && /TOTP/i.test(e.message)) { totpRow.hidden = false; form.totp.focus(); }
    error.textContent = e.message || "Sign-in failed";
  }
});
