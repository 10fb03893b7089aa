// Evidence for the police (issue 7): the request form, the list of requests, one request's
// detail with what was found in its windows (gaps, missing footage, clock offsets), the
// supervisor's decisions, the export's progress and the package download.
// Addressed as #evidence, #evidence/new, #evidence/ID and (supervisors) #evidence/register.
// Everything from the API is inserted as text (textContent, attributes); never as HTML.

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { formatLocal, isoLocal } from "./time.js";
import { readLocal, TimeInfo } from "./timefield.js";

const DETAIL_BUSY_MS = 1000; // while an export is queued or running: the progress bar moves
const DETAIL_IDLE_MS = 2000; // otherwise: a decision by someone else shows within 2 s
// Every list read is audited (evidence.list), so the list is not polled like the detail is:
// it is read when the view opens, after each action, on "Refresh", and every 30 s.
const LIST_MS = 30000;
export const LAWFUL_BASIS = "DPA 2018 Schedule 2 Part 1 paragraph 2";
const STATE_TEXT = {
  submitted: "Submitted", approved: "Approved", refused: "Refused", exporting: "Exporting",
  ready: "Ready", downloaded: "Downloaded", closed: "Closed",
};
const FIELD_TEXT = [
  ["officer_name", "Officer"], ["collar_number", "Collar number"], ["force", "Force"],
  ["crime_reference", "Crime reference"], ["offence", "Offence"], ["necessity", "Necessity"],
  ["lawful_basis", "Lawful basis"], ["authorised_by", "Authorised by"], ["requested_by", "Submitted by"],
  ["ripa_reference", "RIPA authorisation"],
];

// The form's fields as their labels read: errors name the label, never the API's field name.
const FORM_FIELDS = [["officer_name", "Officer name"], ["collar_number", "Collar number"], ["force", "Force"],
  ["crime_reference", "Crime reference"], ["offence", "Offence"], ["necessity", "Necessity"],
  ["lawful_basis", "Lawful basis"], ["authorised_by", "Authorised by"]];
const LABEL_OF = Object.fromEntries(FORM_FIELDS);
// What is typed is kept in this browser (per user) until submitted, discarded or signed out, so a
// reload or an expired session loses nothing (app.js removes every draft at sign-out).
export const DRAFT_KEY = "controlroom.evidence.draft";

/** The API's words for a refused request, in the form's ("missing or empty: crime_reference"
 * -> "Crime reference is required"; "windows[0]: no camera 999" -> "Window 1: camera 999 does not exist"). */
export function plainError(message) {
  const missing = /^missing or empty: (.+)$/.exec(message);
  if (missing) return missing[1].split(", ").map((k) => `${LABEL_OF[k] || k} is required`).join("; ");
  const noCamera = /^windows(?:\[(\d+)\])?: no camera (.+)$/.exec(message);
  if (noCamera) return `${noCamera[1] != null ? `Window ${Number(noCamera[1]) + 1}: ` : ""}camera ${noCamera[2]} does not exist`;
  return message;
}

const fmtIso = (iso) => (iso ? formatLocal(Date.parse(iso)) : "");
function fmtBytes(n) {
  if (n == null) return "";
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}
const fmtSeconds = (s) => `${Number(s).toFixed(1)} s`;

const req = () => el("span", { class: "req", text: "(required)" });

