// Administration > Users: accounts, their role (which decides their rights), the sites and
// cameras a user is limited to ("narrowing": none ticked means every camera), disabling
// (confirmed: it ends their sessions), unlocking, a new password. Administrators only.

import { api } from "./api.js";
import { el } from "./dom.js";
import { formatLocal } from "./time.js";
import { Errors, button, check, confirmAction, field, input, plainApi, row, select, table } from "./admin-kit.js";

const ROLES = [
  ["operator", "Operator: live view, PTZ, playback, ANPR, incidents"],
  ["supervisor", "Supervisor: an operator's rights, and decides disclosures, holds, rota, audit trail"],
  ["police", "Police: requests footage and downloads approved packages"],
  ["administrator", "Administrator: cameras, users, sites, audit trail; no live view"],
];
const LABELS = { username: "User name", role: "Role", password: "Password", site_ids: "Sites", camera_ids: "Cameras" };

export class UsersPanel {
  constructor(admin) {
    this.admin = admin;
    [this.table, this.body] = table("adm-users", ["User name", "Role", "Limited to", "State", "Last sign-in", ""], "Users");
    const add = button("Add a user", { id: "adm-user-new" });
    add.addEventListener("click", () => this.edit(null));
    this.formBox = el("div", { id: "adm-user-form-box" });
    this.msg = el("p", { id: "adm-users-msg", class: "adm-msg", role: "status" });
    this.root = el("div", { class: "adm-panel", id: "adm-panel-users" }, el("div", { class: "adm-toolbar" }, add), this.msg, this.formBox, this.table);
  }

  async load() {
    const [users, sites, cams] = await Promise.all([api("/api/v1/users"), api("/api/v1/sites"), api("/api/v1/cameras")]);
    this.sites = sites.sites;
    this.cameras = cams.cameras;
    this.body.replaceChildren(...users.users.map((u) => this.userRow(u)));
  }

  scopeText(u) {
    const siteNames = u.site_ids.map((id) => this.sites.find((s) => s.id === id)?.name ?? `site ${id}`);
    const camNames = u.camera_ids.map((id) => this.cameras.find((c) => c.id === id)?.name ?? `camera ${id}`);
    if (!siteNames.length && !camNames.length) return "every camera";
    return [siteNames.length ? `sites: ${siteNames.join(", ")}` : "", camNames.length ? `cameras: ${camNames.join(", ")}` : ""].filter(Boolean).join("; ");
  }

  userRow(u) {
    const locked = u.locked_until && Date.parse(u.locked_until) > Date.now();
    const state = u.disabled ? "disabled" : locked ? `locked until ${formatLocal(Date.parse(u.locked_until))}` : u.must_change_password ? "must change password" : "active";
    const edit = button("Edit", { class: "adm-edit", "aria-label": `Edit ${u.username}` });
    edit.addEventListener("click", () => this.edit(u));
    const toggle = button(u.disabled ? "Enable" : "Disable", { class: u.disabled ? "adm-enable" : "adm-disable adm-danger", "aria-label": `${u.disabled ? "Enable" : "Disable"} ${u.username}` });
    toggle.addEventListener("click", () => this.setDisabled(u, !u.disabled));
    return row(u.username, u.role, this.scopeText(u), state, u.last_login ? formatLocal(Date.parse(u.last_login)) : "never",
      el("td", { class: "adm-actions" }, edit, toggle));
  }

  async setDisabled(u, disabled) {
    if (disabled && !(await confirmAction(`Disable ${u.username}? They are signed out at once and their API tokens stop working.`, "Disable user"))) return;
    try {
      await api(`/api/v1/users/${encodeURIComponent(u.username)}`, { method: "PATCH", body: { disabled } });
      this.msg.textContent = `${u.username} ${disabled ? "disabled" : "enabled"}.`;
    } catch (e) { this.msg.textContent = `${u.username} was not changed: ${plainApi(e.message, LABELS).join(" ")}`; }
    await this.load();
  }

  /** Tick boxes, one per item, in a fieldset named ``legend``. */
  ticks(id, legend, items, chosen) {
    const boxes = items.map((it) => {
      const [box, label] = check(`${id}-${it.id}`, it.label, chosen.includes(it.id));
      box.value = it.id;
      return el("span", { class: "adm-tick" }, box, label);
    });
    return el("fieldset", { id, class: "adm-ticks" }, el("legend", { text: legend }),
      ...(boxes.length ? boxes : [el("span", { class: "adm-hint", text: "none yet" })]));
  }

