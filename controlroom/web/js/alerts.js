// The alerts panel: the newest alerts, then every new one live over a WebSocket; an operator
// acknowledges each (recorded with their name). An ANPR hotlist hit shows the registration,
// the hotlist's reason and priority, camera, read time, the plate patch and overview pictures,
// and is confirmed or dismissed against them (with an optional note): the decision is sent to
// the hit (recorded, audited), then the alert is acknowledged, so every screen clears it and
// shows who decided and when. Messages are shown with textContent only.
//
// Cards are compact (one line; click or the arrow button expands them) so many fit in sight;
// open alerts come first, by priority then newest; the most urgent, if it is a hit waiting for a
// decision, opens by itself. Handled (acknowledged) alerts move to a collapsed "Handled"
// section; alerts of a camera that has been removed are cleared.
//
// A new priority-1 alert sounds an alarm made in the browser (WebAudio: no sound file to
// fetch), unless this user has muted it (the toggle in the panel's head, remembered per user in
// this browser). An open card of a plain alert takes a note with its acknowledgement.

import { api, wsUrl } from "./api.js";
import { el } from "./dom.js";
import { formatLocal } from "./time.js";
import { showImage } from "./lightbox.js";
import { syncHash } from "./syncplay.js";

const KIND_TEXT = {
  camera_offline: "Camera offline", camera_online: "Camera back", clock_off: "Clock off",
  recording_stopped: "Recording stopped", recording_resumed: "Recording resumed", disk_floor: "Disk space", anpr_hit: "ANPR hotlist hit",
  camera_fault: "Camera fault", picture_check: "Picture check", camera_repaired: "Fault repaired",
  ripa_review: "RIPA review", ripa_expiry: "RIPA expiry", ripa_expired: "RIPA expired",
  sar_due: "SAR deadline", sar_overdue: "SAR overdue",
};
const DECISION_TEXT = { confirmed: "Confirmed", dismissed: "Dismissed" };

const isHit = (a) => a.kind === "anpr_hit" && a.data && a.data.hit_id != null;
// 1 is the most urgent: a hit has its hotlist entry's priority; other alerts one by kind.
const KIND_PRIORITY = { disk_floor: 2, recording_stopped: 2, camera_offline: 3, clock_off: 4, camera_online: 5, recording_resumed: 5 };
export const priorityOf = (a) => (isHit(a) ? Number(a.data.priority) || 3 : KIND_PRIORITY[a.kind] ?? 3);
const HANDLED_KEPT = 30; // the newest handled alerts kept in their section

/** Put ``nodes`` in ``container`` in order, moving only what changed. */
function place(container, nodes) {
  nodes.forEach((li, i) => { if (container.children[i] !== li) container.insertBefore(li, container.children[i] || null); });
  while (container.children.length > nodes.length) container.lastElementChild.remove();
}

/** The priority-1 alarm: two short rising tones, made by WebAudio (no file, no network). */
export function playAlarm(ctx) {
  const t0 = ctx.currentTime;
  for (const [i, freq] of [880, 1175, 880, 1175].entries()) {
    const osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.type = "square"; osc.frequency.value = freq;
    const start = t0 + i * 0.18;
    gain.gain.setValueAtTime(0.0001, start);
    gain.gain.exponentialRampToValueAtTime(0.25, start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.16);
    osc.connect(gain).connect(ctx.destination);
    osc.start(start); osc.stop(start + 0.17);
  }
}

export class AlertsPanel {
  constructor(list, count, conn, { can = new Set(), store = null, user = "", soundButton = null } = {}) {
    Object.assign(this, { list, count, conn, store, can });
    this.muteKey = `controlroom.alerts.muted.${user}`;
    this.muted = localStorage.getItem(this.muteKey) === "1";
    this.sounded = 0; // alarms played (for the tests and the curious)
    this.soundButton = soundButton;
    if (soundButton) {
      soundButton.addEventListener("click", () => this.setMuted(!this.muted));
      this.drawSound();
    }
    this.canHits = can.has("anpr_alerts"); // without it a hit is a plain alert: no pictures, no decision
    this.alerts = new Map();
    this.hits = new Map(); // hit id -> the hit as the API gives it (state, who decided, image URLs) or {error}
    this.drawn = new Map(); // alert id -> {sig, li}: an unchanged alert keeps its element (pictures, typed note)
    this.attempt = 0;
    this.expanded = new Set(); this.collapsed = new Set(); // alert ids opened or closed by the user
    this.handledSummary = el("summary", { text: "Handled" });
    this.handledList = el("ol", { class: "alerts-list alerts-handled-list" });
    this.handledItem = el("li", { class: "alerts-handled" },
      el("details", { id: "alerts-handled" }, this.handledSummary, this.handledList));
    this.empty = el("li", { class: "alerts-empty muted", text: "No alerts" });
    if (store) store.addEventListener("change", () => this.render()); // a removed camera's alerts go
  }

