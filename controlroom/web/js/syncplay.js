// Synchronised playback: up to 16 cameras on one timeline and one clock. Each tile has its own
// recorded stream (a plan and a PlaybackPlayer, as in playback.js); the view's clock says which
// wall-clock moment is shown, and every tile follows it: seeking, playing and pausing together,
// and showing "No recording" over its own gaps. The URL carries the cameras and the time
// (#sync/3,4,7,9/UTCms), so a reload or a link from an alert, an ANPR read or a bookmark opens it.
// A still (PNG with camera and time burnt in) and a short clip come from the chosen tile; both
// are audited, and footage leaving the building still goes through an evidence request.

import { PlaybackPlayer } from "./mse.js";
import { Timeline, recordedDay } from "./timeline.js";
import { DigitalZoom } from "./zoom.js";
import { $, el } from "./dom.js";
import { formatLocal, formatLocalPrecise, londonDay, localParts } from "./time.js";

export const MAX_CAMERAS = 16;
const LAYOUTS = [1, 4, 9, 16];
const DRIFT_S = 0.35;        // a tile further than this from the clock is put back on it
const REPLAN_MS = 4000;      // a tile past its run asks for the next one at most this often

/** "#sync/3,4,7,9/ms": the camera ``camId`` and up to n-1 more, its own site's first. */
export function syncHash(store, camId, ms, n = 4) {
  const ids = [Number(camId)];
  const cam = store && store.get(camId);
  const others = store ? store.list.filter((c) => c.id !== Number(camId)) : [];
  others.sort((a, b) => (cam && b.site === cam.site) - (cam && a.site === cam.site) || a.id - b.id);
  for (const c of others) { if (ids.length >= n) break; ids.push(c.id); }
  return `#sync/${ids.join(",")}/${Math.round(ms)}`;
}

/** "#sync/…/ms": up to n cameras of ``site`` (an ANPR journey's end), or "" if it has none. */
export function siteHash(store, site, ms, n = 4) {
  const ids = store ? store.list.filter((c) => c.site === site).slice(0, n).map((c) => c.id) : [];
  return ids.length ? `#sync/${ids.join(",")}/${Math.round(ms)}` : "";
}

class SyncTile {
  constructor(view, index) {
    this.view = view; this.index = index; this.camId = null; this.plan = null; this.loading = null; this.replanAt = 0;
    this.video = el("video", { muted: true, playsinline: true });
    this.video.muted = true;
    this.name = el("span", { class: "sync-name" });
    this.message = el("div", { class: "tile-message" });
    this.stamp = el("div", { class: "sync-stamp" });
    this.root = el("div", { class: "sync-tile", tabindex: "0", "data-index": String(index) },
      this.video, this.name, this.message, this.stamp);
    this.root.addEventListener("pointerdown", () => view.select(this));
    this.root.addEventListener("focus", () => view.select(this));
    this.zoom = new DigitalZoom(this.root, this.video);
    this.player = new PlaybackPlayer(this.video, { onEnd: () => {}, onError: (e) => this.say(`Playback failed: ${e.message}`) });
  }

  say(text) { this.message.textContent = text || ""; this.root.classList.toggle("sync-gap", /^No recording/.test(text || "")); }

  setCamera(camId) {
    this.camId = camId; this.plan = null; this.player.stop(); this.zoom.reset();
    const cam = camId != null ? this.view.store.get(camId) : null;
    this.name.textContent = cam ? cam.name : camId != null ? `Camera ${camId}` : "";
    this.name.title = this.name.textContent;
    this.root.setAttribute("aria-label", `Tile ${this.index + 1}: ${this.name.textContent || "no camera"}`);
    this.video.dataset.camera = camId != null ? String(camId) : "";
    this.say(camId == null ? "No camera" : "");
  }

  /** Media time of wall-clock ``ms`` in this tile's run, or null (before it, after it, in a hole). */
  mediaTimeOf(ms) {
    if (!this.plan) return null;
    for (const p of this.plan.pieces) {
      const end = p.end_us == null ? Infinity : p.end_us / 1000;
      if (ms >= p.start_us / 1000 && ms < end) return p.media_offset_s + (ms - p.start_us / 1000) / 1000;
    }
    return null;
  }

