// "On duty / Sign on" in the header, for operators and supervisors: signing on and off is a
// deliberate act, separate from logging in (docs/design/health-and-duty.md). The state is
// read again every minute, so a supervisor signing someone off shows on their screen.

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { formatLocal } from "./time.js";

const REFRESH_MS = 60_000;

export class DutyControl {
  constructor(before) {
    this.state = el("span", { id: "duty-state", class: "duty-state", role: "status" });
    this.button = el("button", { type: "button", id: "duty-toggle" });
    this.button.hidden = true; // until the service has said whether this user is on duty
    this.error = el("span", { id: "duty-error", class: "error small", role: "alert" });
    this.root = el("span", { id: "duty", class: "duty" }, this.state, this.button, this.error);
    before.before(this.root);
    this.onDuty = false;
    this.button.addEventListener("click", () => this.toggle());
  }

  async start() {
    await this.refresh();
    this.timer = setInterval(() => this.refresh().catch(() => {}), REFRESH_MS);
  }

  async refresh() {
    this.show(await api("/api/v1/duty"));
  }

  show(data) {
    this.onDuty = data.on_duty;
    this.root.classList.toggle("on", this.onDuty);
    this.state.textContent = this.onDuty
      ? `On duty since ${formatLocal(Date.parse(data.session.on), { date: false })}`
      : "Off duty";
    this.button.textContent = this.onDuty ? "Sign off" : "Sign on";
    this.button.hidden = false;
  }

  async toggle() {
    this.error.textContent = "";
    this.button.disabled = true;
    try {
      await api(this.onDuty ? "/api/v1/duty/off" : "/api/v1/duty/on", { method: "POST", body: this.onDuty ? undefined : {} });
    } catch (e) {
      // 409: another screen of the same user changed it meanwhile; show what is true now.
      if (e.status !== 409) this.error.textContent = e.message;
    } finally {
      this.button.disabled = false;
    }
    await this.refresh();
  }
}

export function startDuty(can) {
  if (!can.has("live_view")) return null;
  const duty = new DutyControl($("user-name"));
  duty.start().catch((e) => { duty.error.textContent = e.message; });
  return duty;
}
