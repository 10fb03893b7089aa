// Administration (#admin/<tab>): cameras, users, sites, retention and system health for
// administrators (ADMIN); holds for supervisors (HOLDS); the audit trail for both (AUDIT_READ).
// Each tab is offered only to the rights it needs; the section is built here and added to the
// page, so index.html only gains a nav button. Names are set with textContent only.

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { formatLocal } from "./time.js";
import { Errors, button, bytes, field, input, plainApi, row, table } from "./admin-kit.js";
import { CamerasPanel } from "./admin-cameras.js";
import { UsersPanel } from "./admin-users.js";
import { AuditPanel, HoldsPanel } from "./admin-records.js";

class SitesPanel {
  constructor() {
    [this.table, this.body] = table("adm-sites", ["Site", "Location", "Cameras", "Notes"], "Sites");
    this.f = { name: input("adm-site-name"), location: input("adm-site-location", { size: 30 }), notes: input("adm-site-notes", { size: 30 }) };
    this.errors = new Errors("adm-site-errors");
    this.msg = el("p", { id: "adm-sites-msg", class: "adm-msg", role: "status" });
    const form = el("form", { id: "adm-site-form", class: "adm-form", novalidate: true, "aria-labelledby": "adm-site-title" },
      el("h3", { id: "adm-site-title", text: "Add a site" }), el("p", { class: "adm-hint", text: "Fields marked * are required. Cameras are moved between sites from Cameras > Edit." }),
      this.errors.root,
      el("div", { class: "adm-fields" }, field("Name", this.f.name, { required: true }), field("Location", this.f.location), field("Notes", this.f.notes)),
      el("div", { class: "adm-actions" }, el("button", { type: "submit", id: "adm-site-save", class: "adm-primary", text: "Add site" })));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const name = this.f.name.value.trim();
      this.errors.show(name ? [] : ["Name is required"], [this.f.name]);
      if (!name) { this.f.name.setAttribute("aria-invalid", "true"); this.f.name.focus(); return; }
      try {
        await api("/api/v1/sites", { method: "POST", body: { name, location: this.f.location.value.trim(), notes: this.f.notes.value.trim() } });
      } catch (e) { this.errors.show(plainApi(e.message, { name: "Name", location: "Location", notes: "Notes" })); return; }
      for (const i of Object.values(this.f)) i.value = "";
      this.msg.textContent = `Site ${name} added.`;
      await this.load();
    });
    this.root = el("div", { class: "adm-panel", id: "adm-panel-sites" }, this.msg, this.table, form);
  }

  async load() {
    const data = await api("/api/v1/sites");
    this.body.replaceChildren(...data.sites.map((s) => row(s.name, s.location, String(s.cameras), s.notes)));
  }
}

class RetentionPanel {
  constructor() {
    this.summary = el("p", { id: "adm-retention-summary" });
    [this.table, this.body] = table("adm-retention", ["Camera", "Site", "Keep footage (days)", ""], "Retention per camera");
    this.msg = el("p", { id: "adm-retention-msg", class: "adm-msg", role: "status" });
    this.root = el("div", { class: "adm-panel", id: "adm-panel-retention" }, this.summary,
      el("p", { class: "adm-hint", text: "A camera's own period replaces the default. Footage under a hold is kept until the hold is released (supervisors place and release holds)." }),
      this.msg, this.table);
  }

  async load() {
    const [system, cams] = await Promise.all([api("/api/v1/system"), api("/api/v1/cameras")]);
    const r = system.retention;
    this.summary.textContent = `Default: footage is kept ${r.default_days} days. When free space falls below ${bytes(r.free_space_floor_bytes)}, the oldest footage not under a hold is deleted early. (Both are set in the service's settings file.)`;
    this.body.replaceChildren(...cams.cameras.map((c) => {
      const days = el("input", { id: `adm-ret-${c.id}`, size: 5, inputmode: "numeric", value: c.retention_days ?? "", placeholder: String(r.default_days), "aria-label": `Keep footage of ${c.name} (days)` });
      const error = el("span", { class: "error", id: `adm-ret-${c.id}-error`, role: "alert" });
      const save = button("Save", { "aria-label": `Save retention of ${c.name}` });
      save.addEventListener("click", async () => {
        const v = days.value.trim();
        if (v && !(/^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 3650)) { error.textContent = `Keep footage (days) of ${c.name} must be a whole number from 1 to 3650, or empty for the default`; days.setAttribute("aria-invalid", "true"); return; }
        error.textContent = "";
        days.removeAttribute("aria-invalid");
        try {
          await api(`/api/v1/cameras/${c.id}`, { method: "PATCH", body: { retention_days: v ? Number(v) : null } });
          this.msg.textContent = `${c.name}: footage kept ${v ? `${v} days` : `the default ${r.default_days} days`}.`;
        } catch (e) { error.textContent = plainApi(e.message, { retention_days: "Keep footage (days)" }).join(" "); }
      });
      return row(c.name, c.site || "(no site)", el("td", {}, days, error), el("td", {}, save));
    }));
  }
}