  setMuted(on) {
    this.muted = on;
    if (on) localStorage.setItem(this.muteKey, "1"); else localStorage.removeItem(this.muteKey);
    this.drawSound();
  }

  drawSound() {
    if (!this.soundButton) return;
    this.soundButton.textContent = this.muted ? "Sound off" : "Sound on";
    this.soundButton.setAttribute("aria-pressed", String(!this.muted));
    this.soundButton.title = this.muted ? "Priority-1 alerts make no sound: click to turn the alarm on"
      : "Priority-1 alerts sound an alarm: click to mute it";
  }

  /** A new alert arrived live: priority 1 sounds the alarm (unless muted). */
  alarm(a) {
    if (a.acknowledged_us || priorityOf(a) !== 1 || this.muted) return;
    try {
      this.audio = this.audio || new AudioContext();
      if (this.audio.state === "suspended") this.audio.resume();
      playAlarm(this.audio);
      this.sounded += 1;
    } catch (e) { this.conn.textContent = `The alarm could not sound: ${e.message}`; }
  }

  /** The alert's camera has been removed from the inventory: nothing left to deal with. */
  cameraGone(a) { return a.camera_id != null && this.store && this.store.loaded && !this.store.get(a.camera_id); }

  isExpanded(a) { return this.expanded.has(a.id) || this.auto === a.id; }

  toggle(a) {
    if (this.isExpanded(a)) { this.expanded.delete(a.id); this.collapsed.add(a.id); }
    else { this.expanded.add(a.id); this.collapsed.delete(a.id); }
    this.render();
  }

  async start() {
    try {
      const data = await api("/api/v1/alerts?limit=100");
      for (const a of data.alerts.reverse()) this.alerts.set(a.id, a);
      this.render();
      for (const a of this.alerts.values()) if (isHit(a)) this.loadHit(a.data.hit_id);
    } catch (e) { this.conn.textContent = `Alerts unavailable: ${e.message}`; }
    this.connect();
  }

