// One camera, full size, from its main stream; PTZ controls for PTZ cameras; snapshot download;
// "back 30 s" (opens playback 30 s ago). PTZ goes through the ONVIF PTZ API of the service.

import { api } from "./api.js";
import { LivePlayer } from "./mse.js";
import { renderBadges } from "./cameras.js";

const PTZ_SPEED = 0.5; // directions below are scaled by the speed chosen (Slow 0.2, Normal 0.5, Fast 1)
const SPEED_KEY = "controlroom.ptz.speed";
const MOVE_LIMIT_S = 10; // the camera stops by itself if the release (stop) is lost
const MOVES = {
  up: { pan: 0, tilt: PTZ_SPEED, zoom: 0 }, down: { pan: 0, tilt: -PTZ_SPEED, zoom: 0 },
  left: { pan: -PTZ_SPEED, tilt: 0, zoom: 0 }, right: { pan: PTZ_SPEED, tilt: 0, zoom: 0 },
  zoomin: { pan: 0, tilt: 0, zoom: PTZ_SPEED }, zoomout: { pan: 0, tilt: 0, zoom: -PTZ_SPEED },
};
const KEYS = { ArrowUp: "up", ArrowDown: "down", ArrowLeft: "left", ArrowRight: "right", "+": "zoomin", "=": "zoomin", "-": "zoomout" };

export class SingleView {
  constructor(store, { onBack, onBack30 }) {
    Object.assign(this, { store, onBack, onBack30 });
    this.video = document.getElementById("single-video");
    this.message = document.getElementById("single-message");
    this.ptzPanel = document.getElementById("ptz");
    this.presets = document.getElementById("ptz-presets");
    this.status = document.getElementById("ptz-status");
    this.noPresets = document.getElementById("ptz-no-presets"); // its own line: a move's status does not clear it
    this.speedSel = document.getElementById("ptz-speed");
    this.speedSel.value = localStorage.getItem(SPEED_KEY) || String(PTZ_SPEED);
    this.speedSel.addEventListener("change", () => localStorage.setItem(SPEED_KEY, this.speedSel.value));
    document.getElementById("ptz-home").addEventListener("click", () => this.goHome());
    document.getElementById("ptz-save").addEventListener("submit", (ev) => { ev.preventDefault(); this.savePreset(); });
    this.player = null; this.cam = null; this.moving = null;
    document.getElementById("single-back").addEventListener("click", () => this.onBack());
    document.getElementById("single-back30").addEventListener("click", () => this.cam && this.onBack30(this.cam.id));
    for (const b of this.ptzPanel.querySelectorAll("[data-ptz]")) {
      const dir = b.dataset.ptz;
      if (dir === "stop") { b.addEventListener("click", () => this.stopMove()); continue; }
      b.addEventListener("pointerdown", () => this.move(dir));
      b.addEventListener("pointerup", () => this.stopMove());
      b.addEventListener("pointerleave", () => this.moving === dir && this.stopMove());
      b.addEventListener("keydown", (ev) => { if ((ev.key === "Enter" || ev.key === " ") && !ev.repeat) { ev.preventDefault(); this.move(dir); } });
      b.addEventListener("keyup", (ev) => { if (ev.key === "Enter" || ev.key === " ") this.stopMove(); });
    }
    const box = this.video.parentElement;
    box.tabIndex = 0;
    box.addEventListener("keydown", (ev) => { const d = KEYS[ev.key]; if (d && this.cam?.ptz && !ev.repeat) { ev.preventDefault(); this.move(d); } });
    box.addEventListener("keyup", (ev) => { if (KEYS[ev.key] && this.cam?.ptz) this.stopMove(); });
    store.addEventListener("change", () => { if (this.cam) renderBadges(document.getElementById("single-badges"), this.store.get(this.cam.id)); });
  }

