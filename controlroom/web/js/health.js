// The camera health and monitoring hours view (#health): availability of each camera over an
// ISO week, open faults (managed by supervisors and administrators), the last picture checks,
// reporting a fault by hand, who paints each camera's privacy masks (the camera over ONVIF, or the
// service, and why: lawful-use.md); for supervisors, the week's staffed hours against the target and
// the rota editor. Built here and added to the page, so index.html only gains a nav button.

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { formatLocal } from "./time.js";

const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const KINDS = ["offline", "blurred", "dark", "covered", "moved", "other"];
const NEXT = { open: ["reported", "repaired", "closed"], reported: ["repaired", "closed"], repaired: ["closed", "open"], closed: [] };

const pct = (r) => (r === null || r === undefined ? "-" : `${(r * 100).toFixed(1)}%`);
const hhmm = (m) => `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
const minutes = (text) => { const m = /^(\d{1,2}):(\d{2})$/.exec(text.trim()); return m ? Number(m[1]) * 60 + Number(m[2]) : NaN; };

function isoWeek(date = new Date()) {
  const d = new Date(Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()));
  const day = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - day);
  const start = new Date(Date.UTC(d.getUTCFullYear(), 0, 1));
  return `${d.getUTCFullYear()}-W${String(Math.ceil(((d - start) / 864e5 + 1) / 7)).padStart(2, "0")}`;
}

function table(id, headers) {
  const body = el("tbody", { id: `${id}-body` });
  return [el("table", { class: "an-table", id }, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col", text: h })))), body), body];
}

function section(title, id, ...children) {
  return el("section", { class: "hh-part", id, "aria-labelledby": `${id}-title` }, el("h3", { id: `${id}-title`, text: title }), ...children);
}

export class HealthView {
  constructor(store, can) {
    this.store = store;
    this.can = can;
    this.week = el("input", { id: "hh-week", class: "mono", size: 9, value: isoWeek(), "aria-label": "ISO week" });
    const go = el("button", { type: "button", id: "hh-go", text: "Show" });
    go.addEventListener("click", () => this.load());
    this.msg = el("p", { id: "hh-msg", class: "error", role: "alert" });
    const parts = [el("div", { class: "an-head" }, el("h2", { text: "Camera health and monitoring hours" }),
      el("label", { for: "hh-week", text: "Week" }), this.week, go), this.msg];
    if (can.has("rota")) parts.push(this.coveragePart(), this.rotaPart());
    if (can.has("faults")) parts.push(this.faultsPart(), this.availabilityPart(), this.picturesPart(), this.masksPart());
    this.root = el("section", { id: "view-health", class: "view health", "aria-label": "Health", hidden: true }, ...parts);
    $("main").append(this.root);
  }

  coveragePart() {
    this.coverage = el("dl", { id: "hh-coverage", class: "hh-coverage" });
    return section("Monitoring hours", "hh-hours", this.coverage);
  }

  rotaPart() {
    [this.rotaTable, this.rotaBody] = table("hh-rota", ["Day", "From", "To", "Operators", ""]);
    const day = el("select", { id: "hh-rota-day", "aria-label": "Day" }, ...DAYS.map((d, i) => el("option", { value: i, text: d })));
    const from = el("input", { id: "hh-rota-from", size: 5, placeholder: "08:00", "aria-label": "From (local)" });
    const to = el("input", { id: "hh-rota-to", size: 5, placeholder: "16:00", "aria-label": "To (local; 24:00 is midnight)" });
    const ops = el("input", { id: "hh-rota-operators", type: "number", min: 0, max: 100, value: 1, "aria-label": "Operators" });
    const add = el("button", { type: "submit", id: "hh-rota-add", text: "Add window" });
    const error = el("p", { id: "hh-rota-error", class: "error", role: "alert" });
    const form = el("form", { id: "hh-rota-form", class: "an-form", novalidate: true }, day, from, to, ops, add, error);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      const body = { weekday: Number(day.value), start_minute: minutes(from.value), end_minute: minutes(to.value), operators: Number(ops.value) };
      if (Number.isNaN(body.start_minute) || Number.isNaN(body.end_minute)) { error.textContent = "Times are HH:MM, local time."; return; }
      try { await api("/api/v1/rota", { method: "POST", body }); await this.load(); } catch (e) { error.textContent = e.message; }
    });
    return section("Rota (planned cover, local time)", "hh-rota-part", this.rotaTable, form,
      el("p", { class: "muted small", text: "A shift across midnight is two windows. The rota follows the clock changes." }));
  }

  faultsPart() {
    [this.faultsTable, this.faultsBody] = table("hh-faults", ["Camera", "Kind", "Status", "Opened", "By", "Contractor ref", "Description", ""]);
    const cam = el("select", { id: "hh-fault-camera", "aria-label": "Camera" });
    const kind = el("select", { id: "hh-fault-kind", "aria-label": "Kind" }, ...KINDS.map((k) => el("option", { value: k, text: k })));
    const desc = el("input", { id: "hh-fault-description", placeholder: "What is wrong", "aria-label": "Description" });
    const error = el("p", { id: "hh-fault-error", class: "error", role: "alert" });
    const form = el("form", { id: "hh-fault-form", class: "an-form", novalidate: true }, cam, kind, desc,
      el("button", { type: "submit", id: "hh-fault-add", text: "Report a fault" }), error);
    this.faultCamera = cam;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      try {
        await api(`/api/v1/cameras/${cam.value}/faults`, { method: "POST", body: { kind: kind.value, description: desc.value } });
        desc.value = "";
        await this.load();
      } catch (e) { error.textContent = e.message; }
    });
    return section("Open faults", "hh-faults-part", this.faultsTable, form);
  }

  availabilityPart() {
    [this.availTable, this.availBody] = table("hh-avail", ["Camera", "Week", ...DAYS, "Gaps (h)"]);
    return section("Availability (recorded / elapsed time)", "hh-avail-part", this.availTable);
  }

  picturesPart() {
    [this.picTable, this.picBody] = table("hh-pictures", ["Camera", "Checked", "Verdict", "Brightness", "Sharpness", "Flat", "Matching features"]);
    return section("Picture checks", "hh-pictures-part", this.picTable);
  }

  masksPart() {
    [this.masksTable, this.masksBody] = table("hh-masks", ["Camera", "Version", "Painted by", "Since", "Last read back", "State"]);
    return section("Privacy masks", "hh-masks-part", this.masksTable);
  }

  open() { this.root.hidden = false; this.load(); }
  close() { this.root.hidden = true; }

  async load() {
    this.msg.textContent = "";
    const week = this.week.value.trim();
    const jobs = [];
    if (this.can.has("rota")) jobs.push(this.loadCoverage(week), this.loadRota());
    if (this.can.has("faults")) jobs.push(this.loadFaults(), this.loadAvailability(week), this.loadPictures(), this.loadMasks());
    for (const r of await Promise.allSettled(jobs)) if (r.status === "rejected") this.msg.textContent = r.reason.message;
  }

  async loadCoverage(week) {
    const c = await api(`/api/v1/duty/week?week=${encodeURIComponent(week)}`);
    const rows = [["Hours in the week", c.hours_in_week], ["Staffed (at least one on duty)", `${c.staffed_hours.toFixed(1)} of ${c.target_hours} target`],
      ["Unmonitored", `${c.unmonitored_hours.toFixed(1)} h in ${c.unmonitored.length} intervals`],
      ["Planned by the rota", `${c.planned_hours.toFixed(1)} h, ${c.planned_staffed_hours.toFixed(1)} h of it staffed`],
      ["Operator-hours", c.operator_hours.toFixed(1)]];
    this.coverage.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })]));
  }

  async loadRota() {
    const { windows } = await api("/api/v1/rota");
    this.rotaBody.replaceChildren(...windows.map((w) => {
      const remove = el("button", { type: "button", class: "small", text: "Remove", "data-window": w.id });
      remove.addEventListener("click", async () => {
        try { await api(`/api/v1/rota/${w.id}`, { method: "DELETE" }); await this.load(); } catch (e) { this.msg.textContent = e.message; }
      });
      return el("tr", {}, el("td", { text: DAYS[w.weekday] }), el("td", { text: hhmm(w.start_minute) }),
        el("td", { text: hhmm(w.end_minute) }), el("td", { class: "num", text: String(w.operators) }), el("td", {}, remove));
    }));
  }

  async loadFaults() {
    const names = this.store.list.map((c) => [c.id, c.name]);
    if (this.faultCamera.options.length !== names.length) {
      this.faultCamera.replaceChildren(...names.map(([id, name]) => el("option", { value: id, text: name })));
    }
    const { faults } = await api("/api/v1/faults?open=1");
    this.faultsBody.replaceChildren(...faults.map((f) => {
      const cells = [f.camera, f.kind, f.status, formatLocal(Date.parse(f.opened)), f.source, f.contractor_ref || "", f.description]
        .map((t) => el("td", { text: t }));
      const actions = el("td", {});
      if (this.can.has("faults_manage")) {
        const ref = el("input", { size: 10, value: f.contractor_ref || "", "aria-label": "Contractor reference" });
        const status = el("select", { "aria-label": "Status" }, el("option", { value: "", text: "(status)" }),
          ...NEXT[f.status].map((s) => el("option", { value: s, text: s })));
        const save = el("button", { type: "button", class: "small", text: "Save" });
        save.addEventListener("click", async () => {
          const body = { contractor_ref: ref.value };
          if (status.value) body.status = status.value;
          try { await api(`/api/v1/faults/${f.id}`, { method: "PATCH", body }); await this.load(); } catch (e) { this.msg.textContent = e.message; }
        });
        actions.append(ref, status, save);
      }
      return el("tr", { "data-fault": f.id }, ...cells, actions);
    }));
  }

  async loadAvailability(week) {
    const { cameras } = await api(`/api/v1/health/availability?week=${encodeURIComponent(week)}`);
    this.availBody.replaceChildren(...cameras.map((c) => el("tr", {}, el("td", { text: c.name }),
      el("td", { class: "num", text: pct(c.availability) }), ...c.periods.map((p) => el("td", { class: "num", text: pct(p.availability) })),
      el("td", { class: "num", text: (c.gaps.reduce((s, g) => s + g.end_us - g.start_us, 0) / 3.6e9).toFixed(1) }))));
  }

  async loadPictures() {
    const { checks } = await api("/api/v1/health/pictures");
    const name = (id) => this.store.get?.(id)?.name ?? this.store.list.find((c) => c.id === id)?.name ?? String(id);
    this.picBody.replaceChildren(...checks.map((c) => {
      const r = c.result;
      const verdict = c.error ? c.error : Object.keys(r.failures).length ? Object.values(r.failures).join("; ") : "passes";
      return el("tr", {}, el("td", { text: name(c.camera_id) }), el("td", { text: formatLocal(Date.parse(c.at)) }), el("td", { text: verdict }),
        el("td", { class: "num", text: r ? String(r.mean_luma) : "" }), el("td", { class: "num", text: r ? String(r.sharpness) : "" }),
        el("td", { class: "num", text: r ? pct(r.flat_fraction) : "" }), el("td", { class: "num", text: r && r.matches !== null ? String(r.matches) : "" }));
    }));
  }

  async loadMasks() {
    const { cameras } = await api("/api/v1/health/masks");
    const name = (id) => this.store.get?.(id)?.name ?? this.store.list.find((c) => c.id === id)?.name ?? String(id);
    const when = (t) => (t ? formatLocal(Date.parse(t)) : "-");
    this.masksBody.replaceChildren(...cameras.map((c) => el("tr", { "data-camera": c.camera, "data-painter": c.applied_by },
      el("td", { text: name(c.camera) }), el("td", { class: "num", text: String(c.version) }),
      el("td", { text: c.applied_by === "camera" ? "the camera (ONVIF)" : "the service" }),
      el("td", { text: when(c.camera_since) }), el("td", { text: when(c.camera_checked) }),
      el("td", { class: c.camera_state.startsWith("drift") || c.camera_state.includes("after drift") ? "error" : "", text: c.camera_state || "" }))));
  }
}
