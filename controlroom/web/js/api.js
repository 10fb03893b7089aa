// Talking to the service: JSON in and out, the session cookie, and the CSRF header on every
// state-changing request (the token comes from POST /api/v1/session and is kept for the tab).

const CSRF_KEY = "controlroom.csrf";

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export function csrfToken() { return sessionStorage.getItem(CSRF_KEY) || ""; }
export function setCsrfToken(token) {
  if (token) sessionStorage.setItem(CSRF_KEY, token); else sessionStorage.removeItem(CSRF_KEY);
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrfToken();
  const res = await fetch(path, {
    method, headers, signal, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  const type = res.headers.get("Content-Type") || "";
  if (type.includes("application/json")) data = await res.json();
  if (res.status === 401 && !path.startsWith("/api/v1/session")) {
    location.assign("/login?next=" + encodeURIComponent(location.pathname + location.hash));
    throw new ApiError(401, "signed out");
  }
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || res.statusText);
  return data;
}

export function wsUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}
