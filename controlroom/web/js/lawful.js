// Lawful use, for supervisors: the RIPA register (authorisations, their state, review dates and
// expiry, with reviews, renewals and cancellation) and the subject access request register
// (requests, their statutory deadline, identity, footage windows and their outcome). Dates
// coming due are highlighted: a review or expiry within a week, a SAR deadline within a week,
// anything past. The state is the service's (computed from the dates at each read); the
// highlighting is recomputed every second, and the list is read again when a RIPA or SAR alert
// arrives (reads are audited, so the list is not polled). Text only, never markup.

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { formatLocal, isoLocal } from "./time.js";
import { RedactionPanel } from "./redaction.js";
import { readLocal } from "./timefield.js";

const WEEK_MS = 7 * 86400e3;
const STATE_TEXT = {
  pending: "Pending", live: "Live", review_due: "Review due", expired: "Expired", cancelled: "Cancelled",
  awaiting_identity: "Awaiting identity", open: "Open", disclosed: "Disclosed", refused: "Refused", withdrawn: "Withdrawn",
};

function when(w) { return w && w.utc ? formatLocal(Date.parse(w.utc)) : "—"; }

/** "due" within a week, "past" once passed; "" otherwise or when the item is closed. */
function urgency(w, closed) {
  if (closed || !w || !w.utc) return "";
  const left = Date.parse(w.utc) - Date.now();
  return left <= 0 ? "past" : left <= WEEK_MS ? "due" : "";
}

