// Administration > Holds (supervisors: HOLDS) and > Audit trail (AUDIT_READ). A hold keeps
// footage past retention: placed with a reason and a review date, released when no longer
// needed (confirmed: the footage then goes when its retention ends). The audit trail is read
// with filters (newest first) and its chain verified on demand; every read is itself audited.

import { api } from "./api.js";
import { el } from "./dom.js";
import { formatLocal, localParts } from "./time.js";
import { Errors, button, check, confirmAction, field, input, plainApi, readTime, row, table } from "./admin-kit.js";

const HOLD_LABELS = { reason: "Reason", reference: "Reference", review: "Review on", from: "From", to: "To", cameras: "Cameras" };
const when = (iso) => (iso ? formatLocal(Date.parse(iso)) : "");
const DAY_MS = 864e5;
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
/** A time as it is typed in the forms: "31/12/2026 21:35" (London). */
const typed = (ms) => { const p = localParts(ms); return `${p.dateGB} ${p.time.slice(0, 5)}`; };

export class HoldsPanel {
  constructor(admin) {
    this.admin = admin;
    [this.table, this.body] = table("adm-holds", ["Hold", "Reason", "Reference", "Cameras", "From", "To", "Review on", "Placed by", ""], "Holds");
    const [all, allLabel] = check("adm-holds-all", "Show released holds");
    this.all = all;
    all.addEventListener("change", () => this.load());
    const add = button("Place a hold", { id: "adm-hold-new" });
    add.addEventListener("click", () => this.place());
    this.formBox = el("div", { id: "adm-hold-form-box" });
    this.msg = el("p", { id: "adm-holds-msg", class: "adm-msg", role: "status" });
    this.root = el("div", { class: "adm-panel", id: "adm-panel-holds" },
      el("p", { class: "adm-hint", text: "A hold keeps footage past its retention period (for an investigation or a request) until it is released." }),
      el("div", { class: "adm-toolbar" }, add, el("span", {}, all, allLabel)), this.msg, this.formBox, this.table);
  }

  async load() {
    const [holds, cams] = await Promise.all([api(`/api/v1/holds${this.all.checked ? "?all=1" : ""}`), api("/api/v1/cameras")]);
    this.cameras = cams.cameras;
    this.body.replaceChildren(...holds.holds.map((h) => {
      const cameras = h.windows.map((w) => w.camera || "every camera").join(", ");
      const first = h.windows[0] || {};
      let action;
      if (h.released) action = el("td", { text: `released ${when(h.released)} by ${h.released_by}` });
      else {
        const release = button("Release", { class: "adm-release adm-danger", "aria-label": `Release hold ${h.id}` });
        release.addEventListener("click", () => this.release(h));
        action = el("td", {}, release);
      }
      return row(String(h.id), h.reason, h.reference, cameras, when(first.from), when(first.to), when(h.review), h.owner, action);
    }));
  }

  async release(h) {
    const ok = await confirmAction(`Release hold ${h.id} (${h.reason})? Its footage is then deleted when its retention period ends.`, "Release hold");
    if (!ok) return;
    try {
      await api(`/api/v1/holds/${h.id}/release`, { method: "POST", body: {} });
      this.msg.textContent = `Hold ${h.id} released.`;
    } catch (e) { this.msg.textContent = `Hold ${h.id} was not released: ${e.message}`; }
    await this.load();
  }

  async place() {
    if (!this.cameras) await this.load(); // asked for before the screen was read
    const now = Date.now();
    const f = {
      from: input("adm-hold-from", { value: typed(now - DAY_MS), size: 18, class: "mono" }),
      to: input("adm-hold-to", { value: typed(now), size: 18, class: "mono" }),
      review: input("adm-hold-review", { value: typed(now + 30 * DAY_MS), size: 18, class: "mono" }),
      reason: input("adm-hold-reason", { size: 40 }),
      reference: input("adm-hold-reference"),
    };
    const cams = el("fieldset", { id: "adm-hold-cameras", class: "adm-ticks" }, el("legend", {}, "Cameras", el("span", { class: "adm-req", "aria-hidden": "true", text: " *" })),
      ...this.cameras.map((c) => { const [box, label] = check(`adm-hold-cam-${c.id}`, c.name); box.value = c.id; return el("span", { class: "adm-tick" }, box, label); }));
    const errors = new Errors("adm-hold-errors");
    const save = el("button", { type: "submit", id: "adm-hold-save", class: "adm-primary", text: "Place hold" });
    const cancel = button("Cancel", { id: "adm-hold-cancel" });
    cancel.addEventListener("click", () => this.formBox.replaceChildren());
    const form = el("form", { id: "adm-hold-form", class: "adm-form", novalidate: true, "aria-labelledby": "adm-hold-title" },
      el("h3", { id: "adm-hold-title", text: "Place a hold" }),
      el("p", { class: "adm-hint", text: "Fields marked * are required. Times are London local time, DD/MM/YYYY HH:MM." }),
      errors.root, cams,
      el("div", { class: "adm-fields" },
        field("From", f.from, { required: true }), field("To", f.to, { required: true }),
        field("Reason", f.reason, { required: true, hint: "why the footage must be kept" }),
        field("Reference", f.reference, { hint: "crime or request reference, if any" }),
        field("Review on", f.review, { required: true, hint: "when someone must decide whether it is still needed" })),
      el("div", { class: "adm-actions" }, save, cancel));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const problems = [];
      const bad = [];
      const ids = [...cams.querySelectorAll("input:checked")].map((b) => Number(b.value));
      if (!ids.length) problems.push("Cameras: tick at least one camera");
      const times = {};
      for (const [key, label] of [["from", "From"], ["to", "To"], ["review", "Review on"]]) {
        const t = readTime(label, f[key].value);
        if (t.error) { problems.push(t.error); bad.push(f[key]); } else times[key] = t.ms;
      }
      if (times.from !== undefined && times.to !== undefined && times.to <= times.from) { problems.push("To must be after From"); bad.push(f.to); }
      if (times.review !== undefined && times.review <= Date.now()) { problems.push("Review on must be in the future"); bad.push(f.review); }
      if (!f.reason.value.trim()) { problems.push("Reason is required"); bad.push(f.reason); }
      errors.show(problems, Object.values(f));
      for (const b of bad) b.setAttribute("aria-invalid", "true");
      if (problems.length) { (bad[0] || cams.querySelector("input"))?.focus(); return; }
      const body = { cameras: ids, from: new Date(times.from).toISOString(), to: new Date(times.to).toISOString(),
                     review: new Date(times.review).toISOString(), reason: f.reason.value.trim() };
      if (f.reference.value.trim()) body.reference = f.reference.value.trim();
      try {
        const hold = await api("/api/v1/holds", { method: "POST", body });
        this.msg.textContent = `Hold ${hold.id} placed.`;
      } catch (e) { errors.show(plainApi(e.message, HOLD_LABELS)); return; }
      this.formBox.replaceChildren();
      await this.load();
    });
    this.formBox.replaceChildren(form);
    f.reason.focus();
  }
}