  open(camId) {
    this.close();
    const cam = this.store.get(camId);
    if (!cam) return;
    this.cam = cam;
    document.getElementById("single-name").textContent = cam.site ? `${cam.name} · ${cam.site}` : cam.name;
    renderBadges(document.getElementById("single-badges"), cam);
    const snap = document.getElementById("single-snapshot");
    snap.href = `/api/v1/cameras/${cam.id}/snapshot.jpg?stream=main&download=1`;
    this.video.dataset.camera = String(cam.id);
    this.player = new LivePlayer(this.video, cam.id, "main", {
      onState: (state, detail) => {
        this.message.textContent = state === "playing" ? "" : state === "connecting" ? "Connecting…"
          : `No picture: ${detail || state}`;
      },
    }).start();
    this.ptzPanel.hidden = !cam.ptz;
    if (cam.ptz) this.loadPresets();
    this.video.parentElement.focus();
  }

  close() {
    if (this.player) this.player.stop();
    this.player = null; this.cam = null; this.presets.replaceChildren(); this.status.textContent = ""; this.noPresets.hidden = true;
  }

  async loadPresets() {
    const camId = this.cam.id;
    try {
      const data = await api(`/api/v1/cameras/${camId}/ptz/presets`);
      if (!this.cam || this.cam.id !== camId) return;
      const list = data.presets || [];
      this.presets.replaceChildren(...list.map((p, i) => {
        const li = document.createElement("li");
        const b = document.createElement("button"); b.type = "button";
        b.textContent = `${i + 1}. ${p.name || p.token}`;
        b.dataset.preset = p.token;
        b.addEventListener("click", () => this.gotoPreset(p));
        li.append(b); return li;
      }));
      this.noPresets.hidden = list.length > 0;
    } catch (e) { this.status.textContent = `Presets unavailable: ${e.message}`; }
  }

  async gotoPreset(p) {
    this.status.textContent = `Going to ${p.name || p.token}…`;
    try {
      await api(`/api/v1/cameras/${this.cam.id}/ptz/goto`, { method: "POST", body: { preset: p.token } });
      this.status.textContent = `At preset ${p.name || p.token}`;
    } catch (e) { this.status.textContent = `Preset failed: ${e.message}`; }
  }

  async goHome() {
    if (!this.cam) return;
    this.status.textContent = "Going home…";
    try { await api(`/api/v1/cameras/${this.cam.id}/ptz/home`, { method: "POST", body: {} }); this.status.textContent = "At the home position"; }
    catch (e) { this.status.textContent = `Home failed: ${e.message}`; }
  }

  async savePreset() {
    const input = document.getElementById("ptz-save-name");
    const name = input.value.trim();
    if (!this.cam) return;
    if (!name) { this.status.textContent = "Name the preset first."; input.focus(); return; }
    this.status.textContent = `Saving ${name}…`;
    try {
      await api(`/api/v1/cameras/${this.cam.id}/ptz/presets`, { method: "POST", body: { name } });
      input.value = ""; this.status.textContent = `Saved preset ${name}`;
      await this.loadPresets();
    } catch (e) { this.status.textContent = `Saving the preset failed: ${e.message}`; }
  }

  async move(dir) {
    if (!this.cam) return;
    this.moving = dir;
    const speed = Number(this.speedSel.value) || PTZ_SPEED;
    const v = Object.fromEntries(Object.entries(MOVES[dir]).map(([k, x]) => [k, (x / PTZ_SPEED) * speed]));
    try { await api(`/api/v1/cameras/${this.cam.id}/ptz/move`, { method: "POST", body: { ...v, timeout_s: MOVE_LIMIT_S } }); this.status.textContent = ""; }
    catch (e) { this.status.textContent = `PTZ failed: ${e.message}`; }
  }

  async stopMove() {
    if (!this.cam || !this.moving) return;
    this.moving = null;
    try { await api(`/api/v1/cameras/${this.cam.id}/ptz/stop`, { method: "POST", body: {} }); }
    catch (e) { this.status.textContent = `PTZ stop failed: ${e.message}`; }
  }
}