  async edit(u) {
    if (!this.sites) await this.load(); // asked for before the screen was read
    const isNew = !u;
    const f = {
      username: input("adm-user-name", { value: u ? u.username : "", readonly: !isNew }),
      role: select("adm-user-role", ROLES, u ? u.role : "operator"),
      password: input("adm-user-password", { type: "password", autocomplete: "new-password" }),
    };
    const sites = this.ticks("adm-user-sites", "Limited to these sites", this.sites.map((s) => ({ id: s.id, label: s.name })), u ? u.site_ids : []);
    const cams = this.ticks("adm-user-cameras", "and these cameras", this.cameras.map((c) => ({ id: c.id, label: `${c.name}${c.site ? ` (${c.site})` : ""}` })), u ? u.camera_ids : []);
    const [unlock, unlockLabel] = check("adm-user-unlock", "Unlock (after failed sign-ins)");
    const [totp, totpLabel] = check("adm-user-totp", "Reset two-step sign-in");
    const errors = new Errors("adm-user-errors");
    const save = el("button", { type: "submit", id: "adm-user-save", class: "adm-primary", text: isNew ? "Add user" : "Save changes" });
    const cancel = button("Cancel", { id: "adm-user-cancel" });
    cancel.addEventListener("click", () => this.formBox.replaceChildren());
    const form = el("form", { id: "adm-user-form", class: "adm-form", novalidate: true, "aria-labelledby": "adm-user-title" },
      el("h3", { id: "adm-user-title", text: isNew ? "Add a user" : `Edit ${u.username}` }),
      el("p", { class: "adm-hint", text: "Fields marked * are required. A user limited to nothing sees every camera; limited to sites or cameras, they see those only (their role still decides what they may do)." }),
      errors.root,
      el("div", { class: "adm-fields" },
        field("User name", f.username, { required: isNew }),
        field("Role", f.role, { required: true }),
        field(isNew ? "Password" : "New password", f.password, { required: isNew, hint: isNew ? "they must change it at first sign-in" : "empty: unchanged; they must change it at next sign-in" })),
      sites, cams,
      isNew ? null : el("div", { class: "adm-field" }, el("span", {}, unlock, unlockLabel), el("span", {}, totp, totpLabel)),
      el("div", { class: "adm-actions" }, save, cancel));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const problems = [];
      const bad = [];
      if (isNew && !f.username.value.trim()) { problems.push("User name is required"); bad.push(f.username); }
      if (isNew && /\s/.test(f.username.value.trim())) { problems.push("User name must not contain spaces"); bad.push(f.username); }
      if (isNew && !f.password.value) { problems.push("Password is required"); bad.push(f.password); }
      errors.show(problems, Object.values(f));
      for (const b of bad) b.setAttribute("aria-invalid", "true");
      if (problems.length) { bad[0].focus(); return; }
      const siteIds = [...sites.querySelectorAll("input:checked")].map((b) => Number(b.value));
      const camIds = [...cams.querySelectorAll("input:checked")].map((b) => Number(b.value));
      try {
        if (isNew) {
          await api("/api/v1/users", { method: "POST", body: { username: f.username.value.trim(), role: f.role.value, password: f.password.value, site_ids: siteIds, camera_ids: camIds } });
        } else {
          const body = {};
          if (f.role.value !== u.role) body.role = f.role.value;
          if (siteIds.join() !== u.site_ids.join() || camIds.join() !== u.camera_ids.join()) { body.site_ids = siteIds; body.camera_ids = camIds; }
          if (f.password.value) body.password = f.password.value;
          if (unlock.checked) body.unlock = true;
          if (totp.checked) body.reset_totp = true;
          if (!Object.keys(body).length) { this.formBox.replaceChildren(); return; }
          await api(`/api/v1/users/${encodeURIComponent(u.username)}`, { method: "PATCH", body });
        }
      } catch (e) {
        errors.show(plainApi(e.message, LABELS));
        return;
      }
      this.formBox.replaceChildren();
      this.msg.textContent = isNew ? `User ${f.username.value.trim()} added.` : `${u.username} saved.`;
      await this.load();
    });
    this.formBox.replaceChildren(form);
    (isNew ? f.username : f.role).focus();
  }
}
