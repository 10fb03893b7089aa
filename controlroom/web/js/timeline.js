// A time bar drawn on a canvas: recorded spans (green) and gaps (red) over a range, hour or
// minute ticks in Europe/London time, and a cursor. Click or drag to pick a time; arrow keys
// move it (10 s, Shift 1 min), Enter plays from it.

import { api } from "./api.js";
import { localParts } from "./time.js";

// Segments closer than this are drawn as one span.
const JOIN_MS = 1500;

/** A camera's recordings from ``start`` to ``end`` (ms) as timeline data: {spans, gaps}, or null
 *  when a newer call for the same ``owner`` started meanwhile (its answer is the one to draw:
 *  a late answer for the camera or day shown before must not overwrite it). */
export async function recordedDay(owner, camId, start, end) {
  const seq = (owner.recordedSeq = (owner.recordedSeq || 0) + 1);
  const q = `from=${encodeURIComponent(new Date(start).toISOString())}&to=${encodeURIComponent(new Date(end).toISOString())}`;
  const data = await api(`/api/v1/cameras/${camId}/recordings?${q}`);
  if (seq !== owner.recordedSeq) return null;
  const spans = [];
  for (const s of data.segments) {
    const a = Date.parse(s.start), b = Date.parse(s.end), last = spans[spans.length - 1];
    if (last && a - last[1] <= JOIN_MS) last[1] = Math.max(last[1], b); else spans.push([a, b]);
  }
  const gaps = data.gaps.map((g) => [Date.parse(g.start), g.end ? Date.parse(g.end) : null]);
  return { spans, gaps };
}

const COLOURS = { bg: "#161b22", span: "#2ea043", growing: "#56d364", gap: "#f85149", tick: "#6e7681",
  text: "#c9d1d9", cursor: "#ffd33d", future: "#0d1117", mark: "#4da3ff" };

export class Timeline {
  constructor(canvas, { onPick }) {
    Object.assign(this, { canvas, onPick });
    this.start = 0; this.end = 1; this.spans = []; this.gaps = []; this.marks = []; this.cursor = null; this.dragging = false;
    canvas.addEventListener("pointerdown", (ev) => { canvas.setPointerCapture(ev.pointerId); this.dragging = true; this.pick(ev, false); });
    canvas.addEventListener("pointermove", (ev) => { if (this.dragging) this.pick(ev, false); });
    canvas.addEventListener("pointerup", (ev) => { if (this.dragging) { this.dragging = false; this.pick(ev, true); } });
    canvas.addEventListener("keydown", (ev) => this.key(ev));
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  setRange(start, end) { this.start = start; this.end = end; this.draw(); }
  setData(spans, gaps) { this.spans = spans; this.gaps = gaps; this.draw(); }
  /** Bookmarks: [startMs, endMs, note] (a moment has end == start), drawn as blue flags. */
  setMarks(marks) { this.marks = marks; this.canvas.dataset.marks = String(marks.length); this.draw(); }
  setCursor(ms) { this.cursor = ms; this.canvas.setAttribute("aria-valuetext", ms ? new Date(ms).toISOString() : ""); this.draw(); }

  /** Holes between recorded spans that no gap explains (the service was stopped, say): a gap
   * all the same, drawn in the legend's red, never as blank. */
  holes(now) {
    const out = [];
    const spans = [...this.spans].sort((a, b) => a[0] - b[0]);
    let end = spans.length ? spans[0][1] : 0;
    for (let i = 1; i < spans.length; i++) {
      if (spans[i][0] > end && end < now) out.push([end, Math.min(spans[i][0], now)]);
      end = Math.max(end, spans[i][1]);
    }
    return out;
  }

  x(ms, w) { return ((ms - this.start) / (this.end - this.start)) * w; }

  pick(ev, final) {
    const r = this.canvas.getBoundingClientRect();
    const f = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width));
    const ms = Math.round(this.start + f * (this.end - this.start));
    this.setCursor(ms);
    this.onPick(ms, final);
  }

  key(ev) {
    if (this.cursor == null) return;
    const step = ev.shiftKey ? 60e3 : 10e3;
    if (ev.key === "ArrowLeft" || ev.key === "ArrowRight") {
      ev.preventDefault();
      this.setCursor(this.cursor + (ev.key === "ArrowLeft" ? -step : step));
      this.onPick(this.cursor, false);
    } else if (ev.key === "Enter") { ev.preventDefault(); this.onPick(this.cursor, true); }
  }

  draw() {
    const c = this.canvas, dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = COLOURS.bg; g.fillRect(0, 0, w, h);
    const now = Date.now();
    if (now < this.end) { g.fillStyle = COLOURS.future; g.fillRect(this.x(now, w), 0, w, h); }
    const barTop = 4, barH = h * 0.45;
    for (const [s, e] of [...this.gaps, ...this.holes(now)]) { g.fillStyle = COLOURS.gap; g.fillRect(this.x(s, w), barTop, Math.max(1, this.x(Math.min(e ?? now, now), w) - this.x(s, w)), barH); }
    for (const [s, e, growing] of this.spans) {
      g.fillStyle = growing ? COLOURS.growing : COLOURS.span;
      g.fillRect(this.x(s, w), barTop, Math.max(1, this.x(e, w) - this.x(s, w)), barH);
    }
    // Ticks on local (London) minute boundaries; offsets are whole hours, so UTC steps work.
    const span = this.end - this.start;
    const stepMin = span > 6 * 3600e3 ? 60 : span > 2 * 3600e3 ? 15 : 5;
    const labelEvery = span > 6 * 3600e3 ? 2 : span > 2 * 3600e3 ? 4 : 2;
    g.font = "13px DejaVu Sans, sans-serif"; g.textBaseline = "top";
    let t = Math.ceil(this.start / (stepMin * 60e3)) * stepMin * 60e3, n = 0, lastOffset = null;
    for (; t <= this.end; t += stepMin * 60e3, n++) {
      const p = localParts(t), X = this.x(t, w);
      g.fillStyle = COLOURS.tick; g.fillRect(X, barTop + barH, 1, 6);
      const m = Math.round(t / 60e3);
      if ((m / stepMin) % labelEvery === 0 || lastOffset !== p.offset) {
        let label = `${String(p.h).padStart(2, "0")}:${String(p.mi).padStart(2, "0")}`;
        if (lastOffset !== null && lastOffset !== p.offset) label += ` (${p.offset})`;
        g.fillStyle = COLOURS.text; g.fillText(label, Math.min(X + 2, w - 60), barTop + barH + 8);
      }
      lastOffset = p.offset;
    }
    if (this.cursor != null && this.cursor >= this.start && this.cursor <= this.end) {
      const X = this.x(this.cursor, w);
      g.fillStyle = COLOURS.cursor; g.fillRect(X - 1, 0, 3, h);
    }
    // Bookmarks, over the cursor: a flag above the bar at the start, a line under a span's length.
    g.fillStyle = COLOURS.mark;
    for (const [s, e] of this.marks) {
      if (e < this.start || s > this.end) continue;
      const X = this.x(s, w);
      g.beginPath(); g.moveTo(X - 5, 0); g.lineTo(X + 5, 0); g.lineTo(X, 8); g.fill();
      g.fillRect(X, 0, 2, barTop + barH);
      if (e > s) g.fillRect(X, barTop + barH - 3, Math.max(2, this.x(e, w) - X), 3);
    }
  }
}
