// Media Source Extensions players: live (fragmented MP4 over a WebSocket) and playback
// (fragmented MP4 over HTTP, read only as fast as it plays). The browser always gets H.264
// unless it says it plays H.265 (hevc=1): the service converts a camera's H.265 for it.

import { api, wsUrl } from "./api.js";

const LIVE_MAX_LAG_S = 0.5;   // further behind the live edge than this: jump to it
const LIVE_TARGET_LAG_S = 0.15;
const KEEP_BEHIND_S = 20;     // buffered media kept behind the play position
const RECONNECT_S = [1, 2, 4, 8, 15];
// Why there is no picture, in the operator's words, by the service's code (controlroom/api/live.py);
// the service's own reason ("camera stream 10/sub: ...") is kept in lastReason for the curious.
const PLAIN = { no_video: "the camera is not sending video", ended: "the camera stopped sending video",
  stopping: "the service is restarting", lost: "the connection to the service was lost",
  // A camera sending H.265 (which this browser cannot show) with no H.264 sub stream is converted by the service:
  transcode_busy: "this camera's H.265 video needs converting for the browser, and the service is already converting as many cameras as it can",
  transcode_failed: "this camera's video could not be converted for the browser",
  transcode_off: "this camera sends H.265 video, which this browser cannot show, and converting it is turned off" };
const HEVC_MIME = 'video/mp4; codecs="hvc1.1.6.L120.90"';

export function mseSupported(mime) {
  const MS = window.ManagedMediaSource || window.MediaSource;
  return !!MS && (!mime || MS.isTypeSupported(mime));
}

/** Appends buffers to a SourceBuffer one at a time (it accepts one append at a time). */
class Appender {
  constructor(ms, sb, video) { this.ms = ms; this.sb = sb; this.video = video; this.queue = []; this.waiters = [];
    sb.addEventListener("updateend", () => this.pump()); sb.addEventListener("error", () => {}); }
  push(buf) { this.queue.push(buf); this.pump(); }
  get pending() { return this.queue.length; }
  idle() { return new Promise((r) => { if (!this.sb.updating && !this.queue.length) r(); else this.waiters.push(r); }); }
  pump() {
    if (this.sb.updating || this.ms.readyState !== "open") return;
    if (!this.queue.length) { const w = this.waiters; this.waiters = []; w.forEach((r) => r()); this.onIdle && this.onIdle(); return; }
    const t = this.video.currentTime;
    const b = this.sb.buffered;
    if (b.length && t - b.start(0) > KEEP_BEHIND_S * 2) {
      try { this.sb.remove(0, t - KEEP_BEHIND_S); return; } catch (e) { /* retry on next */ }
    }
    try { this.sb.appendBuffer(this.queue.shift()); }
    catch (e) {
      if (e.name === "QuotaExceededError" && b.length) { try { this.sb.remove(0, Math.max(b.start(0) + 1, t - 2)); } catch (e2) {} }
      else { this.onError && this.onError(e); }
    }
  }
}

function openSource(video, mime) {
  return new Promise((resolve, reject) => {
    const MS = window.ManagedMediaSource || window.MediaSource;
    const ms = new MS();
    if (window.ManagedMediaSource && MS === window.ManagedMediaSource) video.disableRemotePlayback = true;
    const url = URL.createObjectURL(ms);
    ms.addEventListener("sourceopen", () => {
      URL.revokeObjectURL(url);
      try { resolve({ ms, sb: ms.addSourceBuffer(mime) }); } catch (e) { reject(e); }
    }, { once: true });
    video.src = url;
  });
}

/** A live camera stream in a <video>. ``onState(state, detail)``: connecting, playing,
 * reconnecting (camera stream ended or refused), error. Reconnects with backoff until stopped. */
export class LivePlayer {
  constructor(video, cameraId, stream, { onState = () => {} } = {}) {
    Object.assign(this, { video, cameraId, stream, onState });
    this.stopped = false; this.attempt = 0; this.ws = null; this.timer = null; this.frames = 0;
    this.firstFrameMs = null;
  }

