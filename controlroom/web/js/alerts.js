// The alerts panel: the newest alerts, then every new one live over a WebSocket; an operator
// acknowledges each (recorded with their name). Messages are shown with textContent only.

import { api, wsUrl } from "./api.js";
import { formatLocal } from "./time.js";

const KIND_TEXT = {
  camera_offline: "Camera offline", camera_online: "Camera back", clock_off: "Clock off",
  recording_stopped: "Recording stopped", disk_floor: "Disk space", anpr_hit: "ANPR hotlist hit",
};

export class AlertsPanel {
  constructor(list, count, conn) {
    Object.assign(this, { list, count, conn });
    this.alerts = new Map();
    this.attempt = 0;
  }

  async start() {
    try {
      const data = await api("/api/v1/alerts?limit=100");
      for (const a of data.alerts.reverse()) this.alerts.set(a.id, a);
      this.render();
    } catch (e) { this.conn.textContent = `Alerts unavailable: ${e.message}`; }
    this.connect();
  }

  connect() {
    const ws = new WebSocket(wsUrl("/api/v1/alerts/ws"));
    ws.onopen = () => { this.attempt = 0; this.conn.textContent = "Live"; };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.alert) { this.alerts.set(msg.alert.id, msg.alert); this.render(); }
    };
    ws.onclose = () => {
      this.conn.textContent = "Reconnecting to the alert feed…";
      const delay = Math.min(15, 2 ** this.attempt++);
      setTimeout(() => this.connect(), delay * 1000);
    };
  }

  async ack(id, button) {
    button.disabled = true;
    try { const a = await api(`/api/v1/alerts/${id}/ack`, { method: "POST", body: {} }); this.alerts.set(a.id, a); this.render(); }
    catch (e) { button.disabled = false; button.title = e.message; }
  }

  render() {
    const items = [...this.alerts.values()].sort((a, b) => b.at_us - a.at_us || b.id - a.id).slice(0, 200);
    const open = items.filter((a) => !a.acknowledged_us).length;
    this.count.textContent = open ? String(open) : "";
    const focused = document.activeElement && document.activeElement.dataset.alert;
    this.list.replaceChildren(...items.map((a) => this.item(a)));
    if (focused) this.list.querySelector(`[data-alert="${CSS.escape(focused)}"]`)?.focus();
  }

  item(a) {
    const li = document.createElement("li");
    li.className = `alert kind-${a.kind}${a.acknowledged_us ? " acked" : ""}`;
    li.dataset.kind = a.kind; li.dataset.camera = a.camera_id ?? "";
    const top = document.createElement("div"); top.className = "alert-top";
    const kind = document.createElement("span"); kind.className = "alert-kind"; kind.textContent = KIND_TEXT[a.kind] || a.kind;
    const when = document.createElement("time"); when.className = "alert-time";
    when.dateTime = new Date(a.at_us / 1000).toISOString(); when.textContent = formatLocal(a.at_us / 1000);
    top.append(kind, when);
    const msg = document.createElement("p"); msg.className = "alert-msg"; msg.textContent = a.message;
    const foot = document.createElement("div"); foot.className = "alert-foot";
    if (a.camera) { const c = document.createElement("span"); c.textContent = a.camera; foot.append(c); }
    if (a.acknowledged_us) {
      const who = document.createElement("span");
      who.textContent = `Acknowledged by ${a.acknowledged_by} at ${formatLocal(a.acknowledged_us / 1000, { date: false })}`;
      foot.append(who);
    } else {
      const b = document.createElement("button"); b.type = "button"; b.textContent = "Acknowledge";
      b.dataset.alert = String(a.id);
      b.setAttribute("aria-label", `Acknowledge: ${a.message}`);
      b.addEventListener("click", () => this.ack(a.id, b));
      foot.append(b);
    }
    li.append(top, msg, foot);
    return li;
  }
}