  wallOf(t) {
    if (!this.plan) return null;
    let piece = this.plan.pieces[0];
    for (const p of this.plan.pieces) if (p.media_offset_s <= t) piece = p;
    return piece.start_us / 1000 + (t - piece.media_offset_s) * 1000;
  }

  /** Show wall-clock ``ms``: seek within what is buffered, or ask for the run there. */
  goto(ms) {
    if (this.camId == null) return Promise.resolve();
    const t = this.mediaTimeOf(ms);
    if (t != null && this.player.has(t)) { this.video.currentTime = t; return Promise.resolve(); }
    return this.load(ms);
  }

  load(ms) {
    const camId = this.camId;
    this.replanAt = performance.now();
    const job = (async () => {
      try {
        const plan = await this.player.loadAt(camId, ms, {
          play: false, onPlan: (p) => { if (this.camId !== camId) return false; this.plan = p; return true; } });
        if (!plan) return;
        this.video.playbackRate = this.view.rate;
      } catch (e) {
        if (this.camId !== camId) return;
        this.plan = null;
        this.say(e.status === 404 ? `No recording at or after ${formatLocal(ms)}` : `Playback failed: ${e.message}`);
      }
    })();
    this.loading = job;
    job.finally(() => { if (this.loading === job) this.loading = null; });
    return job;
  }

  /** Follow the view's clock: play, pause or seek to it, or say there is no recording here. */
  follow(ms, playing, rate) {
    if (this.camId == null || this.loading) return;
    const t = this.mediaTimeOf(ms);
    if (t == null || !this.player.has(t)) {
      if (!this.video.paused) this.video.pause();
      const after = this.plan && this.plan.pieces.length && ms >= this.plan.pieces[0].start_us / 1000;
      if (this.plan) this.say(`No recording at ${formatLocal(ms, { date: false })}`);
      // Past this run (or a part not yet fetched): the next run, not more often than REPLAN_MS.
      if ((after || !this.plan) && performance.now() - this.replanAt > REPLAN_MS && (this.plan || !this.message.textContent.startsWith("No recording at or after"))) this.load(ms);
      return;
    }
    if (this.message.textContent) this.say("");
    if (Math.abs(this.video.currentTime - t) > DRIFT_S * Math.max(1, rate)) this.video.currentTime = t;
    if (this.video.playbackRate !== rate) this.video.playbackRate = rate;
    if (playing && this.video.paused) this.video.play().catch(() => {});
    else if (!playing && !this.video.paused) this.video.pause();
    const wall = this.wallOf(this.video.currentTime);
    if (wall != null) { this.video.dataset.wallMs = String(Math.round(wall)); this.stamp.textContent = formatLocalPrecise(wall); }
  }

  stop() { this.loading = null; this.plan = null; this.player.stop(); }
}