  start() { this.stopped = false; this.connect(); return this; }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer); clearInterval(this.edgeTimer);
    if (this.ws) { this.ws.onclose = null; this.ws.close(); this.ws = null; }
    this.video.removeAttribute("src"); this.video.load();
  }

  connect() {
    this.onState("connecting");
    this.lastCode = null;
    this.openedAt = performance.now();
    const hevc = mseSupported(HEVC_MIME) ? "&hevc=1" : "";  // saves the service a conversion
    const ws = new WebSocket(wsUrl(`/api/v1/cameras/${this.cameraId}/live?stream=${this.stream}${hevc}`));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let appender = null; const early = [];
    ws.onmessage = async (ev) => {
      if (typeof ev.data === "string") {
        const msg = JSON.parse(ev.data);
        if (msg.type === "init") {
          this.transcoded = !!msg.transcoded; this.source = msg.source;
          if (!mseSupported(msg.mime)) { this.onState("error", `this browser cannot play ${msg.codec}`); ws.close(); return; }
          try {
            const { ms, sb } = await openSource(this.video, msg.mime);
            sb.mode = "segments";
            appender = new Appender(ms, sb, this.video);
            appender.onIdle = () => this.chaseEdge();
            appender.onError = () => { ws.close(); };
            early.splice(0).forEach((b) => appender.push(b));
          } catch (e) { this.lastReason = String(e); this.onState("error", "this browser could not play the video"); ws.close(); }
        } else if (msg.type === "end" || msg.type === "error") {
          this.lastReason = msg.reason || msg.error || "stream ended";
          this.lastCode = msg.code || "ended";
        }
        return;
      }
      if (appender) appender.push(ev.data); else early.push(ev.data);
    };
    ws.onclose = () => {
      this.ws = null;
      if (this.stopped) return;
      const delay = RECONNECT_S[Math.min(this.attempt++, RECONNECT_S.length - 1)];
      this.onState("reconnecting", `${PLAIN[this.lastCode] || PLAIN.lost}; trying again`);
      this.timer = setTimeout(() => this.connect(), delay * 1000);
    };
    this.video.onplaying = () => {
      this.attempt = 0;
      if (this.firstFrameMs === null) this.firstFrameMs = performance.now() - this.openedAt;
      this.onState("playing");
    };
    clearInterval(this.edgeTimer);
    this.edgeTimer = setInterval(() => this.chaseEdge(), 1000);
  }

  /** Stay at the live edge: jump when too far behind, start playback once there is data. */
  chaseEdge() {
    const v = this.video, b = v.buffered;
    if (!b.length) return;
    const end = b.end(b.length - 1);
    const start = b.start(b.length - 1);
    if (v.currentTime < start || end - v.currentTime > LIVE_MAX_LAG_S) {
      v.currentTime = Math.max(start, end - LIVE_TARGET_LAG_S);
    }
    if (v.paused) v.play().catch(() => {});
  }

  /** Seconds between the newest buffered media and the play position. */
  get lagS() { const b = this.video.buffered; return b.length ? b.end(b.length - 1) - this.video.currentTime : NaN; }
}

/** Recorded footage: fetches a fragmented-MP4 run and appends it only as fast as it plays
 * (at most ``aheadS`` ahead), so a long run never fills memory. */
export class PlaybackPlayer {
  constructor(video, { aheadS = 60, onEnd = () => {}, onError = () => {} } = {}) {
    Object.assign(this, { video, aheadS, onEnd, onError });
    this.abort = null;
  }

  /** Play camera ``camId``'s footage from wall-clock ``ms``: ask the service for the run there
   * (the plan), hand it to ``onPlan`` (which returns false if it is no longer wanted), and load
   * the plan's stream. Resolves with the plan (null if not wanted); rejects with the plan's or the
   * stream's error, its HTTP ``status`` set.
   *
   * A plan can go stale before its stream is asked for: the segment it named by an estimate (the
   * file being written) is committed with its measured start, or retention removes the run. The
   * stream then answers 404 ("no longer available") and the plan is asked for once more. */
  async loadAt(camId, ms, { play = true, onPlan = () => true } = {}) {
    for (let attempt = 1; ; attempt++) {
      const plan = await api(`/api/v1/cameras/${camId}/playback?at=${encodeURIComponent(new Date(ms).toISOString())}`);
      if (onPlan(plan) === false) return null;
      try {
        await this.load(plan.stream_url, plan.offset_s, { play });
        return plan;
      } catch (e) {
        if (e.status !== 404 || attempt > 1) throw e;
      }
    }
  }

