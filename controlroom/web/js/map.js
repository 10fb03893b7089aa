// The map (#map, M): an uploaded site plan or map picture with a pin per camera (no tile server:
// a control room's network reaches none). Clicking a pin (or Enter on it) opens the camera.
// Supervisors (views_share) upload plans and place pins: "Place pins" lists the cameras not yet
// on the plan, to drag onto it; a pin is dragged to move it, or moved with the arrow keys once
// focused (Shift: further); Delete takes it off; "Save pins" keeps them (controlroom/api/views.py).
// Pins are kept as fractions of the picture, so they stay on their spot at any size.

import { api, csrfToken } from "./api.js";
import { $, el } from "./dom.js";

export class MapView {
  constructor(store, can, { go }) {
    Object.assign(this, { store, can, go });
    this.edit = false; this.maps = []; this.pins = [];
    this.picker = el("select", { id: "map-pick", "aria-label": "Map" });
    this.picker.addEventListener("change", () => this.show(Number(this.picker.value)));
    this.msg = el("p", { id: "map-msg", role: "status" });
    this.img = el("img", { id: "map-img", class: "map-img", alt: "" });
    this.layer = el("div", { id: "map-pins", class: "map-pins" });
    this.stage = el("div", { id: "map-stage", class: "map-stage" }, this.img, this.layer);
    this.tray = el("ul", { id: "map-tray", class: "map-tray", "aria-label": "Cameras not on this plan" });
    this.editButton = el("button", { type: "button", id: "map-edit", text: "Place pins", hidden: !can.has("views_share") });
    this.saveButton = el("button", { type: "button", id: "map-save", class: "ok", text: "Save pins", hidden: true });
    this.editButton.addEventListener("click", () => this.setEdit(!this.edit));
    this.saveButton.addEventListener("click", () => this.savePins());
    this.stage.addEventListener("dragover", (ev) => { if (this.edit) ev.preventDefault(); });
    this.stage.addEventListener("drop", (ev) => {
      if (!this.edit) return;
      ev.preventDefault();
      const cam = Number(ev.dataTransfer.getData("text/x-camera"));
      if (cam) { this.place(cam, ...this.fraction(ev)); }
    });
    const upload = this.uploadForm();
    this.root = el("section", { id: "view-map", class: "view map-view", "aria-label": "Map", hidden: true },
      el("div", { class: "map-head" }, el("h2", { text: "Map" }), this.picker,
        el("a", { class: "button", href: "#views", id: "map-views-link" }, "Views ", el("kbd", { text: "V" })), this.editButton, this.saveButton,
        el("span", { class: "muted small", text: "Click a camera's pin to open it." }), el("div", { class: "spacer" }), this.msg),
      el("div", { class: "map-body" }, this.stage,
        el("aside", { class: "map-side", id: "map-side", hidden: true, "aria-label": "Placing pins" },
          el("h3", { text: "Cameras to place" }),
          el("p", { class: "muted small", text: "Drag a camera onto the plan; drag a pin to move it, or focus it and use the arrow keys; Delete removes it." }),
          this.tray)),
      upload);
    $("main").append(this.root);
  }

  uploadForm() {
    if (!this.can.has("views_share")) return null;
    this.upName = el("input", { id: "map-up-name", autocomplete: "off", maxlength: 200, "aria-required": "true" });
    this.upSite = el("select", { id: "map-up-site" }, el("option", { value: "", text: "Every site" }));
    this.upFile = el("input", { id: "map-up-file", type: "file", accept: "image/png,image/jpeg" });
    this.upError = el("p", { id: "map-up-error", class: "error", role: "alert" });
    const form = el("form", { id: "map-upload", class: "vw-form map-upload", novalidate: true },
      el("h3", { text: "Upload a site plan or map" }),
      el("p", { class: "muted small", text: "A PNG or JPEG picture of at most 5 MB (40 megapixels)." }),
      el("div", { class: "vw-fields" },
        el("label", { for: "map-up-name" }, "Name ", el("span", { class: "req", text: "(required)" })), this.upName,
        el("label", { for: "map-up-site", text: "Site" }), this.upSite,
        el("label", { for: "map-up-file" }, "Picture ", el("span", { class: "req", text: "(required)" })), this.upFile,
        el("button", { type: "submit", id: "map-up-go", text: "Upload" })), this.upError);
    form.addEventListener("submit", (ev) => { ev.preventDefault(); this.upload(); });
    return form;
  }

  async open(id) {
    this.root.hidden = false;
    try {
      this.maps = (await api("/api/v1/maps")).maps;
      if (this.upSite && this.upSite.options.length === 1) {
        const sites = (await api("/api/v1/views")).sites;
        this.upSite.append(...sites.map((s) => el("option", { value: s.id, text: s.name })));
      }
    } catch (e) { this.msg.textContent = `Maps unavailable: ${e.message}`; return; }
    // Left while the maps loaded (G pressed at once): the answer must not bring the map's URL back.
    if (this.root.hidden) return;
    this.picker.replaceChildren(...this.maps.map((m) => el("option", { value: m.id, text: m.site_name ? `${m.name} (${m.site_name})` : m.name })));
    this.picker.hidden = !this.maps.length;
    if (!this.maps.length) {
      this.current = null; this.img.removeAttribute("src"); this.layer.replaceChildren();
      this.msg.textContent = this.can.has("views_share") ? "No maps yet: upload a site plan below." : "No maps yet: a supervisor uploads them.";
      return;
    }
    this.show(this.maps.some((m) => m.id === id) ? id : this.maps[0].id);
  }