function leftText(w) {
  if (!w || !w.utc) return "";
  const s = Math.round((Date.parse(w.utc) - Date.now()) / 1000);
  const a = Math.abs(s);
  const txt = a < 120 ? `${a} s` : a < 7200 ? `${Math.round(a / 60)} min` : a < 172800 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} days`;
  return s > 0 ? `in ${txt}` : `${txt} ago`;
}

/** A date cell highlighted by how near ``w`` is; ``label`` replaces the shown time (a SAR's
 * deadline reads as its last day, while ``w`` is the exclusive end: 00:00 the day after). */
function dateCell(w, closed, cls, label) {
  const td = el("td", { class: `lw-date ${cls}`, "data-utc": w && w.utc ? w.utc : "", "data-closed": closed ? "1" : "" },
    el("span", { text: label || when(w) }), el("span", { class: "lw-left small" }));
  paintDate(td);
  return td;
}

function paintDate(td) {
  const w = td.dataset.utc ? { utc: td.dataset.utc } : null;
  const u = urgency(w, td.dataset.closed === "1");
  td.classList.toggle("lw-due", u === "due");
  td.classList.toggle("lw-past", u === "past");
  td.querySelector(".lw-left").textContent = w && td.dataset.closed !== "1" ? ` (${leftText(w)})` : "";
}

function badge(state) {
  return el("span", { class: `lw-state lw-state-${state}`, "data-state": state, text: STATE_TEXT[state] || state });
}

function field(id, label, input) {
  input.id = id;
  return [el("label", { for: id, text: label }), input];
}

/** A London wall-clock time typed in a field, as ISO 8601 with its offset ("" when empty). */
function typedTime(input, name) {
  const v = input.value.trim();
  if (!v) return "";
  const r = readLocal(v);
  if (r.error) throw new Error(`${name}: ${r.error}`);
  return isoLocal(r.candidates[0]);
}

export class LawfulView {
  constructor(can) {
    this.can = can;
    this.root = $("view-lawful");
    this.tab = can.has("ripa") ? "ripa" : "sar";
    this.selected = null;
    this.timer = null;
    this.build();
    // A RIPA or SAR alert: read the register again (its states have moved on).
    document.addEventListener("controlroom:alert", (ev) => {
      const kind = (ev.detail && ev.detail.kind) || "";
      if (this.isOpen && (kind.startsWith("ripa_") || kind.startsWith("sar_"))) this.load();
    });
  }

  build() {
    const tabs = el("span", { class: "lw-tabs", role: "group", "aria-label": "Registers" });
    if (this.can.has("ripa")) tabs.append(el("button", { type: "button", id: "lw-tab-ripa", text: "RIPA authorisations" }));
    if (this.can.has("sar")) tabs.append(el("button", { type: "button", id: "lw-tab-sar", text: "Subject access requests" }));
    const refresh = el("button", { type: "button", id: "lw-refresh", text: "Refresh" });
    this.msg = el("p", { id: "lw-msg", class: "muted", role: "status" });
    this.body = el("div", { id: "lw-body", class: "lw-body" });
    this.root.replaceChildren(
      el("div", { class: "lw-head" }, el("h2", { text: "Lawful use" }), tabs, refresh, el("div", { class: "spacer" }),
        el("span", { class: "muted small", text: "Dates are Europe/London. Due within a week: amber; past: red. Reading a register is audited." })),
      this.msg, this.body);
    for (const b of tabs.querySelectorAll("button")) b.addEventListener("click", () => { location.hash = `#lawful/${b.id.slice(7)}`; });
    refresh.addEventListener("click", () => this.load());
  }

  open(tab) {
    if (tab === "ripa" && this.can.has("ripa")) this.tab = "ripa";
    else if (tab === "sar" && this.can.has("sar")) this.tab = "sar";
    for (const b of this.root.querySelectorAll(".lw-tabs button")) b.setAttribute("aria-pressed", String(b.id === `lw-tab-${this.tab}`));
    this.isOpen = true;
    this.selected = null;
    this.load();
    clearInterval(this.timer);
    this.timer = setInterval(() => { for (const td of this.root.querySelectorAll("td.lw-date")) paintDate(td); }, 1000);
  }

  close() { this.isOpen = false; clearInterval(this.timer); this.timer = null; }

  async load() {
    const tab = this.tab;
    try {
      const data = tab === "ripa" ? await api("/api/v1/ripa/authorisations") : await api("/api/v1/sar/requests");
      if (tab !== this.tab) return;
      this.rows = tab === "ripa" ? data.authorisations : data.requests;
      this.msg.textContent = "";
      this.render();
    } catch (e) { this.msg.textContent = `The register could not be read: ${e.message}`; }
  }

  render() {
    const typed = {};
    for (const f of this.body.querySelectorAll("input, textarea, select")) if (f.id) typed[f.id] = f.value;
    this.body.replaceChildren(...(this.tab === "ripa" ? this.ripaParts() : this.sarParts()));
    for (const [id, v] of Object.entries(typed)) { const f = document.getElementById(id); if (f && f.type !== "file") f.value = v; }
  }

  // --- RIPA -----------------------------------------------------------------------------------

  ripaParts() {
    const tbody = el("tbody", { id: "lw-ripa-body" });
    for (const a of this.rows) {
      const closed = a.state === "expired" || a.state === "cancelled";
      const tr = el("tr", { "data-ref": a.reference, tabindex: 0, class: this.selected === a.reference ? "selected" : "" },
        el("td", { class: "mono", text: a.reference }),
        el("td", { text: a.kind === "chis" ? "CHIS" : "Directed surveillance" }),
        el("td", { text: a.subject }),
        el("td", { text: a.authorising_officer }),
        el("td", {}, badge(a.state)),
        dateCell(a.next_review, closed, "lw-review"),
        dateCell(a.expires, a.state === "cancelled", "lw-expires"));
      tr.addEventListener("click", () => { this.selected = a.reference; this.render(); });
      tbody.append(tr);
    }
    const table = el("table", { class: "an-table lw-table", id: "lw-ripa" },
      el("thead", {}, el("tr", {}, ...["Reference", "Type", "Subject", "Authorising officer", "State", "Next review", "Expires"]
        .map((t) => el("th", { scope: "col", text: t })))), tbody);
    const parts = [table];
    if (!this.rows.length) parts.push(el("p", { class: "muted", text: "No authorisations are recorded." }));
    const chosen = this.rows.find((a) => a.reference === this.selected);
    if (chosen) parts.push(this.ripaDetail(chosen));
    parts.push(this.ripaForm());
    return parts;
  }

  ripaDetail(a) {
    const history = el("ol", { class: "lw-history" }, ...(a.events || []).map((e) =>
      el("li", { text: `${when(e.at)}: ${e.kind} by ${e.officer || e.by}. ${e.note}` })));
    const officer = el("input", { autocomplete: "off" });
    const note = el("textarea", { rows: 2 });
    const next = el("input", { autocomplete: "off", placeholder: "YYYY-MM-DD HH:MM" });
    const error = el("p", { class: "error", role: "alert" });
    const act = async (what) => {
      error.textContent = "";
      try {
        const body = what === "cancel" ? { officer: officer.value, reason: note.value } : { officer: officer.value, note: note.value };
        const nr = what !== "cancel" ? typedTime(next, "Next review") : "";
        if (nr) body.next_review = nr;
        await api(`/api/v1/ripa/authorisations/${encodeURIComponent(a.reference)}/${what}`, { method: "POST", body });
        await this.load();
      } catch (e) { error.textContent = e.message; }
    };
    const open = a.state !== "expired" && a.state !== "cancelled";
    const buttons = el("div", { class: "ev-buttons" });
    for (const [what, label] of [["review", "Record review"], ["renew", "Renew (3 months)"], ["cancel", "Cancel"]]) {
      const b = el("button", { type: "button", id: `lw-ripa-${what}`, text: label, disabled: !open });
      b.addEventListener("click", () => act(what));
      buttons.append(b);
    }
    return el("section", { class: "lw-detail", id: "lw-ripa-detail", "aria-label": `Authorisation ${a.reference}` },
      el("h3", { text: `${a.reference} ` }, badge(a.state)),
      el("dl", { class: "lw-facts" },
        el("dt", { text: "Grounds" }), el("dd", { text: a.grounds }),
        el("dt", { text: "Subject" }), el("dd", { text: a.subject }),
        el("dt", { text: "Operation" }), el("dd", { text: a.operation || "—" }),
        el("dt", { text: "Cameras, sites" }), el("dd", { text: `${a.cameras.join(", ") || "any"}; ${a.sites.join(", ") || "—"}` }),
        el("dt", { text: "Granted, in force" }), el("dd", { text: `${when(a.authorised)}; ${when(a.start)} to ${when(a.expires)}` }),
        el("dt", { text: "Renewals" }), el("dd", { text: String(a.renewals) })),
      el("h4", { text: "Reviews, renewals, cancellation" }), history,
      open ? el("div", { class: "ev-fields" },
        ...field("lw-act-officer", "Authorising officer", officer), ...field("lw-act-note", "Note, reasons", note),
        ...field("lw-act-next", "Next review (London time, optional)", next)) : null,
      buttons, error);
  }

  ripaForm() {
    const f = {
      reference: el("input", { autocomplete: "off" }), kind: el("select", {},
        el("option", { value: "directed_surveillance", text: "Directed surveillance" }), el("option", { value: "chis", text: "CHIS" })),
      officer: el("input", { autocomplete: "off" }), grounds: el("textarea", { rows: 2 }), subject: el("textarea", { rows: 2 }),
      operation: el("input", { autocomplete: "off" }), cameras: el("input", { autocomplete: "off", placeholder: "ids or names, comma-separated; empty: any" }),
      authorised: el("input", { autocomplete: "off", placeholder: "YYYY-MM-DD HH:MM (empty: now)" }),
      expires: el("input", { autocomplete: "off", placeholder: "optional, earlier than 3 months" }),
    };
    const error = el("p", { class: "error", role: "alert", id: "lw-ripa-error" });
    const form = el("form", { class: "an-form lw-form", id: "lw-ripa-form", novalidate: true },
      el("h3", { text: "Record an authorisation" }),
      el("div", { class: "ev-fields" },
        ...field("lw-ripa-reference", "Reference", f.reference), ...field("lw-ripa-kind", "Type", f.kind),
        ...field("lw-ripa-officer", "Authorising officer", f.officer), ...field("lw-ripa-grounds", "Grounds", f.grounds),
        ...field("lw-ripa-subject", "Subject (description)", f.subject), ...field("lw-ripa-operation", "Operation", f.operation),
        ...field("lw-ripa-cameras", "Cameras", f.cameras), ...field("lw-ripa-authorised", "Granted (London time)", f.authorised),
        ...field("lw-ripa-expires", "Ends (London time)", f.expires)),
      el("div", { class: "ev-buttons" }, el("div", { class: "spacer" }), el("button", { type: "submit", class: "ok", id: "lw-ripa-submit", text: "Record" })),
      error);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      try {
        const body = {
          reference: f.reference.value.trim(), kind: f.kind.value, authorising_officer: f.officer.value.trim(),
          grounds: f.grounds.value.trim(), subject: f.subject.value.trim(), operation: f.operation.value.trim(),
          cameras: f.cameras.value.split(",").map((s) => s.trim()).filter(Boolean).map((s) => (/^\d+$/.test(s) ? Number(s) : s)),
          authorised: typedTime(f.authorised, "Granted") || isoLocal(Date.now()),
        };
        const ends = typedTime(f.expires, "Ends");
        if (ends) body.expires = ends;
        const made = await api("/api/v1/ripa/authorisations", { method: "POST", body });
        for (const input of Object.values(f)) if (input.tagName !== "SELECT") input.value = "";
        this.selected = made.reference;
        await this.load();
      } catch (e) { error.textContent = e.message; }
    });
    return form;
  }

  // --- SAR ------------------------------------------------------------------------------------

  sarParts() {
    const tbody = el("tbody", { id: "lw-sar-body" });
    for (const s of this.rows) {
      const closed = ["disclosed", "refused", "withdrawn"].includes(s.state);
      const tr = el("tr", { "data-ref": s.reference, tabindex: 0, class: this.selected === s.reference ? "selected" : "" },
        el("td", { class: "mono", text: s.reference }), el("td", { text: s.requester_name }),
        el("td", {}, badge(s.state)), el("td", { text: when(s.received) }),
        dateCell(s.deadline, closed, "lw-deadline", s.deadline_day ? `${s.deadline_day} (end of day)` : "—"),
        el("td", { text: s.extended ? "Extended" : "" }), el("td", { text: String(s.windows.length) }));
      tr.addEventListener("click", () => { this.selected = s.reference; this.showSar(s.id); });
      tbody.append(tr);
    }
    const table = el("table", { class: "an-table lw-table", id: "lw-sar" },
      el("thead", {}, el("tr", {}, ...["Reference", "Requester", "State", "Received", "Deadline", "", "Windows"]
        .map((t) => el("th", { scope: "col", text: t })))), tbody);
    const parts = [table];
    if (!this.rows.length) parts.push(el("p", { class: "muted", text: "No subject access requests are recorded." }));
    parts.push(el("div", { id: "lw-sar-detail-wrap" }), this.sarForm());
    return parts;
  }

  async showSar(id) {
    const wrap = $("lw-sar-detail-wrap");
    for (const tr of this.root.querySelectorAll("#lw-sar-body tr")) tr.classList.toggle("selected", tr.dataset.ref === this.selected);
    if (this.redaction) this.redaction.close();
    this.redaction = null;
    try {
      wrap.replaceChildren(this.sarDetail(await api(`/api/v1/sar/requests/${id}`)));
      if (this.redaction) await this.redaction.open();
    } catch (e) { wrap.replaceChildren(el("p", { class: "error", text: e.message })); }
  }

  sarDetail(s) {
    const closed = ["disclosed", "refused", "withdrawn"].includes(s.state);
    const error = el("p", { class: "error", role: "alert" });
    const post = async (path, body) => {
      error.textContent = "";
      try { await api(`/api/v1/sar/requests/${s.id}/${path}`, { method: "POST", body }); await this.load(); await this.showSar(s.id); }
      catch (e) { error.textContent = e.message; }
    };
    const windows = el("ul", { class: "lw-windows" });
    const found = new Map(((s.findings && s.findings.windows) || []).map((w) => [`${w.camera_id} ${w.from_utc}`, w]));
    for (const w of s.windows) {
      const f = [...found.values()].find((x) => x.camera_id === w.camera_id && Date.parse(x.from_utc) === Date.parse(w.from));
      const gaps = f ? (f.missing ? "no footage recorded" : f.gaps.length ? `${f.gaps.length} gap(s): ` + f.gaps.map((g) => `${formatLocal(Date.parse(g.from_utc), { date: false })}–${formatLocal(Date.parse(g.to_utc), { date: false })} ${g.reason}`).join("; ") : "recorded throughout") : "";
      windows.append(el("li", { text: `Camera ${f ? f.camera : w.camera_id}: ${formatLocal(Date.parse(w.from))} to ${formatLocal(Date.parse(w.to))}. ${gaps}` }));
    }
    const parts = [
      el("h3", { text: `${s.reference} ` }, badge(s.state)),
      el("dl", { class: "lw-facts" },
        el("dt", { text: "Requester" }), el("dd", { text: `${s.requester_name}${s.requester_contact ? `, ${s.requester_contact}` : ""}` }),
        el("dt", { text: "Identity" }), el("dd", { text: s.identity_method ? `${s.identity_method} (${s.identity_verified_by}, ${when(s.identity_verified)})` : "not yet verified: the clock has not started" }),
        el("dt", { text: "Description" }), el("dd", { text: s.description }),
        el("dt", { text: "Places and times" }), el("dd", { text: s.places_times }),
        el("dt", { text: "Deadline" }), el("dd", { text: s.deadline_day ? `${s.deadline_day} (the whole day)${s.extended ? `, extended: ${s.extension_reason}` : ""}` : "—" }),
        closed ? el("dt", { text: "Outcome" }) : null, closed ? el("dd", { text: `${s.outcome}${s.exemption ? ` Exemption: ${s.exemption}` : ""}` }) : null),
      el("h4", { text: "Footage (held while the request is open)" }), windows,
    ];
    if (s.state !== "awaiting_identity") {
      this.redaction = new RedactionPanel(s, { closed });
      parts.push(this.redaction.root);
    }
    if (!closed) {
      const i = {
        method: el("input", { autocomplete: "off" }), camera: el("input", { autocomplete: "off", placeholder: "id or name" }),
        from: el("input", { autocomplete: "off", placeholder: "YYYY-MM-DD HH:MM:SS" }), to: el("input", { autocomplete: "off", placeholder: "YYYY-MM-DD HH:MM:SS" }),
        reason: el("input", { autocomplete: "off" }), outcome: el("textarea", { rows: 2 }), exemption: el("input", { autocomplete: "off" }),
        state: el("select", {}, ...["disclosed", "refused", "withdrawn"].map((v) => el("option", { value: v, text: STATE_TEXT[v] }))),
      };
      const button = (id, text, fn) => { const b = el("button", { type: "button", id, text }); b.addEventListener("click", fn); return b; };
      if (s.state === "awaiting_identity") {
        parts.push(el("div", { class: "ev-fields" }, ...field("lw-sar-method", "How identity was verified", i.method)),
          button("lw-sar-verify", "Identity verified", () => post("verify", { method: i.method.value })));
      } else {
        parts.push(el("div", { class: "ev-fields" }, ...field("lw-sar-camera", "Camera", i.camera),
          ...field("lw-sar-from", "From (London time)", i.from), ...field("lw-sar-to", "To (London time)", i.to)),
        button("lw-sar-add-window", "Add footage window", async () => {
          try { await post("windows", { camera: /^\d+$/.test(i.camera.value.trim()) ? Number(i.camera.value) : i.camera.value.trim(), from: typedTime(i.from, "From"), to: typedTime(i.to, "To") }); }
          catch (e) { error.textContent = e.message; }
        }));
        if (!s.extended) {
          parts.push(el("div", { class: "ev-fields" }, ...field("lw-sar-reason", "Reason to extend by two months", i.reason)),
            button("lw-sar-extend", "Extend", () => post("extend", { reason: i.reason.value })));
        }
      }
      parts.push(el("div", { class: "ev-fields" }, ...field("lw-sar-state", "Close as", i.state),
        ...field("lw-sar-outcome", "Outcome", i.outcome), ...field("lw-sar-exemption", "Exemption cited (if refused)", i.exemption)),
      button("lw-sar-close", "Close the request", () => post("close", { state: i.state.value, outcome: i.outcome.value, exemption: i.exemption.value })));
    }
    parts.push(error);
    return el("section", { class: "lw-detail", id: "lw-sar-detail" }, ...parts);
  }

  sarForm() {
    const f = {
      name: el("input", { autocomplete: "off" }), contact: el("input", { autocomplete: "off" }),
      received: el("input", { autocomplete: "off", placeholder: "YYYY-MM-DD HH:MM (empty: now)" }),
      identity: el("input", { autocomplete: "off", placeholder: "e.g. passport seen; empty: not yet" }),
      description: el("textarea", { rows: 2 }), places: el("textarea", { rows: 2 }),
    };
    const error = el("p", { class: "error", role: "alert", id: "lw-sar-error" });
    const form = el("form", { class: "an-form lw-form", id: "lw-sar-form", novalidate: true },
      el("h3", { text: "Record a subject access request" }),
      el("div", { class: "ev-fields" },
        ...field("lw-sar-name", "Requester", f.name), ...field("lw-sar-contact", "Contact", f.contact),
        ...field("lw-sar-received", "Received (London time)", f.received), ...field("lw-sar-identity", "Identity verified by", f.identity),
        ...field("lw-sar-description", "Description of themselves and clothing", f.description),
        ...field("lw-sar-places", "Places and times", f.places)),
      el("div", { class: "ev-buttons" }, el("div", { class: "spacer" }), el("button", { type: "submit", class: "ok", id: "lw-sar-submit", text: "Record" })),
      error);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      try {
        const made = await api("/api/v1/sar/requests", { method: "POST", body: {
          requester_name: f.name.value.trim(), requester_contact: f.contact.value.trim(),
          received: typedTime(f.received, "Received") || isoLocal(Date.now()), identity_method: f.identity.value.trim(),
          description: f.description.value.trim(), places_times: f.places.value.trim() } });
        for (const input of Object.values(f)) input.value = "";
        this.selected = made.reference;
        await this.load();
        await this.showSar(made.id);
      } catch (e) { error.textContent = e.message; }
    });
    return form;
  }
}
