// The live grid: 1, 4, 9 or 16 tiles, each playing a camera's sub stream. The operator picks a
// camera per tile (or drags one tile onto another to swap them; Alt+arrow keys do the same),
// filters by site; the arrangement is remembered per site in this browser.

import { LivePlayer, mseSupported } from "./mse.js";
import { renderBadges, cameraOption } from "./cameras.js";

// A disabled camera shows no live video (the service refuses it too: controlroom/api/live.py).
const isDisabled = (cam) => cam && (cam.enabled === false || cam.state === "disabled");
const DISABLED_TEXT = "Camera disabled: no live video";

const STORE_KEY = "controlroom.grid";
const LAYOUTS = [1, 4, 9, 16];

export class Grid {
  constructor(el, store, { onOpen }) {
    Object.assign(this, { el, store, onOpen });
    this.saved = JSON.parse(localStorage.getItem(STORE_KEY) || "{}");
    this.site = this.saved.site || "";
    this.tiles = [];
    this.active = false;
    store.addEventListener("change", () => this.refreshBadges());
  }

  get arrangement() {
    const key = this.site || "*";
    this.saved.bySite = this.saved.bySite || {};
    if (!this.saved.bySite[key]) {
      this.saved.bySite[key] = { layout: 4, slots: this.store.inSite(this.site).slice(0, 16).map((c) => c.id) };
    }
    return this.saved.bySite[key];
  }

  save() { this.saved.site = this.site; localStorage.setItem(STORE_KEY, JSON.stringify(this.saved)); }

  setSite(site) { this.site = site; this.save(); this.render(); }
  setLayout(n) { if (!LAYOUTS.includes(n)) return; this.arrangement.layout = n; this.save(); this.render(); }

  /** Put a layout (a saved view, a tour's step) on the grid: every site, its size and cameras. */
  applyView(layout, tiles) {
    if (!LAYOUTS.includes(layout)) return;
    this.site = "";
    const arr = this.arrangement;
    arr.layout = layout; arr.slots = Array.from({ length: 16 }, (_, i) => tiles[i] ?? null);
    this.save();
    const sel = document.getElementById("site-filter"); if (sel) sel.value = "";
    if (this.active) this.render();
  }

  /** One tile's camera, without moving focus (a tour running in that tile). */
  setTile(index, camId) {
    const slots = this.arrangement.slots;
    while (slots.length <= index) slots.push(null);
    slots[index] = camId; this.save();
    if (this.active) this.replaceTile(index);
  }

  /** The tile that last had focus (a tour in one tile runs there). */
  get focusedIndex() { return this.lastFocused != null && this.lastFocused < this.arrangement.layout ? this.lastFocused : null; }

  show() { this.active = true; this.render(); }
  hide() { this.active = false; this.stopAll(); }

  stopAll() { for (const t of this.tiles) t.player && t.player.stop(); this.tiles = []; this.el.replaceChildren(); }

  render() {
    this.stopAll();
    if (!this.active) return;
    if (this.forbidden) {
      const note = document.createElement("p"); note.className = "notice"; note.textContent = this.forbidden;
      this.el.className = "grid n1"; this.el.replaceChildren(note); return;
    }
    const arr = this.arrangement;
    const n = arr.layout;
    this.el.className = `grid n${n}`;
    for (let i = 0; i < n; i++) this.tiles.push(this.makeTile(i, arr.slots[i]));
    this.el.replaceChildren(...this.tiles.map((t) => t.el));
    // Back from a camera (Esc): focus returns to its tile, not to the page.
    if (this.focusAfter != null) {
      const back = this.tiles.find((t) => t.cam && t.cam.id === this.focusAfter);
      this.focusAfter = null;
      if (back) back.el.focus();
    }
    document.querySelectorAll("[data-layout]").forEach((b) => b.setAttribute("aria-pressed", String(Number(b.dataset.layout) === n)));
  }