class WindowRow {
  constructor(view, n) {
    this.view = view;
    const id = (what) => `ev-w${n}-${what}`;
    this.camera = el("select", { id: id("camera"), class: "ev-camera", required: true });
    // Text, not datetime-local: typed the way the screen shows times everywhere, whatever the
    // browser's locale (a US-locale date field shows 12/01/2026 for 1 December).
    const timeInput = (what) => el("input", { id: id(what), class: `ev-${what}`, type: "text", required: true,
      placeholder: "DD/MM/YYYY HH:MM:SS", autocomplete: "off", spellcheck: "false", inputmode: "numeric" });
    this.from = timeInput("from"); this.to = timeInput("to");
    this.remove = el("button", { type: "button", class: "ev-remove", text: "Remove" });
    this.fromInfo = new TimeInfo(this.from, id("from-when"), "from");
    this.toInfo = new TimeInfo(this.to, id("to-when"), "to");
    this.legend = el("legend", { text: `Window ${n}` });
    this.root = el("fieldset", { class: "ev-window" }, this.legend,
      el("div", { class: "ev-window-grid" },
        el("div", {}, el("label", { for: id("camera") }, "Camera ", req()), this.camera),
        el("div", {}, el("label", { for: id("from") }, "From (London time) ", req()), this.from, this.fromInfo.root),
        el("div", {}, el("label", { for: id("to") }, "To (London time) ", req()), this.to, this.toInfo.root),
        el("div", { class: "ev-remove-cell" }, this.remove)));
    this.fillCameras(view.cameras);
  }

  fillCameras(cameras) {
    const was = this.camera.value || this.wanted || ""; // wanted: a restored draft's camera, until the list has it
    this.camera.replaceChildren(el("option", { value: "", text: "Choose a camera" }),
      ...cameras.map((c) => el("option", { value: c.id, text: c.site ? `${c.name} (${c.site})` : c.name })));
    this.camera.value = cameras.some((c) => String(c.id) === was) ? was : "";
    if (this.camera.value) this.wanted = "";
  }

  /** Every problem of this window, in the form's words ("Window 2: From is required"); the first
   * field at fault is focused by the caller. */
  problems(n) {
    const out = [];
    if (!this.camera.value) out.push([`Window ${n}: choose a camera`, this.camera]);
    for (const [info, input, label] of [[this.fromInfo, this.from, "From"], [this.toInfo, this.to, "To"]]) {
      if (!input.value.trim()) { out.push([`Window ${n}: ${label} is required`, input]); continue; }
      try { info.iso(); } catch (e) { out.push([`Window ${n} ${e.message}`, document.activeElement]); }
    }
    return out;
  }

  /** {camera, from, to} for the API, or throws an Error naming the field (and focuses it). */
  value() {
    if (!this.camera.value) { this.camera.focus(); throw new Error("choose a camera for every window"); }
    return { camera: Number(this.camera.value), from: this.fromInfo.iso(), to: this.toInfo.iso() };
  }
}