  connect() {
    const ws = new WebSocket(wsUrl("/api/v1/alerts/ws"));
    ws.onopen = () => { this.attempt = 0; this.conn.textContent = "Live"; };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (!msg.alert) return;
      if (msg.type === "alert" && !this.alerts.has(msg.alert.id)) this.alarm(msg.alert);
      this.alerts.set(msg.alert.id, msg.alert);
      this.render();
      document.dispatchEvent(new CustomEvent("controlroom:alert", { detail: msg.alert })); // other views may follow
      // A new hit, or a hit's alert acknowledged elsewhere (decided there): read its state.
      if (isHit(msg.alert)) this.loadHit(msg.alert.data.hit_id);
    };
    ws.onclose = () => {
      this.conn.textContent = "Reconnecting to the alert feed…";
      const delay = Math.min(15, 2 ** this.attempt++);
      setTimeout(() => this.connect(), delay * 1000);
    };
  }

  async loadHit(hitId) {
    if (!this.canHits) return;
    // The hub publishes an alert only once its transaction has committed (storage.alerts), so
    // the hit it names is there to read.
    try { this.hits.set(hitId, await api(`/api/v1/anpr/hits/${hitId}`)); }
    catch (e) { this.hits.set(hitId, { error: e.message }); }
    this.render();
  }

  async ack(id, button, note = "", error = null) {
    button.disabled = true;
    try { const a = await api(`/api/v1/alerts/${id}/ack`, { method: "POST", body: { note } }); this.alerts.set(a.id, a); this.render(); }
    catch (e) { button.disabled = false; button.title = e.message; if (error) error.textContent = `Not acknowledged: ${e.message}`; }
  }

  /** Confirm or dismiss the hit of alert `a`, then acknowledge the alert (the decision deals with it). */
  async decide(a, decision, note, box, error) {
    for (const b of box.querySelectorAll("button")) b.disabled = true;
    error.textContent = "";
    const hitId = a.data.hit_id;
    try {
      this.hits.set(hitId, await api(`/api/v1/anpr/hits/${hitId}/${decision}`, { method: "POST", body: { note } }));
    } catch (e) {
      error.textContent = e.message; // e.g. already decided by someone else: show theirs
      for (const b of box.querySelectorAll("button")) b.disabled = false;
      if (e.status === 400) this.loadHit(hitId);
      return;
    }
    if (!a.acknowledged_us) {
      try { const acked = await api(`/api/v1/alerts/${a.id}/ack`, { method: "POST", body: {} }); this.alerts.set(acked.id, acked); }
      catch (e) { /* the decision is recorded; the alert keeps its Acknowledge button */ }
    }
    this.render();
  }

  render() {
    const shown = [...this.alerts.values()].filter((a) => !this.cameraGone(a));
    const open = shown.filter((a) => !a.acknowledged_us)
      .sort((a, b) => priorityOf(a) - priorityOf(b) || b.at_us - a.at_us || b.id - a.id).slice(0, 200);
    const handled = shown.filter((a) => a.acknowledged_us)
      .sort((a, b) => b.acknowledged_us - a.acknowledged_us || b.id - a.id).slice(0, HANDLED_KEPT);
    // The most urgent alert opens by itself when it is a hit waiting for a decision.
    const top = open[0];
    this.auto = top && isHit(top) && this.canHits && !this.collapsed.has(top.id) ? top.id : null;
    this.count.textContent = open.length ? String(open.length) : "";
    const focused = document.activeElement && this.list.contains(document.activeElement) ? document.activeElement : null;
    const drawn = new Map();
    const node = (a) => {
      const hit = isHit(a) ? this.hits.get(a.data.hit_id) : undefined;
      const sig = JSON.stringify([a, hit || null, this.isExpanded(a)]);
      const was = this.drawn.get(a.id);
      const li = was && was.sig === sig ? was.li : this.item(a, hit);
      drawn.set(a.id, { sig, li });
      return li;
    };
    const openNodes = open.map(node), handledNodes = handled.map(node);
    this.drawn = drawn;
    // Move only what changed, so the other alerts keep their pictures, typed notes and focus.
    this.handledSummary.textContent = `Handled (${handled.length})`;
    place(this.handledList, handledNodes);
    place(this.list, [...(open.length ? openNodes : [this.empty]), ...(handled.length ? [this.handledItem] : [])]);
    if (focused && !focused.isConnected && focused.dataset.alert) {
      this.list.querySelector(`[data-alert="${CSS.escape(focused.dataset.alert)}"]`)?.focus();
    } else if (focused && focused.isConnected && document.activeElement !== focused) focused.focus();
  }

  item(a, hit) {
    if (isHit(a) && this.canHits) return this.hitItem(a, hit);
    const li = el("li", { class: `alert kind-${a.kind}${a.acknowledged_us ? " acked" : ""}${this.isExpanded(a) ? " expanded" : ""}`,
      "data-kind": a.kind, "data-camera": a.camera_id ?? "", "data-id": a.id, title: a.message });
    const foot = el("div", { class: "alert-foot" }, a.camera ? el("span", { text: a.camera }) : null);
    if (a.acknowledged_us) foot.append(this.ackedText(a));
    li.append(this.top(a, a.camera ? el("span", { class: "alert-camera", text: a.camera }) : null,
      a.acknowledged_us ? null : this.ackButton(a)), el("p", { class: "alert-msg", text: a.message }), this.links(a, a.at_us / 1000 - 30e3), foot);
    if (a.acknowledged_us && a.ack_note) li.append(el("p", { class: "alert-note", text: `Note: ${a.ack_note}` }));
    if (!a.acknowledged_us && this.isExpanded(a)) li.append(this.ackForm(a));
    return li;
  }

  /** The card's one line: expand button, kind, what it is about, time, and an action. */
  top(a, extra = null, action = null) {
    const open = this.isExpanded(a);
    const toggle = el("button", { type: "button", class: "alert-toggle", "aria-expanded": String(open), "data-alert": `${a.id}-toggle`,
      "aria-label": `${open ? "Fewer" : "More"} details: ${KIND_TEXT[a.kind] || a.kind}`, text: open ? "\u25BE" : "\u25B8" });
    toggle.addEventListener("click", () => this.toggle(a));
    const ms = a.at_us / 1000;
    const today = formatLocal(ms).slice(0, 10) === formatLocal(Date.now()).slice(0, 10);
    const line = el("div", { class: "alert-top" }, toggle, el("span", { class: "alert-kind", text: KIND_TEXT[a.kind] || a.kind }), extra,
      el("time", { class: "alert-time", datetime: new Date(ms).toISOString(), title: formatLocal(ms),
        text: today ? formatLocal(ms, { date: false }).slice(0, 8) : formatLocal(ms).slice(0, 16) }), action);
    line.addEventListener("click", (ev) => { if (!ev.target.closest("button, a, input, img")) this.toggle(a); });
    return line;
  }

  /** Links to the camera live and to playback at ``ms`` (for the rights the user has). */
  links(a, ms) {
    if (a.camera_id == null) return null;
    const name = a.camera || `camera ${a.camera_id}`;
    return el("p", { class: "alert-links small" },
      this.can.has("live_view") ? el("a", { class: "alert-live", href: `#camera/${a.camera_id}`, text: "Live", "aria-label": `${name} live` }) : null,
      this.can.has("playback") ? el("a", { class: "alert-playback", href: `#playback/${a.camera_id}/${Math.floor(ms)}`,
        text: `Playback at ${formatLocal(ms, { date: false })}`,
        "aria-label": `Playback at ${formatLocal(ms, { date: false })} on ${formatLocal(ms).slice(0, 10)}: ${name}` }) : null,
      // The same moment on this camera and three more of its site, on one timeline (syncplay.js).
      this.can.has("playback") && this.store ? el("a", { class: "alert-sync", href: syncHash(this.store, a.camera_id, ms),
        text: "4 cameras", "aria-label": `4 cameras in synchronised playback: ${name} and 3 more at ${formatLocal(ms)}` }) : null);
  }

  ackedText(a) {
    return el("span", { text: `Acknowledged by ${a.acknowledged_by} at ${formatLocal(a.acknowledged_us / 1000, { date: false })}` });
  }

  /** An open card's acknowledgement with a note (what was done: "contractor called, ref 42"). */
  ackForm(a) {
    const id = `alert-note-${a.id}`;
    const note = el("input", { id, class: "alert-note-input", type: "text", maxlength: 2000, autocomplete: "off",
      placeholder: "Note (optional)", "aria-label": `Note on acknowledging: ${a.message}` });
    const go = el("button", { type: "submit", class: "ok alert-ack-note", text: "Acknowledge with note", "data-alert": `${a.id}-note` });
    const error = el("p", { class: "error small", role: "alert" });
    const form = el("form", { class: "alert-ack-form", novalidate: true }, note, go);
    form.addEventListener("submit", (ev) => { ev.preventDefault(); this.ack(a.id, go, note.value.trim(), error); });
    return el("div", {}, form, error);
  }

  ackButton(a) {
    const b = el("button", { type: "button", text: "Acknowledge", "data-alert": a.id, "aria-label": `Acknowledge: ${a.message}` });
    b.addEventListener("click", () => this.ack(a.id, b));
    return b;
  }

  hitItem(a, hit) {
    const d = a.data;
    const state = hit && !hit.error ? hit.state : "";
    const expanded = this.isExpanded(a);
    const li = el("li", { class: `alert kind-anpr_hit priority-${d.priority}${a.acknowledged_us ? " acked" : ""}${state && state !== "pending" ? ` ${state}` : ""}${expanded ? " expanded" : ""}`,
      "data-kind": a.kind, "data-camera": a.camera_id ?? "", "data-id": a.id, "data-hit": d.hit_id, "data-state": state });
    const where = [a.camera, [d.site, d.lane && `lane ${d.lane}`, d.direction].filter(Boolean).join(", ")].filter(Boolean).join(" · ");
    const readMs = (d.read_us ?? a.at_us) / 1000;
    li.append(
      this.top(a, el("span", { class: "alert-extra" }, el("span", { class: `badge hit-priority p${d.priority}`, text: `Priority ${d.priority}` }),
        el("span", { class: "hit-vrm" }, el("span", { class: "vrm plate", text: d.vrm })))),
      el("p", { class: "hit-why" }, el("strong", { text: d.hotlist }), el("span", { text: `: ${d.reason}` }),
        d.source ? el("span", { class: "muted", text: ` (${d.source})` }) : null),
      el("p", { class: "hit-where", text: where }),
      el("p", { class: "hit-read small" }, el("span", { class: "muted", text: "Read " }),
        el("time", { datetime: new Date(readMs).toISOString(), text: formatLocal(readMs) })),
      this.links(a, readMs));
    if (!hit) { li.append(el("p", { class: "muted small", text: "Loading the hit…" })); return li; }
    if (hit.error) { li.append(el("p", { class: "error small", text: `The hit could not be read: ${hit.error}` }), this.footWithAck(a)); return li; }
    // Pictures and the decision only on an open card: a closed one fetches nothing.
    if (expanded) li.append(this.pictures(hit));
    if (hit.state === "pending") { if (expanded) li.append(this.decisionBox(a)); }
    else {
      const who = el("p", { class: "hit-decision" },
        el("strong", { text: DECISION_TEXT[hit.state] || hit.state }),
        el("span", { text: ` by ${hit.decided_by} at ${formatLocal(Date.parse(hit.decided))}` }));
      li.append(who);
      if (hit.note) li.append(el("p", { class: "hit-note small", text: `Note: ${hit.note}` }));
      if (!a.acknowledged_us) li.append(this.footWithAck(a));
    }
    return li;
  }

  footWithAck(a) {
    return el("div", { class: "alert-foot" }, a.acknowledged_us ? this.ackedText(a) : this.ackButton(a));
  }

  pictures(hit) {
    const r = hit.read;
    const box = el("div", { class: "hit-images" });
    if (r.plate_url) box.append(el("img", { class: "hit-plate", src: r.plate_url, alt: `Plate patch read as ${r.vrm}` }));
    if (r.overview_url) {
      const label = `${r.vrm}, ${formatLocal(r.read_us / 1000)}`;
      const b = el("button", { type: "button", class: "hit-overview-button", title: "Show larger",
        "aria-label": `Show the overview picture of ${label} larger` },
      el("img", { class: "hit-overview", src: r.overview_url, alt: `Overview: ${label}` }));
      b.addEventListener("click", () => showImage(r.overview_url, `${label}: overview`));
      box.append(b);
    }
    if (!box.childElementCount) box.append(el("p", { class: "muted small", text: "No pictures were kept for this read." }));
    return box;
  }

  decisionBox(a) {
    const id = `hit-note-${a.data.hit_id}`;
    const note = el("input", { id, class: "hit-note-input", type: "text", maxlength: 2000, autocomplete: "off",
      placeholder: "Note (optional)", "aria-label": `Note on the hit of ${a.data.vrm} (optional)` });
    const confirm = el("button", { type: "button", class: "ok hit-confirm", text: "Confirm", "data-alert": `${a.id}-confirm`,
      "aria-label": `Confirm the hit: ${a.data.vrm} is the vehicle on the hotlist` });
    const dismiss = el("button", { type: "button", class: "bad hit-dismiss", text: "Dismiss", "data-alert": `${a.id}-dismiss`,
      "aria-label": `Dismiss the hit of ${a.data.vrm}: misread or not the vehicle` });
    const error = el("p", { class: "error small hit-error", role: "alert" });
    const box = el("div", { class: "hit-decide" }, note, el("div", { class: "hit-buttons" }, confirm, dismiss), error);
    confirm.addEventListener("click", () => this.decide(a, "confirm", note.value.trim(), box, error));
    dismiss.addEventListener("click", () => this.decide(a, "dismiss", note.value.trim(), box, error));
    return box;
  }
}