  makeTile(index, camId) {
    const cam = camId != null ? this.store.get(camId) : null;
    const el = document.createElement("div");
    el.className = "tile"; el.tabIndex = 0; el.dataset.index = String(index);
    el.setAttribute("role", "group");
    const tile = { el, index, cam, player: null, disabled: isDisabled(cam) };
    const head = document.createElement("div"); head.className = "tile-head";
    const name = document.createElement("span"); name.className = "tile-name";
    const site = document.createElement("span"); site.className = "tile-site";
    const badges = document.createElement("span"); badges.className = "badges";
    head.append(name, site, badges);
    const message = document.createElement("div"); message.className = "tile-message";
    const foot = document.createElement("div"); foot.className = "tile-foot";
    const select = document.createElement("select");
    select.setAttribute("aria-label", `Camera in tile ${index + 1}`);
    const none = document.createElement("option"); none.value = ""; none.textContent = "(empty)";
    select.append(none, ...this.store.inSite(this.site).map(cameraOption));
    select.value = cam ? String(cam.id) : "";
    select.addEventListener("change", () => this.assign(index, select.value ? Number(select.value) : null));
    foot.append(select);
    Object.assign(tile, { name, site, badges, message });
    if (cam && tile.disabled) {
      name.textContent = cam.name; name.title = cam.name;
      site.textContent = cam.site || ""; site.title = cam.site || "";
      el.setAttribute("aria-label", `Tile ${index + 1}: ${cam.name}, disabled`);
      el.dataset.state = "disabled";
      message.textContent = DISABLED_TEXT;
      el.append(head, message, foot);
      renderBadges(badges, cam);
    } else if (cam) {
      name.textContent = cam.name; name.title = cam.name;
      site.textContent = cam.site || ""; site.title = cam.site || "";
      el.setAttribute("aria-label", `Tile ${index + 1}: ${cam.name}`);
      const video = document.createElement("video");
      video.muted = true; video.autoplay = true; video.playsInline = true;
      video.dataset.camera = String(cam.id);
      el.append(video, head, message, foot);
      tile.video = video;
      if (mseSupported()) {
        tile.player = new LivePlayer(video, cam.id, "sub", {
          onState: (state, detail) => {
            el.dataset.state = state;
            if (state === "playing") el.dataset.transcoded = tile.player && tile.player.transcoded ? "1" : "";
            message.textContent = state === "playing" ? "" : state === "connecting" ? "Connecting…"
              : state === "reconnecting" ? `No picture: ${detail || "reconnecting"}` : (detail || state);
          },
        }).start();
      } else {
        // No MSE: a JPEG snapshot every two seconds instead.
        const img = document.createElement("img"); img.alt = cam.name; video.replaceWith(img);
        const load = () => { if (tile.stopped) return; img.src = `/api/v1/cameras/${cam.id}/snapshot.jpg?stream=sub&t=${Date.now()}`; };
        img.onload = img.onerror = () => setTimeout(load, 2000); load();
        tile.player = { stop: () => { tile.stopped = true; } };
      }
      renderBadges(badges, cam);
      el.addEventListener("dblclick", () => this.onOpen(cam.id));
    } else {
      const empty = document.createElement("div"); empty.className = "tile-empty";
      empty.textContent = "Choose a camera";
      el.append(empty, foot);
      el.setAttribute("aria-label", `Tile ${index + 1}: empty`);
    }
    el.addEventListener("keydown", (ev) => this.onKey(ev, tile));
    el.addEventListener("focusin", () => { this.lastFocused = index; });
    el.draggable = true;
    el.addEventListener("dragstart", (ev) => ev.dataTransfer.setData("text/x-tile", String(index)));
    el.addEventListener("dragover", (ev) => { ev.preventDefault(); el.classList.add("drop"); });
    el.addEventListener("dragleave", () => el.classList.remove("drop"));
    el.addEventListener("drop", (ev) => {
      ev.preventDefault(); el.classList.remove("drop");
      const from = Number(ev.dataTransfer.getData("text/x-tile"));
      if (!Number.isNaN(from)) this.swap(from, index);
    });
    return tile;
  }

  onKey(ev, tile) {
    if (ev.target !== tile.el) return;
    const n = this.arrangement.layout, cols = Math.sqrt(n);
    const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -cols, ArrowDown: cols };
    if (ev.key === "Enter" && tile.cam) { ev.preventDefault(); this.onOpen(tile.cam.id); return; }
    if (ev.key in moves) {
      const to = tile.index + moves[ev.key];
      if (to < 0 || to >= n) return;
      ev.preventDefault();
      if (ev.altKey) { this.swap(tile.index, to); } // arrange: carry the camera along
      this.focusTile(to);
    }
  }

  focusTile(i) { const t = this.tiles[i]; if (t) t.el.focus(); }

  assign(index, camId) {
    const slots = this.arrangement.slots;
    while (slots.length <= index) slots.push(null);
    slots[index] = camId; this.save(); this.replaceTile(index); this.focusTile(index);
  }

  /** Rebuild one tile (a new camera in it, or its camera disabled or enabled): the other tiles
   * keep their players and connections. */
  replaceTile(index) {
    const old = this.tiles[index];
    if (!this.active || !old) { this.render(); return; }
    if (old.player) old.player.stop();
    const tile = this.makeTile(index, this.arrangement.slots[index]);
    this.tiles[index] = tile;
    old.el.replaceWith(tile.el);
  }

  swap(a, b) {
    const slots = this.arrangement.slots;
    while (slots.length <= Math.max(a, b)) slots.push(null);
    [slots[a], slots[b]] = [slots[b], slots[a]]; this.save(); this.replaceTile(a); this.replaceTile(b);
  }

  refreshBadges() {
    for (const t of this.tiles) {
      if (!t.cam) continue;
      const cam = this.store.get(t.cam.id);
      if (!cam) continue;
      if (isDisabled(cam) !== t.disabled) { this.replaceTile(t.index); continue; }
      t.name.textContent = cam.name; t.site.textContent = cam.site || "";
      t.name.title = cam.name; t.site.title = cam.site || "";
      renderBadges(t.badges, cam);
    }
  }
}
