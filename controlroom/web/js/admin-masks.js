// Administration > Cameras > Privacy masks: draw polygons over a snapshot of the camera (click to
// place points, "Close polygon" to finish one), give a reason, save. The snapshot already shows
// the masks in force filled in (an administrator has no unmask right); the polygons drawn are
// outlined over it. Coordinates are sent as fractions of the picture (docs/design/lawful-use.md).

import { api } from "./api.js";
import { el } from "./dom.js";
import { button, field, input } from "./admin-kit.js";

const round = (v) => Math.round(v * 10000) / 10000;

export class MaskEditor {
  /** ``cam``: the camera; ``done(message)``: called when the editor closes. */
  constructor(cam, done) {
    this.cam = cam;
    this.done = done;
    this.polygons = [];
    this.current = [];
    this.img = el("img", { id: "mask-snapshot", alt: `Snapshot of ${cam.name}`, class: "mask-snapshot" });
    this.canvas = el("canvas", { id: "mask-canvas", class: "mask-canvas", "aria-label": "Click to place the points of a mask" });
    this.reason = input("mask-reason", { placeholder: "why this area is masked", maxlength: "2000" });
    this.msg = el("p", { id: "mask-msg", class: "adm-msg", role: "status" });
    const close = button("Close polygon", { id: "mask-close-polygon" });
    close.addEventListener("click", () => this.closePolygon());
    const undo = button("Start again", { id: "mask-reset" });
    undo.addEventListener("click", () => { this.polygons = []; this.current = []; this.draw(); });
    const save = button("Save masks", { id: "mask-save" });
    save.addEventListener("click", () => this.save());
    const clear = button("Remove all masks", { id: "mask-clear", class: "adm-danger" });
    clear.addEventListener("click", () => this.clear());
    const cancel = button("Cancel", { id: "mask-cancel" });
    cancel.addEventListener("click", () => this.done(""));
    this.canvas.addEventListener("click", (ev) => this.addPoint(ev));
    this.img.addEventListener("load", () => this.draw());
    this.root = el("section", { id: "mask-editor", class: "adm-form", "aria-label": `Privacy masks of ${cam.name}` },
      el("h3", { text: `Privacy masks: ${cam.name}` }),
      el("p", { class: "adm-hint", text: "Click the corners of the area to hide, then Close polygon. Nobody without the unmask right will see it, live or recorded." }),
      el("div", { class: "mask-stage" }, this.img, this.canvas),
      el("div", { class: "adm-toolbar" }, close, undo),
      field("Reason", this.reason, { required: true }),
      el("div", { class: "adm-toolbar" }, save, clear, cancel), this.msg);
  }

  async open() {
    const shown = await api(`/api/v1/cameras/${this.cam.id}/masks`);
    this.polygons = shown.polygons || [];
    this.version = shown.version;
    this.img.src = `/api/v1/cameras/${this.cam.id}/masks/snapshot.jpg?t=${Date.now()}`;
    this.draw();
  }

  addPoint(ev) {
    const box = this.canvas.getBoundingClientRect();
    this.current.push([round((ev.clientX - box.left) / box.width), round((ev.clientY - box.top) / box.height)]);
    this.draw();
  }

  closePolygon() {
    if (this.current.length < 3) { this.msg.textContent = "A mask needs at least three points."; return; }
    this.polygons.push(this.current);
    this.current = [];
    this.msg.textContent = `${this.polygons.length} mask(s) drawn; give a reason and save.`;
    this.draw();
  }

  draw() {
    const w = this.img.clientWidth || 640;
    const h = this.img.clientHeight || 360;
    this.canvas.width = w;
    this.canvas.height = h;
    const ctx = this.canvas.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    const path = (pts, closed) => {
      ctx.beginPath();
      pts.forEach(([x, y], i) => (i ? ctx.lineTo(x * w, y * h) : ctx.moveTo(x * w, y * h)));
      if (closed) ctx.closePath();
    };
    ctx.lineWidth = 2;
    for (const poly of this.polygons) {
      path(poly, true);
      ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
      ctx.fill();
      ctx.strokeStyle = "#ffd400";
      ctx.stroke();
    }
    if (this.current.length) {
      path(this.current, false);
      ctx.strokeStyle = "#ff5a00";
      ctx.stroke();
      for (const [x, y] of this.current) ctx.fillRect(x * w - 3, y * h - 3, 6, 6);
    }
  }

  async save() {
    if (this.current.length >= 3) this.closePolygon();
    if (!this.polygons.length) { this.msg.textContent = "Draw a mask first (or remove all masks)."; return; }
    if (!this.reason.value.trim()) { this.msg.textContent = "Say why the area is masked: the reason is kept in the audit trail."; return; }
    try {
      const saved = await api(`/api/v1/cameras/${this.cam.id}/masks`, { method: "PUT", body: { polygons: this.polygons, reason: this.reason.value.trim() } });
      this.done(`Privacy masks of ${this.cam.name} saved (${saved.polygons.length}, version ${saved.version}); open views restart with them.`);
    } catch (e) { this.msg.textContent = `Not saved: ${e.message}`; }
  }

  async clear() {
    if (!this.reason.value.trim()) { this.msg.textContent = "Say why the masks are removed: the reason is kept in the audit trail."; return; }
    try {
      await api(`/api/v1/cameras/${this.cam.id}/masks/clear`, { method: "POST", body: { reason: this.reason.value.trim() } });
      this.done(`Privacy masks of ${this.cam.name} removed.`);
    } catch (e) { this.msg.textContent = `Not removed: ${e.message}`; }
  }
}