  close() { this.root.hidden = true; this.setEdit(false); }

  show(id) {
    this.current = this.maps.find((m) => m.id === id);
    this.picker.value = String(id);
    this.img.src = `/api/v1/maps/${id}/image`;
    this.img.alt = `Plan: ${this.current.name}`;
    this.stage.style.aspectRatio = `${this.current.width} / ${this.current.height}`;
    this.pins = this.current.pins.map((p) => ({ ...p }));
    this.msg.textContent = "";
    // Only while the map is what the URL shows: a replaced URL read by the next hashchange (the
    // view the operator went to meanwhile) would send them back here.
    if (location.hash.startsWith("#map") && location.hash !== `#map/${id}`) history.replaceState(null, "", `#map/${id}`);
    this.draw();
  }

  setEdit(on) {
    this.edit = on && Boolean(this.current);
    this.editButton.setAttribute("aria-pressed", String(this.edit));
    this.saveButton.hidden = !this.edit;
    $("map-side").hidden = !this.edit;
    this.root.classList.toggle("editing", this.edit);
    if (this.current) this.draw();
  }

  fraction(ev) {
    const r = this.layer.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [clamp((ev.clientX - r.left) / r.width), clamp((ev.clientY - r.top) / r.height)];
  }

  place(camera, x, y) {
    const pin = this.pins.find((p) => p.camera === camera);
    if (pin) Object.assign(pin, { x, y }); else this.pins.push({ camera, x, y });
    this.dirty = true; this.draw();
    this.layer.querySelector(`[data-camera="${camera}"]`)?.focus();
  }

  draw() {
    this.layer.replaceChildren(...this.pins.map((p) => {
      const cam = this.store.get(p.camera);
      const name = cam ? cam.name : `camera ${p.camera}`;
      const state = cam ? (cam.enabled === false ? "disabled" : cam.state) : "unknown";
      const pin = el("button", { type: "button", class: `map-pin state-${state}`, "data-camera": p.camera,
        title: name, "aria-label": this.edit ? `Pin of ${name}: arrow keys move it, Delete removes it` : `Open ${name}` },
      el("span", { class: "map-pin-dot", "aria-hidden": "true" }), el("span", { class: "map-pin-name", text: name }));
      pin.style.left = `${p.x * 100}%`; pin.style.top = `${p.y * 100}%`;
      if (this.edit) {
        pin.draggable = true;
        pin.addEventListener("dragstart", (ev) => ev.dataTransfer.setData("text/x-camera", String(p.camera)));
        pin.addEventListener("keydown", (ev) => {
          const step = ev.shiftKey ? 0.05 : 0.01;
          const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
          if (ev.key in moves) {
            ev.preventDefault(); ev.stopPropagation();
            const [dx, dy] = moves[ev.key];
            this.place(p.camera, Math.min(1, Math.max(0, p.x + dx)), Math.min(1, Math.max(0, p.y + dy)));
          } else if (ev.key === "Delete" || ev.key === "Backspace") {
            ev.preventDefault(); this.pins = this.pins.filter((q) => q !== p); this.dirty = true; this.draw();
          }
        });
      } else pin.addEventListener("click", () => this.go(`#camera/${p.camera}`));
      return pin;
    }));
    if (!this.edit) return;
    const placed = new Set(this.pins.map((p) => p.camera));
    this.tray.replaceChildren(...this.store.list.filter((c) => !placed.has(c.id)).map((c) => {
      const li = el("li", { class: "map-tray-item", draggable: "true", "data-camera": c.id, tabindex: 0,
        "aria-label": `${c.name}: drag onto the plan, or press Enter to put it in the middle` }, el("span", { text: c.name }),
      c.site ? el("span", { class: "muted small", text: ` ${c.site}` }) : null);
      li.addEventListener("dragstart", (ev) => ev.dataTransfer.setData("text/x-camera", String(c.id)));
      li.addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); this.place(c.id, 0.5, 0.5); } });
      return li;
    }));
  }

  async savePins() {
    try {
      const saved = await api(`/api/v1/maps/${this.current.id}/pins`, { method: "PUT", body: { pins: this.pins } });
      Object.assign(this.current, saved); this.pins = saved.pins.map((p) => ({ ...p })); this.dirty = false;
      this.msg.textContent = `Pins of ${saved.name} saved (${saved.pins.length}).`;
      this.setEdit(false);
    } catch (e) { this.msg.textContent = `Pins not saved: ${e.message}`; }
  }

  async upload() {
    const name = this.upName.value.trim(), file = this.upFile.files[0];
    const problems = [];
    if (!name) problems.push("Name is required");
    if (!file) problems.push("choose the picture (PNG or JPEG)");
    else if (file.size > 5 * 1024 * 1024) problems.push("the picture is larger than 5 MB");
    if (problems.length) { this.upError.textContent = `Not uploaded: ${problems.join("; ")}.`; return; }
    const q = new URLSearchParams({ name }); if (this.upSite.value) q.set("site", this.upSite.value);
    // The picture itself is the body (not JSON); the service decodes it to check it.
    const res = await fetch(`/api/v1/maps?${q}`, { method: "POST", body: file, credentials: "same-origin",
      headers: { "Content-Type": file.type || "application/octet-stream", "X-CSRF-Token": csrfToken(), Accept: "application/json" } });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) { this.upError.textContent = `Not uploaded: ${data.error || res.statusText}`; return; }
    this.upError.textContent = ""; this.upName.value = ""; this.upFile.value = "";
    await this.open(data.id);
    this.msg.textContent = `Map ${data.name} uploaded (${data.width}x${data.height}).`;
  }
}