export class AuditPanel {
  constructor(admin) {
    this.admin = admin;
    this.f = {
      from: input("adm-audit-from", { size: 18, class: "mono", placeholder: "DD/MM/YYYY HH:MM" }),
      to: input("adm-audit-to", { size: 18, class: "mono", placeholder: "DD/MM/YYYY HH:MM" }),
      action: input("adm-audit-action", { size: 18, placeholder: "e.g. camera.update" }),
      actor: input("adm-audit-actor", { size: 14 }),
    };
    this.errors = new Errors("adm-audit-errors");
    const show = el("button", { type: "submit", id: "adm-audit-show", class: "adm-primary", text: "Show" });
    const form = el("form", { id: "adm-audit-form", class: "adm-form adm-inline", novalidate: true, "aria-label": "Filter the audit trail" },
      field("From", this.f.from), field("To", this.f.to), field("Action", this.f.action), field("Who", this.f.actor),
      el("div", { class: "adm-actions" }, show));
    form.addEventListener("submit", (ev) => { ev.preventDefault(); this.load(); });
    const verify = button("Verify the chain", { id: "adm-audit-verify" });
    verify.addEventListener("click", () => this.verify());
    this.verdict = el("p", { id: "adm-audit-verdict", class: "adm-verdict", role: "status" });
    this.count = el("p", { id: "adm-audit-count", class: "adm-hint" });
    [this.table, this.body] = table("adm-audit", ["#", "Time", "Who", "Action", "Target", "Details"], "Audit trail, newest first");
    this.root = el("div", { class: "adm-panel", id: "adm-panel-audit" }, this.errors.root, form,
      el("div", { class: "adm-toolbar" }, verify), this.verdict, this.count, this.table);
  }

  async load() {
    const problems = [];
    const params = new URLSearchParams({ newest: "1", limit: "200" });
    for (const [key, label] of [["from", "From"], ["to", "To"]]) {
      const t = readTime(label, this.f[key].value, { required: false });
      if (t.error) problems.push(t.error);
      else if (t.ms !== null) params.set(key, new Date(t.ms).toISOString());
    }
    for (const key of ["action", "actor"]) if (this.f[key].value.trim()) params.set(key, this.f[key].value.trim());
    this.errors.show(problems);
    if (problems.length) return;
    try {
      const data = await api(`/api/v1/audit?${params}`);
      this.count.textContent = data.entries.length >= 200 ? "The newest 200 entries; narrow the filter to see older ones." : (data.entries.length === 1 ? "1 entry." : `${data.entries.length} entries.`);
      this.body.replaceChildren(...data.entries.map((e) => row(String(e.seq), formatLocal(e.at_us / 1000), e.actor, e.action, e.target,
        el("td", { class: "adm-details mono", text: Object.entries(e.details).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ") }))));
    } catch (e) { this.errors.show(plainApi(e.message, { from: "From", to: "To", action: "Action", actor: "Who" })); }
  }

  async verify() {
    this.verdict.textContent = "Verifying...";
    this.verdict.className = "adm-verdict";
    try {
      const r = await api("/api/v1/audit/verify");
      if (r.ok) {
        this.verdict.textContent = `Chain intact: ${plural(r.entries, "entry", "entries")} checked, ${plural(r.anchors_checked, "signed anchor", "signed anchors")}, ${plural(r.digests_checked, "digest", "digests")}.`;
        this.verdict.classList.add("ok");
      } else {
        this.verdict.textContent = `Chain broken${r.first_bad_seq ? ` at entry ${r.first_bad_seq}` : ""}: ${r.problems.join("; ")}`;
        this.verdict.classList.add("bad");
      }
    } catch (e) { this.verdict.textContent = `Could not verify: ${e.message}`; this.verdict.classList.add("bad"); }
  }
}
