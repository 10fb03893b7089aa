// Playback: a day's timeline for one camera (recorded spans and gaps), click or drag to any
// time, play at 1x/2x/4x, step frame by frame. Footage comes remuxed from the recorded segments
// (never transcoded); the plan from the server maps media time to wall-clock time.

import { PlaybackPlayer } from "./mse.js";
import { Timeline, recordedDay } from "./timeline.js";
import { cameraOption } from "./cameras.js";
import { formatLocal, formatLocalPrecise, londonDay, localParts, todayLondon, dateGB, readDate, londonCandidates } from "./time.js";

const FRAME_S = 0.04; // 25 frames/s; a step on other rates still lands on the next frame
// The visible day's catalogue is read again this often while the position is within NEAR_LIVE_MS
// of now, so the timeline grows while the operator watches (each read is audited: not faster).
const REFRESH_MS = 10e3;
const NEAR_LIVE_MS = 15 * 60e3;

export class PlaybackView {
  constructor(store, { onLive }) {
    Object.assign(this, { store, onLive });
    this.video = document.getElementById("pb-video");
    this.message = document.getElementById("pb-message");
    this.stamp = document.getElementById("pb-stamp");
    this.position = document.getElementById("pb-position");
    this.cameraSel = document.getElementById("pb-camera");
    this.dayInput = document.getElementById("pb-day");
    this.timeInput = document.getElementById("pb-time");
    this.player = new PlaybackPlayer(this.video, { onEnd: () => this.continueAfterRun(), onError: (e) => this.say(e.message) });
    this.plan = null; this.rate = 1; this.active = false;
    this.day = new Timeline(document.getElementById("tl-day"), { onPick: (ms, final) => this.picked(ms, final) });
    this.hour = new Timeline(document.getElementById("tl-hour"), { onPick: (ms, final) => this.picked(ms, final) });
    this.cameraSel.addEventListener("change", () => this.loadDay().then(() => this.playAt(this.cursorMs())));
    this.dayInput.addEventListener("change", () => this.dayTyped());
    document.getElementById("pb-go").addEventListener("click", () => this.goTyped());
    this.timeInput.addEventListener("keydown", (ev) => { if (ev.key === "Enter") this.goTyped(); });
    document.getElementById("pb-play").addEventListener("click", () => this.toggle());
    document.getElementById("pb-stepfwd").addEventListener("click", () => this.step(1));
    document.getElementById("pb-stepback").addEventListener("click", () => this.step(-1));
    document.getElementById("pb-live").addEventListener("click", () => this.onLive(Number(this.cameraSel.value)));
    for (const b of document.querySelectorAll("[data-rate]")) b.addEventListener("click", () => this.setRate(Number(b.dataset.rate)));
    this.video.addEventListener("ratechange", () => this.markRate());
    store.addEventListener("change", () => this.fillCameras());
    const tick = () => { if (this.active) this.showPosition(); requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
    setInterval(() => { if (this.active && this.nearLive()) this.loadDay(); }, REFRESH_MS);
  }

  /** The day shown ("2026-12-31"), from the field (typed "31/12/2026"), or null if it is no date. */
  dayDate() { return this.dayInput.value.trim() ? readDate(this.dayInput.value) : todayLondon(); }

  setDay(isoDate) { this.dayInput.value = dateGB(isoDate); }

  dayTyped() {
    const date = readDate(this.dayInput.value);
    if (!date) { this.say(`${this.dayInput.value.trim()} is not a date: type the day as DD/MM/YYYY`); return; }
    this.say(""); this.setDay(date); this.loadDay();
  }

  /** Whether the day shown is today and the position is near now: the catalogue is still growing. */
  nearLive() {
    const now = Date.now();
    return this.day.start <= now && now < this.day.end && Math.abs(now - this.cursorMs()) < NEAR_LIVE_MS;
  }

  /** The URL names the camera and the time shown, so a reload or a shared link comes back here. */
  syncUrl(ms) {
    if (!this.active || ms == null || !this.cameraSel.value || !location.hash.startsWith("#playback")) return;
    const hash = `#playback/${this.cameraSel.value}/${Math.round(ms)}`;
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  fillCameras() {
    const keep = this.cameraSel.value;
    if (this.cameraSel.options.length === this.store.list.length) return;
    this.cameraSel.replaceChildren(...this.store.list.map(cameraOption));
    if (keep) this.cameraSel.value = keep;
  }

  say(text) { this.message.textContent = text || ""; }

  /** Open playback of ``camId`` at ``ms`` (UTC ms). */
  async open(camId, ms) {
    this.active = true;
    this.fillCameras();
    if (camId != null) this.cameraSel.value = String(camId);
    const at = ms ?? Date.now() - 60e3;
    this.setDay(localParts(at).date);
    await this.loadDay();
    await this.playAt(at);
  }

  close() { this.active = false; this.player.stop(); this.plan = null; }

  cursorMs() { return this.day.cursor ?? Date.now() - 60e3; }

  async loadDay() {
    const camId = this.cameraSel.value;
    if (!camId) return;
    const date = this.dayDate();
    if (!date) return;
    const [start, end] = londonDay(date);
    this.day.setRange(start, end);
    try {
      const day = await recordedDay(this, camId, start, end); // null: a newer load draws instead
      if (!day) return;
      const { spans, gaps } = day;
      // The segment being written now is not catalogued yet: show it as recorded up to now.
      const cam = this.store.get(camId);
      const lastEnd = spans.length ? spans[spans.length - 1][1] : null;
      if (cam && cam.state === "recording" && lastEnd && Date.now() - lastEnd < 120e3 && Date.now() < end) spans.push([lastEnd, Date.now(), true]);
      this.spans = spans; this.gaps = gaps;
      this.day.setData(spans, gaps); this.hour.setData(spans, gaps);
    } catch (e) { this.say(`Recordings unavailable: ${e.message}`); }
    if (this.onDay) this.onDay(camId, start, end); // the bookmarks on this day (incidents.js)
  }

  picked(ms, final) {
    this.setHourRange(ms);
    this.day.setCursor(ms); this.hour.setCursor(ms);
    this.position.textContent = formatLocal(ms);
    if (final) this.playAt(ms);
  }

  setHourRange(ms) {
    if (this.hour.cursor != null && ms >= this.hour.start + 60e3 && ms <= this.hour.end - 60e3) return;
    const start = ms - 30 * 60e3;
    this.hour.setRange(start, start + 3600e3);
  }

  /** Play from the typed time of the day shown, or say why not: nothing is guessed (25:99 is no
   * time, not the next day's 02:39; a time not yet come is not the live edge). */
  goTyped() {
    const typed = this.timeInput.value.trim();
    const m = /^(\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(typed);
    if (!m) { this.say("Type a time as HH:MM or HH:MM:SS (24-hour clock)"); return; }
    const [h, mi, s] = [+m[1], +m[2], +(m[3] || 0)];
    if (h > 23 || mi > 59 || s > 59) { this.say(`${typed} is not a time of day: type 00:00:00 to 23:59:59`); return; }
    const date = this.dayDate();
    if (!date) { this.say(`${this.dayInput.value.trim()} is not a date: type the day as DD/MM/YYYY`); return; }
    const fits = londonCandidates(date, h, mi, s);
    if (!fits.length) {
      this.say(`${dateGB(date)} ${typed} does not exist in London: the clocks went forward an hour that night`); return;
    }
    const ms = fits[0]; // the October hour that happens twice: its first (BST) occurrence
    if (ms > Date.now()) { this.say(`${formatLocal(ms)} is in the future: nothing is recorded yet`); return; }
    this.playAt(ms);
  }

  /** Ask the server for the run of footage at ``ms`` and play it from there. */
  async playAt(ms, { play = true } = {}) {
    const camId = this.cameraSel.value;
    if (!camId) return;
    this.picked(ms, false);
    if (localParts(ms).date !== this.dayDate()) { this.setDay(localParts(ms).date); await this.loadDay(); }
    // Already buffered in the current run: just seek.
    if (this.plan && String(this.plan.camera) === camId) {
      const t = this.mediaTimeOf(ms);
      if (t != null && this.player.has(t)) { this.video.currentTime = t; this.say(""); if (play) this.video.play().catch(() => {}); return; }
    }
    this.say("Loading…");
    this.ready = false;
    try {
      const plan = await this.player.loadAt(camId, ms, { play, onPlan: (p) => { this.plan = p; } });
      this.video.playbackRate = this.rate;
      this.ready = true;
      this.syncUrl(ms);
      this.say(plan.in_gap ? `No recording at ${formatLocal(ms)}: playing the next recording` : "");
    } catch (e) {
      this.plan = null;
      this.say(e.status === 404 ? `No recording at or after ${formatLocal(ms)}` : `Playback failed: ${e.message}`);
    }
  }

  /** Wall-clock UTC ms shown at media time ``t`` (seconds), from the plan's pieces. */
  wallOf(t) {
    if (!this.plan) return null;
    let piece = this.plan.pieces[0];
    for (const p of this.plan.pieces) if (p.media_offset_s <= t) piece = p;
    return piece.start_us / 1000 + (t - piece.media_offset_s) * 1000;
  }

  mediaTimeOf(ms) {
    if (!this.plan) return null;
    for (const p of this.plan.pieces) {
      const end = p.end_us == null ? Infinity : p.end_us / 1000;
      if (ms >= p.start_us / 1000 && ms < end) return p.media_offset_s + (ms - p.start_us / 1000) / 1000;
    }
    return null;
  }

  showPosition() {
    if (!this.plan || !this.video.src) return;
    const wall = this.wallOf(this.video.currentTime);
    if (wall == null) return;
    this.video.dataset.wallMs = String(Math.round(wall));
    this.stamp.textContent = formatLocalPrecise(wall);
    if (!this.day.dragging && !this.hour.dragging) {
      if (Math.abs((this.day.cursor ?? 0) - wall) > 500) { this.setHourRange(wall); this.day.setCursor(wall); this.hour.setCursor(wall); }
      this.position.textContent = formatLocal(wall);
    }
    if (!this.urlAt || performance.now() - this.urlAt > 1000) { this.urlAt = performance.now(); this.syncUrl(wall); }
  }

  async continueAfterRun() {
    if (!this.plan) return;
    const wall = this.wallOf(this.video.currentTime);
    if (this.plan.growing) { await this.loadDay(); await this.playAt(wall + 1); return; }
    await this.playAt((this.plan.end_us / 1000) + 1);
  }

  toggle() { if (this.video.paused) this.video.play().catch(() => {}); else this.video.pause(); }

  setRate(r) { this.rate = r; this.video.playbackRate = r; this.markRate(); }
  markRate() { for (const b of document.querySelectorAll("[data-rate]")) b.setAttribute("aria-pressed", String(Number(b.dataset.rate) === this.video.playbackRate)); }

  step(dir) {
    this.video.pause();
    const t = Math.max(0, this.video.currentTime + dir * FRAME_S);
    if (this.player.has(t)) this.video.currentTime = t;
    else if (this.plan) this.playAt(this.wallOf(t), { play: false });
  }

  onKey(ev) {
    if (ev.target.closest("input, select")) return false;
    switch (ev.key) {
      case " ": this.toggle(); return true;
      case ",": this.step(-1); return true;
      case ".": this.step(1); return true;
      case "1": case "2": case "4": this.setRate(Number(ev.key)); return true;
      default: return false;
    }
  }
}