export class EvidenceView {
  constructor(me, can) {
    this.me = me; this.can = can;
    this.requests = new Map();
    this.listError = "";
    this.cameras = [];
    this.rows = [];
    this.current = null; // the request shown in the detail pane
    this.detailTimer = null; this.listTimer = null; this.pollSeq = 0;
    this.active = false;
    this.canSubmit = can.has("evidence_request") || can.has("export");
    this.canRegister = can.has("approve"); // the disclosure register is the approvers'
    $("ev-new").hidden = !this.canSubmit;
    $("ev-register-open").hidden = !this.canRegister;
    $("ev-new").addEventListener("click", () => { location.hash = "#evidence/new"; });
    $("ev-refresh").addEventListener("click", () => this.loadList());
    $("ev-add-window").addEventListener("click", () => this.addWindow().camera.focus());
    $("ev-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.submit(); });
    $("ev-lawful_basis").value = LAWFUL_BASIS;
    this.addWindow();
    this.draftKey = `${DRAFT_KEY}.${me?.username || ""}`;
    this.restoreDraft();
    $("ev-form").addEventListener("input", () => this.saveDraft());
    $("ev-form").addEventListener("change", () => this.saveDraft());
    $("ev-draft-discard").addEventListener("click", () => { this.clearDraft(); this.resetForm(); });
  }

  saveDraft() {
    const draft = { fields: {}, windows: this.rows.map((r) => ({ camera: r.camera.value || r.wanted || "", from: r.from.value, to: r.to.value })) };
    for (const [key] of FORM_FIELDS) draft.fields[key] = $(`ev-${key}`).value;
    try { localStorage.setItem(this.draftKey, JSON.stringify(draft)); $("ev-draft-note").hidden = false; }
    catch (e) { $("ev-draft-note").hidden = true; } // storage full or refused: the form still works
  }

  restoreDraft() {
    let draft = null;
    try { draft = JSON.parse(localStorage.getItem(this.draftKey) || "null"); } catch (e) { draft = null; }
    if (!draft || !draft.fields) return;
    for (const [key] of FORM_FIELDS) if (typeof draft.fields[key] === "string") $(`ev-${key}`).value = draft.fields[key];
    const windows = Array.isArray(draft.windows) && draft.windows.length ? draft.windows : [{}];
    for (const r of this.rows) r.root.remove();
    this.rows = [];
    for (const w of windows) {
      const row = this.addWindow();
      row.wanted = String(w.camera || ""); row.fillCameras(this.cameras);
      row.from.value = w.from || ""; row.to.value = w.to || "";
      row.fromInfo.update(); row.toInfo.update();
    }
    $("ev-draft-note").hidden = false;
  }

  clearDraft() { localStorage.removeItem(this.draftKey); $("ev-draft-note").hidden = true; }

  /** Open the view: "" (the list), "new" (the form) or a request id. */
  async open(what) {
    const first = !this.active;
    this.active = true;
    if (first) {
      this.loadKey();
      this.loadList();
      this.listTimer = setInterval(() => this.loadList(), LIST_MS);
    }
    clearTimeout(this.detailTimer);
    const form = what === "new" && this.canSubmit;
    const register = what === "register" && this.canRegister;
    const detail = Boolean(what) && what !== "new" && what !== "register";
    $("ev-form").hidden = !form;
    $("ev-register").hidden = !register;
    $("ev-detail").hidden = !detail;
    $("ev-empty").hidden = form || register || detail;
    $("ev-empty").textContent = this.canSubmit ? "Choose a request from the list, or make a new request."
      : "Choose a request from the list.";
    if (form) {
      this.current = null;
      await this.loadCameras();
      $("ev-officer_name").focus();
    } else if (register) {
      this.current = null;
      await this.loadRegister();
    } else if (detail) {
      this.current = Number(what);
      $("ev-detail").dataset.shown = "";
      $("ev-detail").replaceChildren(el("p", { class: "muted", text: "Loading…" }));
      await this.poll();
    } else {
      this.current = null;
    }
    this.markSelected();
  }

  close() {
    this.active = false;
    clearTimeout(this.detailTimer); clearInterval(this.listTimer);
    this.detailTimer = this.listTimer = null;
  }

  async loadKey() {
    try {
      const key = await api("/api/v1/evidence/public-key");
      $("ev-fingerprint").textContent = key.fingerprint_sha256;
      $("ev-pem").textContent = key.pem;
    } catch (e) { $("ev-fingerprint").textContent = `unavailable (${e.message})`; }
  }

  async loadCameras() {
    try {
      this.cameras = (await api("/api/v1/evidence/cameras")).cameras;
      for (const r of this.rows) r.fillCameras(this.cameras);
    } catch (e) { $("ev-form-error").textContent = `The camera list could not be read: ${e.message}`; }
  }

  async loadList() {
    try {
      const data = await api("/api/v1/evidence/requests");
      this.requests = new Map(data.requests.map((r) => [r.id, r]));
      this.listError = "";
    } catch (e) { this.listError = `The list could not be read: ${e.message}`; }
    this.renderList();
  }

  /** The disclosure register, newest first (read once per opening: each read is audited). */
  async loadRegister() {
    $("ev-register-msg").textContent = "Loading…";
    let entries;
    try { entries = (await api("/api/v1/evidence/register")).register; }
    catch (e) { $("ev-register-msg").textContent = `The register could not be read: ${e.message}`; return; }
    if (!this.cameras.length) await this.loadCameras();
    const names = new Map(this.cameras.map((c) => [c.id, c.name]));
    const rows = entries.slice().reverse().map((e) => {
      const when = fmtIso(e.at_utc).split(" ");
      const windows = (e.what?.windows || []).map((w) =>
        `${names.get(w.camera) || `camera ${w.camera}`}, ${fmtIso(w.from)} to ${fmtIso(w.to)}`);
      return el("tr", { "data-id": e.id },
        el("td", { class: "nowrap" }, el("div", { text: when[0] }), el("div", { class: "muted small", text: when.slice(1).join(" ") })),
        el("td", { text: e.to }),
        el("td", { text: e.why }),
        el("td", { text: e.lawful_basis }),
        el("td", {},
          el("a", { href: `#evidence/${e.request_id}`, text: e.what?.exhibit || `Request ${e.request_id}` }),
          e.what?.package_bytes ? el("div", { class: "muted small", text: fmtBytes(e.what.package_bytes) }) : null,
          ...windows.map((w) => el("div", { class: "small", text: w }))),
        el("td", { text: e.released_by }));
    });
    $("ev-register-body").replaceChildren(...rows);
    $("ev-register-msg").textContent = rows.length ? `${rows.length} release${rows.length === 1 ? "" : "s"}.` : "Nothing has been released yet.";
  }

  renderList() {
    const rows = [...this.requests.values()].sort((a, b) => b.id - a.id).map((r) => {
      const cams = (r.findings?.windows || []).map((w) => w.camera);
      const flags = [];
      if (r.findings?.any_missing) flags.push("no footage");
      if (r.findings?.any_gaps) flags.push("gaps");
      if (r.findings?.any_clock_flags) flags.push("clock");
      const submitted = fmtIso(r.submitted_utc).split(" ");
      return el("tr", { "data-id": r.id },
        el("td", { class: "nowrap" }, el("a", { href: `#evidence/${r.id}`, text: r.exhibit_reference || `Request ${r.id}` })),
        el("td", {}, stateBadge(r.state), flags.length ? el("div", { class: "ev-flags small", text: flags.join(", ") }) : null),
        el("td", {}, el("div", { text: r.crime_reference }), el("div", { class: "muted small", text: `${r.officer_name}, ${r.force}` })),
        el("td", { text: [...new Set(cams)].join(", ") }),
        el("td", { class: "nowrap" }, el("div", { text: submitted[0] }), el("div", { class: "muted small", text: submitted.slice(1).join(" ") })));
    });
    $("ev-list-body").replaceChildren(...rows);
    $("ev-list-msg").textContent = this.listError || (rows.length ? "" : "No requests yet.");
    this.markSelected();
  }

  markSelected() {
    for (const tr of $("ev-list-body").children) tr.classList.toggle("selected", Number(tr.dataset.id) === this.current);
  }

  addWindow() {
    const row = new WindowRow(this, this.rows.length + 1);
    row.remove.addEventListener("click", () => {
      this.rows = this.rows.filter((r) => r !== row); row.root.remove(); this.numberWindows();
    });
    this.rows.push(row);
    $("ev-windows").append(row.root);
    this.numberWindows();
    return row;
  }

  numberWindows() {
    this.rows.forEach((r, i) => { r.legend.textContent = `Window ${i + 1}`; r.remove.hidden = this.rows.length === 1; });
  }

  async submit() {
    const error = $("ev-form-error");
    error.textContent = "";
    const body = {};
    // Every problem at once, each naming its field's label; nothing is sent until there are none.
    const problems = [];
    for (const [key, label] of FORM_FIELDS) {
      body[key] = $(`ev-${key}`).value;
      if (!body[key].trim()) problems.push([`${label} is required`, $(`ev-${key}`)]);
    }
    this.rows.forEach((r, i) => problems.push(...r.problems(i + 1)));
    if (problems.length) {
      error.textContent = `Not submitted: ${problems.map(([text]) => text).join("; ")}.`;
      problems[0][1]?.focus();
      return;
    }
    body.windows = this.rows.map((r) => r.value());
    body.directed_surveillance = $("ev-directed_surveillance").checked;
    body.ripa_reference = $("ev-ripa_reference").value.trim();
    const button = $("ev-submit");
    button.disabled = true;
    try {
      const req = await api("/api/v1/evidence/requests", { method: "POST", body });
      this.requests.set(req.id, req);
      this.renderList();
      this.clearDraft(); // submitted: no personal data stays in this browser
      this.resetForm();
      location.hash = `#evidence/${req.id}`;
    } catch (e) {
      error.textContent = `Not submitted: ${plainError(e.message)}`; // the form keeps what was typed
    } finally { button.disabled = false; }
  }

  resetForm() {
    $("ev-form").reset();
    $("ev-lawful_basis").value = LAWFUL_BASIS;
    for (const r of this.rows) r.root.remove();
    this.rows = [];
    this.addWindow();
  }

  /** Read the shown request, draw it, and come back in 1 s (export running) or 2 s. */
  async poll() {
    clearTimeout(this.detailTimer);
    const id = this.current;
    if (!this.active || id == null) return;
    const mine = ++this.pollSeq; // a newer poll (after an action, another request) supersedes this one
    let req = null;
    try {
      req = await api(`/api/v1/evidence/requests/${id}`);
      if (mine !== this.pollSeq) return;
    } catch (e) {
      if (mine !== this.pollSeq) return;
      if (this.current === id) {
        $("ev-detail").dataset.shown = "";
        $("ev-detail").replaceChildren(el("p", { class: "error", text: `Request ${id}: ${e.message}` }));
      }
      if (e.status === 404 || !this.active) return;
    }
    if (this.current !== id || !this.active) return;
    if (req) {
      const before = this.requests.get(id);
      this.requests.set(id, req);
      if (!before || before.state !== req.state) this.renderList();
      this.renderDetail(req);
    }
    if (req && req.state === "closed") return;
    const busy = req && req.export && ["queued", "running"].includes(req.export.state);
    this.detailTimer = setTimeout(() => this.poll(), busy ? DETAIL_BUSY_MS : DETAIL_IDLE_MS);
  }

  renderDetail(req) {
    const pane = $("ev-detail");
    const seen = JSON.stringify(req);
    if (pane.dataset.shown === seen && pane.childElementCount) return; // nothing new: leave the page as it is
    pane.dataset.shown = seen;
    // Keep what a supervisor is typing in an action box across refreshes of the same request.
    const typed = {};
    for (const f of pane.querySelectorAll("[data-keep]")) typed[f.dataset.keep] = f.value;
    const focused = document.activeElement && pane.contains(document.activeElement) ? document.activeElement.dataset.keep : null;
    const parts = [
      el("div", { class: "ev-detail-head" },
        el("h3", { text: req.exhibit_reference || `Request ${req.id}` }), stateBadge(req.state, "ev-state")),
      // A request citing surveillance of a named person without a live RIPA authorisation (council staff only).
      req.ripa_warning ? el("p", { class: "ev-warning", id: "ev-ripa-warning", role: "alert", text: `RIPA: ${req.ripa_warning}` }) : null,
      factsList(req),
      req.findings ? findingsSection(req, this.can.has("playback")) : null,  // council staff only (the API leaves it out)
      exportSection(req),
      packageSection(req),
      this.actions(req),
    ];
    pane.replaceChildren(...parts.filter(Boolean));
    for (const f of pane.querySelectorAll("[data-keep]")) if (f.dataset.keep in typed) f.value = typed[f.dataset.keep];
    if (focused) pane.querySelector(`[data-keep="${focused}"]`)?.focus();
  }

  actions(req) {
    const box = el("section", { class: "ev-actions", "aria-label": "Actions" });
    const error = el("p", { class: "error ev-action-error", role: "alert" });
    const me = this.me.username;
    const act = async (button, path, body) => {
      button.disabled = true; error.textContent = "";
      try {
        const updated = await api(`/api/v1/evidence/requests/${req.id}/${path}`, { method: "POST", body });
        for (const f of box.querySelectorAll("[data-keep]")) f.value = "";
        if (updated && updated.id) { this.requests.set(updated.id, updated); this.renderDetail(updated); }
        this.loadList();
        this.poll();
        return updated;
      } catch (e) { error.textContent = e.message; button.disabled = false; return null; }
    };
    if (this.can.has("approve") && req.state === "submitted") {
      if (req.requested_by === me) {
        box.append(el("p", { class: "muted", text: "You submitted this request: another supervisor must decide it." }));
      } else {
        const reason = el("textarea", { id: "ev-decision-reason", "data-keep": "decision", rows: 2, required: true });
        const approve = el("button", { type: "button", id: "ev-approve", class: "ok", text: "Approve and export" });
        const refuse = el("button", { type: "button", id: "ev-refuse", class: "bad", text: "Refuse" });
        const go = (button, path) => {
          if (!reason.value.trim()) { error.textContent = "A decision needs a reason."; reason.focus(); return; }
          act(button, path, { reason: reason.value });
        };
        approve.addEventListener("click", () => go(approve, "approve"));
        refuse.addEventListener("click", () => go(refuse, "refuse"));
        box.append(el("h4", { text: "Decision" }),
          el("p", { class: "muted small", text: "Read what was found in the windows above before deciding." }),
          el("label", { for: "ev-decision-reason", text: "Reason (required, recorded with your decision)" }), reason,
          el("div", { class: "ev-buttons" }, approve, refuse));
      }
    }
    const job = req.export;
    if (this.can.has("export") && job && ["queued", "running"].includes(job.state) && !job.cancel_requested) {
      const cancel = el("button", { type: "button", id: "ev-cancel", text: "Cancel the export" });
      cancel.addEventListener("click", () => act(cancel, "cancel", {}));
      box.append(el("div", { class: "ev-buttons" }, cancel));
    }
    if (this.can.has("export") && req.state === "approved" && (!job || ["failed", "cancelled"].includes(job.state))) {
      const again = el("button", { type: "button", id: "ev-export-again", text: "Export again" });
      again.addEventListener("click", () => act(again, "export", {}));
      box.append(el("div", { class: "ev-buttons" }, again));
    }
    if (["ready", "downloaded"].includes(req.state)) {
      const make = el("button", { type: "button", id: "ev-make-link", text: "Make a one-time download link" });
      const shown = el("p", { class: "ev-link small" });
      make.addEventListener("click", async () => {
        make.disabled = true; error.textContent = "";
        try {
          const link = await api(`/api/v1/evidence/requests/${req.id}/links`, { method: "POST", body: {} });
          shown.textContent = `${location.origin}${link.url} (one download; expires ${fmtIso(link.expires_utc)})`;
        } catch (e) { error.textContent = e.message; }
        make.disabled = false;
      });
      box.append(el("div", { class: "ev-buttons" }, make), shown);
    }
    if (this.can.has("approve") && req.state !== "closed") {
      const reason = el("input", { id: "ev-close-reason", "data-keep": "close", type: "text", required: true, size: 40 });
      const review = el("input", { id: "ev-close-review", "data-keep": "review", type: "text", size: 11,
        placeholder: "DD/MM/YYYY", autocomplete: "off" });
      const closeBtn = el("button", { type: "button", id: "ev-close", text: "Close the request" });
      closeBtn.addEventListener("click", () => {
        if (!reason.value.trim()) { error.textContent = "Closing needs a reason."; reason.focus(); return; }
        const body = { reason: reason.value };
        if (review.value.trim()) {
          // Midnight is never in a clock-change hour in London, so this is no guess.
          const r = readLocal(`${review.value.trim()} 00:00:00`);
          if (r.error) { error.textContent = `Review date: ${r.error.replace(" HH:MM:SS", "")}`; review.focus(); return; }
          body.review = isoLocal(r.candidates[0]);
        }
        act(closeBtn, "close", body);
      });
      box.append(el("h4", { text: "Close" }),
        el("p", { class: "muted small", text: "Closing releases the hold on the footage and records when the request is to be reviewed." }),
        el("div", { class: "ev-close-row" },
          el("label", { for: "ev-close-reason", text: "Reason" }), reason,
          el("label", { for: "ev-close-review", text: "Review on" }), review,
          el("span", { class: "muted small", text: "(empty: a year from today)" }), closeBtn));
    }
    if (!box.childElementCount) return null;
    box.append(error);
    return box;
  }
}

function stateBadge(state, extra = "") {
  return el("span", { class: `badge ev-badge state-${state} ${extra}`.trim(), text: STATE_TEXT[state] || state });
}

function factsList(req) {
  const dl = el("dl", { class: "ev-facts" });
  const add = (k, v) => { if (v) dl.append(el("dt", { text: k }), el("dd", { text: v })); };
  for (const [key, label] of FIELD_TEXT) add(label, req[key]);
  add("Surveillance of a named person", req.directed_surveillance ? "yes: RIPA directed surveillance" : "");
  add("Submitted", fmtIso(req.submitted_utc));
  add("Footage held", req.hold_id ? (req.state === "closed" ? `hold ${req.hold_id} (released on closing)` :
    `yes: hold ${req.hold_id} keeps these windows from deletion while the request is open`) : "");
  if (req.decided_by) add(req.state === "refused" ? "Refused by" : "Decided by", `${req.decided_by}, ${fmtIso(req.decided_utc)}`);
  add(req.state === "refused" ? "Reason for refusal" : "Reason for the decision", req.decision_reason);
  if (req.closed_by) add("Closed by", `${req.closed_by}, ${fmtIso(req.closed_utc)}`);
  add("Reason for closing", req.close_reason);
  add("Review on", fmtIso(req.review_utc));
  return dl;
}

function findingsSection(req, canPlay = false) {
  const f = req.findings || {};
  const windows = f.windows || [];
  const sec = el("section", { class: "ev-findings", "aria-label": "What the windows hold" },
    el("h4", { text: "Footage in the windows" }));
  const summary = [];
  if (f.any_missing) summary.push("a window has no footage at all");
  if (f.any_gaps) summary.push("there are gaps");
  if (f.any_clock_flags) summary.push("a camera clock was off");
  sec.append(el("p", { class: summary.length ? "ev-warning" : "muted",
    text: summary.length ? `Found: ${summary.join("; ")}.` : "Every window is recorded throughout, with no clock flags." }));
  for (const w of windows) {
    const card = el("div", { class: `ev-window-finding${w.missing || w.gaps.length ? " has-gaps" : ""}` },
      el("p", { class: "ev-wf-head" }, el("strong", { text: w.camera }), w.site ? el("span", { class: "muted", text: ` ${w.site}` }) : null),
      el("p", { text: `${fmtIso(w.from_utc)} to ${fmtIso(w.to_utc)}` }),
      el("p", { class: "small", text: w.missing ? "No footage at all in this window."
        : `Recorded ${fmtSeconds(w.recorded_s)} of ${fmtSeconds(w.window_s)}: ${w.segments} segment${w.segments === 1 ? "" : "s"}, ${fmtBytes(w.bytes)}` +
          (w.recovered_segments ? `, ${w.recovered_segments} recovered after a crash` : "") }));
    // A supervisor watches the footage before deciding (playback is audited as any other).
    if (canPlay && w.camera_id != null && !w.missing) {
      card.append(el("p", { class: "small" }, el("a", { class: "ev-preview", href: `#playback/${w.camera_id}/${Date.parse(w.from_utc)}`,
        text: `Preview in playback from ${fmtIso(w.from_utc)}` })));
    }
    if (w.gaps.length) {
      card.append(el("ul", { class: "ev-gaps" }, ...w.gaps.map((g) =>
        el("li", { text: `Gap ${fmtIso(g.from_utc)} to ${fmtIso(g.to_utc)} (${fmtSeconds(g.duration_s)}): ${g.reason}` }))));
    } else if (!w.missing) card.append(el("p", { class: "small muted", text: "No gaps." }));
    const c = w.clock || {};
    const clock = c.camera_offset_s == null ? "Camera clock: not measured."
      : `Camera clock: ${c.camera_offset_s > 0 ? "+" : ""}${c.camera_offset_s.toFixed(2)} s against ours` +
        (c.camera_checked_utc ? ` (checked ${fmtIso(c.camera_checked_utc)})` : "") + (c.camera_flagged ? ", flagged." : ".");
    const segs = c.segments_flagged ? ` ${c.segments_flagged} segment${c.segments_flagged === 1 ? " was" : "s were"} recorded while the clock was flagged.` : "";
    const worst = c.max_abs_segment_offset_s != null ? ` Largest offset while recording: ${c.max_abs_segment_offset_s.toFixed(2)} s.` : "";
    card.append(el("p", { class: `small${c.camera_flagged || c.segments_flagged ? " ev-warning" : ""}`, text: clock + segs + worst }));
    sec.append(card);
  }
  return sec;
}

function exportSection(req) {
  const job = req.export;
  if (!job) return null;
  const sec = el("section", { class: "ev-export", "aria-label": "Export" }, el("h4", { text: "Export" }));
  if (["queued", "running"].includes(job.state)) {
    const bar = el("progress", { id: "ev-progress", max: 100 });
    if (job.state === "running") bar.value = job.percent; // queued: indeterminate
    const what = job.state === "queued" ? "Waiting to start" : `${job.percent.toFixed(0)}%${job.stage ? `: ${job.stage}` : ""}`;
    sec.append(el("div", { class: "ev-progress-row" }, bar, el("span", { id: "ev-progress-text", text: what })));
    if (job.cancel_requested) sec.append(el("p", { class: "muted", text: "Cancelling…" }));
  } else if (job.state === "done") {
    sec.append(el("p", { text: `Exported and verified ${fmtIso(job.finished_utc)}.` }));
  } else {
    sec.append(el("p", { class: "error", text: `The export ${job.state === "cancelled" ? "was cancelled" : "failed"}: ${job.error || "no reason given"}` }));
  }
  return sec;
}

function packageSection(req) {
  const pkg = req.package;
  if (!pkg || !["ready", "downloaded"].includes(req.state)) return null;
  const name = `${req.exhibit_reference}.zip`;
  return el("section", { class: "ev-package", "aria-label": "Package" },
    el("h4", { text: "Package" }),
    el("p", {}, el("a", { class: "button ok", id: "ev-download", href: `/api/v1/evidence/requests/${req.id}/package`, download: name, text: `Download ${name}` }),
      el("span", { class: "muted", text: ` ${fmtBytes(pkg.bytes)}` })),
    el("p", { class: "small muted", text: "Each download is recorded in the chain of custody and the disclosure register." }),
    el("dl", { class: "ev-facts" },
      el("dt", { text: "SHA-256 of manifest.json" }), el("dd", { class: "mono", id: "ev-manifest-sha", text: pkg.manifest_sha256 || "" }),
      el("dt", { text: "Chain of custody" }), el("dd", {}, el("a", { href: `/api/v1/evidence/requests/${req.id}/custody`, download: `${req.exhibit_reference}-custody.jsonl`, text: "signed log (JSON lines)" }))));
}
