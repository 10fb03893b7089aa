// The camera list, refreshed every two seconds, and the status badges drawn from it.
// Camera and site names are always set with textContent: never parsed as HTML.

import { api } from "./api.js";
import { formatLocal, sinceText } from "./time.js";

const REFRESH_MS = 2000;

export class CameraStore extends EventTarget {
  constructor() { super(); this.cameras = new Map(); this.list = []; this.timer = null; }

  async refresh() {
    const data = await api("/api/v1/cameras");
    this.list = data.cameras;
    this.cameras = new Map(this.list.map((c) => [c.id, c]));
    this.loaded = true; // the list is known: a camera not in it has been removed
    this.dispatchEvent(new Event("change"));
  }

  start() {
    const tick = async () => {
      try { await this.refresh(); } catch (e) { /* shown by the next successful refresh */ }
      this.timer = setTimeout(tick, REFRESH_MS);
    };
    return tick();
  }

  get(id) { return this.cameras.get(Number(id)); }
  sites() { return [...new Set(this.list.map((c) => c.site).filter(Boolean))].sort(); }
  inSite(site) { return this.list.filter((c) => !site || c.site === site); }
}

function badge(cls, text, title) {
  const el = document.createElement("span");
  el.className = `badge ${cls}`;
  el.textContent = text;
  if (title) el.title = title;
  return el;
}

/** The badges for a camera: recording / reconnecting / offline since when / disabled, and
 * "clock off" when its clock is off by more than the threshold. */
export function badgesFor(cam) {
  const out = [];
  const since = cam.state_since ? Date.parse(cam.state_since) : null;
  const reason = cam.state_reason || "";
  switch (cam.state) {
    case "recording": out.push(badge("recording", "● REC", "Recording")); break;
    case "reconnecting": out.push(badge("reconnecting", "Reconnecting", reason)); break;
    // ffmpeg runs but footage is not being catalogued (database or disk trouble): not "REC".
    case "degraded": out.push(badge("offline", "Not catalogued", reason)); break;
    case "offline":
      out.push(badge("offline", since ? `Offline since ${formatLocal(since, { date: false })}` : "Offline",
        `${reason}${since ? ` (for ${sinceText(since)})` : ""}`));
      break;
    case "disabled": out.push(badge("disabled", "Disabled")); break;
    default: out.push(badge("starting", "Starting"));
  }
  if (cam.clock_flag) {
    const off = cam.clock_offset_s == null ? "" : ` (${cam.clock_offset_s > 0 ? "+" : ""}${cam.clock_offset_s.toFixed(1)} s)`;
    out.push(badge("clock", `Clock off${off}`, "The camera's clock differs from ours by more than the threshold"));
  }
  return out;
}

export function renderBadges(container, cam) {
  container.replaceChildren(...(cam ? badgesFor(cam) : []));
}

export function cameraOption(cam) {
  const opt = document.createElement("option");
  opt.value = String(cam.id);
  opt.textContent = cam.site ? `${cam.name} (${cam.site})` : cam.name;
  return opt;
}