class SystemPanel {
  constructor() {
    this.database = el("dl", { id: "adm-database", class: "hh-coverage" });
    [this.disks, this.disksBody] = table("adm-disks", ["Disk", "Path", "Size", "Used", "Free", "Purge below", "Status"], "Disks");
    [this.recorders, this.recordersBody] = table("adm-recorders", ["Camera", "Site", "Recorder", "State", "Last footage", "Problem"], "Recorders");
    [this.nodes, this.nodesBody] = table("adm-nodes", ["Node", "Roles", "State", "Cameras recorded", "ANPR cameras", "Host", "Last heartbeat"], "Nodes");
    this.single = el("p", { id: "adm-nodes-single", class: "adm-hint", text: "One machine: this service is not part of a cluster (cluster.enabled is off)." });
    this.notes = el("ul", { id: "adm-system-notes", class: "adm-notes" });
    this.checked = el("p", { id: "adm-system-checked", class: "adm-hint" });
    const refresh = button("Check again", { id: "adm-system-refresh" });
    refresh.addEventListener("click", () => this.load());
    this.root = el("div", { class: "adm-panel", id: "adm-panel-system" }, el("div", { class: "adm-toolbar" }, refresh, this.checked),
      this.notes, el("h3", { text: "Database" }), this.database, this.disks, this.nodes, this.single, this.recorders);
  }

  async load() {
    const s = await api("/api/v1/system");
    this.checked.textContent = `Checked ${formatLocal(Date.now())}`;
    const d = s.database;
    const pairs = d.ok ? [["State", "answering"], ["Kind", d.dialect], ["Schema version", d.schema || "-"], ["Answered in", `${d.answer_ms} ms`]]
      : [["State", d.problem]];
    this.database.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v, class: !d.ok ? "error" : "" })]));
    this.disksBody.replaceChildren(...s.disks.map((k) => row(k.name, k.path, bytes(k.total_bytes), bytes(k.used_bytes), bytes(k.free_bytes), bytes(k.floor_bytes),
      el("td", { class: k.low ? "error" : "ok-text", text: k.problem || (k.low ? "LOW: the oldest footage is being purged" : "enough space") }))));
    this.recordersBody.replaceChildren(...s.recorders.map((r) => {
      const recorder = !r.enabled ? "camera disabled" : !r.recording ? "recording off" : r.running ? "running" : s.recording_supervised ? "not running" : "recording not started in this service";
      return row(r.camera, r.site || "", recorder, r.state, r.last_segment ? formatLocal(Date.parse(r.last_segment)) : "never",
        el("td", { class: r.enabled && r.problem ? "error" : "", text: r.enabled ? r.problem || r.state_reason || "" : "" }));
    }));
    const nodeState = { running: "running", lost: "LOST: no heartbeat (its cameras move to other nodes)", stopped: "stopped" };
    this.nodes.hidden = !s.nodes.length;
    this.single.hidden = !!s.nodes.length;
    this.nodesBody.replaceChildren(...s.nodes.map((n) => row(n.id, n.roles.join(", "),
      el("td", { class: n.state === "lost" ? "error" : n.state === "running" ? "ok-text" : "", text: nodeState[n.state] || n.state }),
      `${n.cameras} of ${n.capacity}`, `${n.anpr_cameras} of ${n.anpr_capacity}`, n.host,
      `${formatLocal(Date.parse(n.last_heartbeat))} (${n.heartbeat_s_ago} s ago)`)));
    this.notes.replaceChildren(...s.notes.map((n) => el("li", { class: "error", text: `${n.component}: ${n.reason}` })));
  }
}

const TABS = [
  ["cameras", "Cameras", "admin", CamerasPanel],
  ["users", "Users", "admin", UsersPanel],
  ["sites", "Sites", "admin", SitesPanel],
  ["retention", "Retention", "admin", RetentionPanel],
  ["holds", "Holds", "holds", HoldsPanel],
  ["audit", "Audit trail", "audit_read", AuditPanel],
  ["system", "System", "admin", SystemPanel],
];

/** Whether a role with these rights has any administration screen. */
export const hasAdmin = (can) => TABS.some(([, , right]) => can.has(right));

export class AdminView {
  constructor(can) {
    this.tabs = TABS.filter(([, , right]) => can.has(right));
    this.panels = {};
    this.links = {};
    const nav = el("nav", { class: "adm-tabs", "aria-label": "Administration" });
    for (const [name, label, , Panel] of this.tabs) {
      this.panels[name] = new Panel(this);
      this.panels[name].root.hidden = true;
      this.links[name] = el("a", { href: `#admin/${name}`, id: `adm-tab-${name}`, class: "button", text: label });
      nav.append(this.links[name]);
    }
    this.title = el("h2", { id: "adm-title", text: "Administration" });
    this.msg = el("p", { id: "adm-msg", class: "error", role: "alert" });
    this.root = el("section", { id: "view-admin", class: "view adm", "aria-labelledby": "adm-title", hidden: true },
      el("div", { class: "adm-head" }, this.title, nav), this.msg, ...Object.values(this.panels).map((p) => p.root));
    $("main").append(this.root);
  }

  get first() { return this.tabs[0]?.[0]; }

  async open(tab) {
    const name = this.panels[tab] ? tab : this.first;
    if (name !== tab) { history.replaceState(null, "", `#admin/${name}`); }
    for (const [k, p] of Object.entries(this.panels)) p.root.hidden = k !== name;
    for (const [k, a] of Object.entries(this.links)) { if (k === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current"); }
    this.title.textContent = `Administration: ${this.tabs.find((t) => t[0] === name)[1]}`;
    this.msg.textContent = "";
    try { await this.panels[name].load(); } catch (e) { this.msg.textContent = `This screen could not be read: ${e.message}`; }
  }

  close() { /* nothing runs in the background */ }
}