export class SyncView {
  constructor(store, { go }) {
    Object.assign(this, { store, go });
    this.root = $("view-sync");
    this.gridEl = $("sync-grid");
    this.positionEl = $("sync-position");
    this.noteEl = $("sync-note");
    this.tiles = []; this.layout = 4; this.selected = null;
    this.wall = Date.now() - 60e3; this.playing = false; this.rate = 1; this.active = false; this.holding = false;
    this.day = new Timeline($("sync-tl-day"), { onPick: (ms, final) => this.picked(ms, final) });
    this.hour = new Timeline($("sync-tl-hour"), { onPick: (ms, final) => this.picked(ms, final) });
    for (const b of this.root.querySelectorAll("[data-sync-layout]")) b.addEventListener("click", () => this.setLayout(Number(b.dataset.syncLayout)));
    for (const b of this.root.querySelectorAll("[data-sync-rate]")) b.addEventListener("click", () => this.setRate(Number(b.dataset.syncRate)));
    $("sync-play").addEventListener("click", () => this.toggle());
    $("sync-back").addEventListener("click", () => this.seek(this.wall - 10e3));
    $("sync-fwd").addEventListener("click", () => this.seek(this.wall + 10e3));
    $("sync-still").addEventListener("click", () => this.still());
    $("sync-clip").addEventListener("click", () => this.clip());
    $("sync-camera").addEventListener("change", () => this.changeCamera());
    let last = performance.now();
    const tick = (now) => {
      const dt = now - last; last = now;
      if (this.active) {
        if (this.playing && !this.holding) this.wall = Math.min(this.wall + dt * this.rate, Date.now() - 1000);
        for (const tile of this.tiles) tile.follow(this.wall, this.playing && !this.holding, this.rate);
        this.showPosition();
      }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  /** Open ``ids`` (camera ids) at ``ms``; resolves once every tile is positioned there. */
  async open(ids, ms) {
    this.active = true;
    ids = ids.filter((id) => Number.isFinite(id)).slice(0, MAX_CAMERAS);
    this.setLayout(LAYOUTS.find((n) => n >= ids.length) || MAX_CAMERAS, { load: false });
    this.tiles.forEach((t, i) => t.setCamera(ids[i] ?? null));
    this.selected = null; // its camera may be another now: choose it again (camera list, timeline)
    this.select(this.tiles[0]);
    await this.seek(ms ?? Date.now() - 60e3, { play: true });
  }

  close() { if (!this.active) return; this.active = false; this.playing = false; for (const t of this.tiles) t.stop(); }

  cameraIds() { return this.tiles.map((t) => t.camId).filter((id) => id != null); }

  setLayout(n, { load = true } = {}) {
    if (!LAYOUTS.includes(n)) return;
    for (const t of this.tiles.slice(n)) t.stop();
    this.tiles = this.tiles.slice(0, n);
    while (this.tiles.length < n) { const t = new SyncTile(this, this.tiles.length); t.setCamera(null); this.tiles.push(t); }
    this.layout = n;
    this.gridEl.dataset.layout = String(n);
    this.gridEl.replaceChildren(...this.tiles.map((t) => t.root));
    for (const b of this.root.querySelectorAll("[data-sync-layout]")) b.setAttribute("aria-pressed", String(Number(b.dataset.syncLayout) === n));
    if (!this.tiles.includes(this.selected)) this.select(this.tiles[0]);
    if (load) {
      // More tiles: filled with cameras not shown yet, at the clock's moment.
      const shown = new Set(this.cameraIds());
      const spare = this.store.list.filter((c) => !shown.has(c.id));
      for (const t of this.tiles) if (t.camId == null && spare.length) { t.setCamera(spare.shift().id); t.load(this.wall); }
      this.syncUrl();
    }
  }

  select(tile) {
    if (!tile || this.selected === tile) return;
    this.selected = tile;
    for (const t of this.tiles) t.root.classList.toggle("selected", t === tile);
    const sel = $("sync-camera");
    sel.replaceChildren(el("option", { value: "", text: "(none)" }),
      ...this.store.list.map((c) => el("option", { value: String(c.id), text: c.site ? `${c.name} (${c.site})` : c.name })));
    sel.value = tile.camId != null ? String(tile.camId) : "";
    this.loadDay();
  }

  /** The chosen tile shows another camera: only that tile reconnects. */
  changeCamera() {
    const v = $("sync-camera").value;
    const tile = this.selected;
    tile.setCamera(v ? Number(v) : null);
    if (v) tile.load(this.wall);
    this.syncUrl(); this.loadDay();
  }

  /** Every tile to wall-clock ``ms`` together: the clock waits until all are there. */
  async seek(ms, { play } = {}) {
    ms = Math.min(ms, Date.now() - 1000);
    this.wall = ms; this.holding = true;
    if (play !== undefined) this.playing = play;
    for (const t of this.tiles) t.video.pause();
    this.setCursor(ms);
    const dayNow = localParts(ms).date;
    if (dayNow !== this.dayShown) this.loadDay();
    this.openedAt = performance.now();
    try { await Promise.allSettled(this.tiles.map((t) => t.goto(ms))); }
    finally { if (this.wall === ms) this.holding = false; }
    this.syncUrl();
  }

  picked(ms, final) { this.setCursor(ms); if (final) this.seek(ms); }

  setCursor(ms) {
    if (this.hour.cursor == null || ms < this.hour.start + 60e3 || ms > this.hour.end - 60e3) this.hour.setRange(ms - 30 * 60e3, ms + 30 * 60e3);
    this.day.setCursor(ms); this.hour.setCursor(ms);
  }

  /** The chosen tile's recordings on the day shown (each read is audited: loaded on change only). */
  async loadDay() {
    const camId = this.selected && this.selected.camId;
    const date = localParts(this.wall).date;
    this.dayShown = date;
    const [start, end] = londonDay(date);
    this.day.setRange(start, end);
    if (camId == null) { this.day.setData([], []); this.hour.setData([], []); return; }
    try {
      const day = await recordedDay(this, camId, start, end); // null: a newer load draws instead
      if (!day) return;
      this.day.setData(day.spans, day.gaps); this.hour.setData(day.spans, day.gaps);
    } catch (e) { this.note(`Recordings unavailable: ${e.message}`); }
  }

  showPosition() {
    const text = formatLocalPrecise(this.wall);
    if (this.positionEl.textContent !== text) this.positionEl.textContent = text;
    if (!this.day.dragging && !this.hour.dragging && Math.abs((this.day.cursor ?? 0) - this.wall) > 1000) this.setCursor(this.wall);
    if (!this.urlAt || performance.now() - this.urlAt > 1000) { this.urlAt = performance.now(); this.syncUrl(); }
  }

  syncUrl() {
    if (!this.active || !location.hash.startsWith("#sync")) return;
    const hash = `#sync/${this.tiles.map((t) => t.camId ?? "").join(",").replace(/,+$/, "")}/${Math.round(this.wall)}`;
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  toggle() { this.playing = !this.playing; }
  setRate(r) {
    this.rate = r;
    for (const b of this.root.querySelectorAll("[data-sync-rate]")) b.setAttribute("aria-pressed", String(Number(b.dataset.syncRate) === r));
  }

  note(text) { this.noteEl.textContent = text || ""; }

  /** The moment the chosen tile shows (its frame's own time), or the clock's. */
  shownMs() {
    const t = this.selected;
    const w = t && t.video.dataset.wallMs ? Number(t.video.dataset.wallMs) : null;
    return w != null && Math.abs(w - this.wall) < 2000 ? w : this.wall;
  }

  async download(url, what) {
    this.note(`Making the ${what}…`);
    try {
      const res = await fetch(url, { credentials: "same-origin" });
      if (!res.ok) {
        let msg = `${res.status}`;
        try { msg = (await res.json()).error || msg; } catch (e) { /* not JSON */ }
        throw new Error(msg);
      }
      const name = /filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") || "")?.[1] || what;
      const blob = await res.blob();
      const a = el("a", { href: URL.createObjectURL(blob), download: name });
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60e3);
      const recorded = res.headers.get("X-Recorded-S");
      this.note(`${name} saved${recorded ? ` (${Number(recorded).toFixed(0)} s of recording)` : ""}; recorded in the audit trail.`);
    } catch (e) { this.note(`The ${what} could not be made: ${e.message}`); }
  }

  still() {
    const t = this.selected;
    if (!t || t.camId == null) { this.note("Choose a tile with a camera first"); return; }
    const at = new Date(this.shownMs()).toISOString();
    return this.download(`/api/v1/cameras/${t.camId}/still.png?at=${encodeURIComponent(at)}`, "still");
  }

  clip() {
    const t = this.selected;
    if (!t || t.camId == null) { this.note("Choose a tile with a camera first"); return; }
    const len = Number($("sync-clip-len").value) * 1000;
    const mid = this.shownMs();
    const end = Math.min(mid + len / 2, Date.now() - 1000), start = end - len;
    const q = `from=${encodeURIComponent(new Date(start).toISOString())}&to=${encodeURIComponent(new Date(end).toISOString())}`;
    return this.download(`/api/v1/cameras/${t.camId}/clip.mp4?${q}`, "clip");
  }

  onKey(ev) {
    if (ev.target.closest("input, select")) return false;
    if (this.selected && this.selected.zoom.onKey(ev.key)) return true;
    switch (ev.key) {
      case " ": this.toggle(); return true;
      case "ArrowLeft": if (ev.target.closest("canvas")) return false; this.seek(this.wall - 10e3); return true;
      case "ArrowRight": if (ev.target.closest("canvas")) return false; this.seek(this.wall + 10e3); return true;
      default: return false;
    }
  }
}