  /** Play ``url`` from media time ``offsetS``. Resolves when the first frame is ready. */
  async load(url, offsetS, { play = true } = {}) {
    this.stop();
    const abort = new AbortController(); this.abort = abort;
    const res = await fetch(url, { signal: abort.signal, credentials: "same-origin" });
    if (!res.ok) throw Object.assign(new Error(`playback: ${res.status}`), { status: res.status });
    const reader = res.body.getReader();
    // The codec string is in the init segment's avcC box: read until we have it.
    let head = new Uint8Array(0);
    let mime = null;
    while (!mime) {
      const { value, done } = await reader.read();
      if (done) throw new Error("playback: empty stream");
      const joined = new Uint8Array(head.length + value.length); joined.set(head); joined.set(value, head.length);
      head = joined; mime = mimeFromInit(head);
      if (!mime && head.length > 4e6) throw new Error("playback: no video track");
    }
    const { ms, sb } = await openSource(this.video, mime);
    sb.mode = "segments";
    const appender = new Appender(ms, sb, this.video);
    this.ms = ms;
    appender.push(head.buffer);
    let positioned = false;
    const ready = new Promise((resolve) => { this._ready = resolve; });
    const place = () => {
      if (positioned) return;
      const b = this.video.buffered;
      if (b.length && b.end(b.length - 1) >= Math.min(offsetS + 0.2, this.runEnd ?? Infinity)) {
        positioned = true;
        this.video.currentTime = Math.max(b.start(0), offsetS);
        const done = () => { this._ready(); if (play) this.video.play().catch(() => {}); };
        if (this.video.seeking) this.video.addEventListener("seeked", done, { once: true }); else done();
      }
    };
    appender.onIdle = place;
    this.video.onended = () => this.onEnd();
    (async () => {
      try {
        for (;;) {
          while (!abort.signal.aborted && positioned && this.aheadOf() > this.aheadS) await sleep(300);
          if (abort.signal.aborted) return;
          const { value, done } = await reader.read();
          if (done) break;
          appender.push(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength));
          while (appender.pending > 8) await sleep(20);
        }
        await appender.idle();
        const b = this.video.buffered; this.runEnd = b.length ? b.end(b.length - 1) : 0;
        place();
        if (!positioned) { positioned = true; this._ready(); }
        if (ms.readyState === "open") ms.endOfStream();
      } catch (e) { if (!abort.signal.aborted) this.onError(e); }
    })();
    return ready;
  }

  aheadOf() { const b = this.video.buffered; return b.length ? b.end(b.length - 1) - this.video.currentTime : 0; }

  /** Whether media time ``t`` is already buffered (a seek there needs no new request). */
  has(t) { const b = this.video.buffered; for (let i = 0; i < b.length; i++) if (t >= b.start(i) && t <= b.end(i)) return true; return false; }

  stop() {
    if (this.abort) this.abort.abort();
    this.abort = null; this.runEnd = undefined;
    this.video.onended = null;
    this.video.removeAttribute("src"); this.video.load();
  }
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

/** 'video/mp4; codecs="avc1.64001f"' from an init segment, or null if it is not all here yet. */
export function mimeFromInit(bytes) {
  const moov = findBox(bytes, "moov");
  if (!moov) return null;
  for (let i = moov[0]; i < moov[1] - 8; i++) {
    if (bytes[i] === 0x61 && bytes[i + 1] === 0x76 && bytes[i + 2] === 0x63 && bytes[i + 3] === 0x43) { // avcC
      const hex = (n) => n.toString(16).padStart(2, "0");
      return `video/mp4; codecs="avc1.${hex(bytes[i + 5])}${hex(bytes[i + 6])}${hex(bytes[i + 7])}"`;
    }
    if (bytes[i] === 0x68 && bytes[i + 1] === 0x76 && bytes[i + 2] === 0x63 && bytes[i + 3] === 0x43) { // hvcC
      return 'video/mp4; codecs="hvc1.1.6.L120.90"';
    }
  }
  return 'video/mp4; codecs="avc1.42e01e"';
}

function findBox(bytes, name) {
  let pos = 0;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  while (pos + 8 <= bytes.length) {
    const size = dv.getUint32(pos);
    const type = String.fromCharCode(bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]);
    if (size < 8 || pos + size > bytes.length) return null;
    if (type === name) return [pos + 8, pos + size];
    pos += size;
  }
  return null;
}
