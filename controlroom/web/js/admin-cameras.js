// Administration > Cameras: the inventory with state, add and edit a camera (moving it to a site
// is editing its site), disable or enable it (confirmed), and adopt a camera found by ONVIF
// discovery. Administrators only (the ADMIN right).

import { api } from "./api.js";
import { el } from "./dom.js";
import { formatLocal } from "./time.js";
import { Errors, button, check, confirmAction, field, input, plainApi, row, select, table } from "./admin-kit.js";
import { MaskEditor } from "./admin-masks.js";

const LABELS = {
  name: "Name", site: "Site", position: "Position", kind: "Kind", main_url: "Main stream URL", sub_url: "Sub-stream URL",
  snapshot_url: "Snapshot URL", onvif_xaddr: "ONVIF address", username: "Camera user name", password: "Camera password",
  retention_days: "Keep footage (days)", notes: "Notes", recording: "Record", xaddr: "Device address", targets: "Addresses to probe",
};
const KINDS = [["fixed", "Fixed"], ["ptz", "PTZ"], ["anpr", "ANPR"]];

/** Problems with a stream URL in plain words, or "". */
function urlProblem(label, value, required) {
  const v = value.trim();
  if (!v) return required ? `${label} is required` : "";
  let u;
  try { u = new URL(v); } catch (e) { return `${label} is not a URL (it starts rtsp:// or http://)`; }
  if (!["rtsp:", "rtsps:", "http:", "https:"].includes(u.protocol)) return `${label} must start rtsp://, rtsps://, http:// or https://`;
  if (u.username || u.password) return `${label} must not contain a user name or password: use the camera user name and password fields`;
  return "";
}

export class CamerasPanel {
  constructor(admin) {
    this.admin = admin;
    this.cameras = [];
    [this.table, this.body] = table("adm-cameras", ["Name", "Site", "Kind", "State", "Recording", "Keep (days)", "Last footage", ""], "Cameras");
    this.addButton = button("Add a camera", { id: "adm-camera-new" });
    this.addButton.addEventListener("click", () => this.edit(null));
    this.discoverButton = button("Find cameras on the network", { id: "adm-discover-open" });
    this.discoverButton.addEventListener("click", () => this.openDiscovery());
    this.formBox = el("div", { id: "adm-camera-form-box" });
    this.discoverBox = el("div", { id: "adm-discover-box" });
    this.msg = el("p", { id: "adm-cameras-msg", class: "adm-msg", role: "status" });
    this.root = el("div", { class: "adm-panel", id: "adm-panel-cameras" },
      el("div", { class: "adm-toolbar" }, this.addButton, this.discoverButton), this.msg, this.formBox, this.discoverBox, this.table);
  }

  async load() {
    const [cams, sites] = await Promise.all([api("/api/v1/cameras"), api("/api/v1/sites")]);
    this.cameras = cams.cameras;
    this.sites = sites.sites;
    this.body.replaceChildren(...this.cameras.map((c) => this.cameraRow(c)));
  }

  cameraRow(c) {
    const edit = button("Edit", { class: "adm-edit", "aria-label": `Edit ${c.name}` });
    edit.addEventListener("click", () => this.edit(c));
    const toggle = button(c.enabled ? "Disable" : "Enable", { class: c.enabled ? "adm-disable adm-danger" : "adm-enable", "aria-label": `${c.enabled ? "Disable" : "Enable"} ${c.name}` });
    toggle.addEventListener("click", () => this.setEnabled(c, !c.enabled));
    const masks = button("Masks", { class: "adm-masks", "aria-label": `Privacy masks of ${c.name}` });
    masks.addEventListener("click", () => this.editMasks(c));
    const shown = c.enabled ? c.state : "disabled";
    const state = el("span", { class: `badge ${shown}`, text: shown });
    const stateCell = el("td", {}, state, c.state_reason && c.enabled ? el("span", { class: "adm-hint", text: ` ${c.state_reason}` }) : null);
    return row(c.name, c.site || "(no site)", c.kind, stateCell, c.recording ? "yes" : "no",
      c.retention_days ? String(c.retention_days) : "default", c.last_segment ? formatLocal(Date.parse(c.last_segment)) : "never",
      el("td", { class: "adm-actions" }, edit, masks, toggle));
  }

  /** The privacy mask editor (admin-masks.js) in the form's place. */
  async editMasks(c) {
    const editor = new MaskEditor(c, (message) => {
      this.formBox.replaceChildren();
      if (message) this.msg.textContent = message;
    });
    this.formBox.replaceChildren(editor.root);
    try { await editor.open(); } catch (e) { editor.msg.textContent = `The masks could not be read: ${e.message}`; }
  }

  async setEnabled(c, enabled) {
    if (!enabled) {
      const ok = await confirmAction(`Disable camera ${c.name}? It stops recording and live view; footage already recorded is kept until its retention ends.`, "Disable camera");
      if (!ok) return;
    }
    try {
      await api(`/api/v1/cameras/${c.id}`, { method: "PATCH", body: { enabled } });
      this.msg.textContent = `Camera ${c.name} ${enabled ? "enabled" : "disabled"}.`;
    } catch (e) { this.msg.textContent = `Camera ${c.name} was not changed: ${e.message}`; }
    await this.load();
  }

  /** The add or edit form (``cam`` null: a new camera). */
  edit(cam) {
    const isNew = !cam;
    const v = (k) => (cam && cam[k] !== null && cam[k] !== undefined ? String(cam[k]) : "");
    const f = {
      name: input("adm-cam-name", { value: v("name") }),
      site: input("adm-cam-site", { value: v("site"), list: "adm-site-names" }),
      position: input("adm-cam-position", { value: v("position") }),
      kind: select("adm-cam-kind", KINDS, v("kind") || "fixed"),
      main_url: input("adm-cam-main", { value: v("main_url"), class: "mono", size: 48 }),
      sub_url: input("adm-cam-sub", { value: v("sub_url"), class: "mono", size: 48 }),
      username: input("adm-cam-user", { value: v("username") }),
      password: input("adm-cam-password", { type: "password", autocomplete: "new-password" }),
      retention_days: input("adm-cam-retention", { value: v("retention_days"), inputmode: "numeric", size: 5 }),
      notes: input("adm-cam-notes", { value: v("notes") }),
    };
    const [recording, recordingLabel] = check("adm-cam-recording", "Record this camera", cam ? cam.recording : true);
    const sites = el("datalist", { id: "adm-site-names" }, ...(this.sites || []).map((s) => el("option", { value: s.name })));
    const errors = new Errors("adm-cam-errors");
    const save = el("button", { type: "submit", id: "adm-cam-save", class: "adm-primary", text: isNew ? "Add camera" : "Save changes" });
    const cancel = button("Cancel", { id: "adm-cam-cancel" });
    const form = el("form", { id: "adm-camera-form", class: "adm-form", novalidate: true, "aria-labelledby": "adm-cam-title" },
      el("h3", { id: "adm-cam-title", text: isNew ? "Add a camera" : `Edit camera ${cam.name}` }),
      el("p", { class: "adm-hint", text: "Fields marked * are required." }),
      errors.root,
      el("div", { class: "adm-fields" },
        field("Name", f.name, { required: true }),
        field("Site", f.site, { hint: "type a new name to create a site; moving a camera is changing this" }),
        field("Position", f.position),
        field("Kind", f.kind),
        field("Main stream URL", f.main_url, { required: isNew, hint: "rtsp://address/path, without user name or password" }),
        field("Sub-stream URL", f.sub_url, { hint: "optional; the grid tiles use it" }),
        field("Camera user name", f.username),
        field("Camera password", f.password, { hint: isNew ? "" : "leave empty to keep the stored one" }),
        field("Keep footage (days)", f.retention_days, { hint: "empty: the service's default" }),
        field("Notes", f.notes),
        el("div", { class: "adm-field" }, el("span", {}, recording, recordingLabel))),
      sites, el("div", { class: "adm-actions" }, save, cancel));
    cancel.addEventListener("click", () => this.formBox.replaceChildren());
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const problems = [];
      const bad = [];
      const need = (key, ok, message) => { if (!ok) { problems.push(message); bad.push(f[key]); } };
      need("name", f.name.value.trim(), "Name is required");
      for (const [key, required] of [["main_url", isNew], ["sub_url", false]]) {
        const p = urlProblem(LABELS[key], f[key].value, required);
        need(key, !p, p);
      }
      const days = f.retention_days.value.trim();
      need("retention_days", !days || (/^\d+$/.test(days) && Number(days) >= 1 && Number(days) <= 3650),
        "Keep footage (days) must be a whole number from 1 to 3650, or empty for the default");
      errors.show(problems, Object.values(f));
      for (const b of bad) b.setAttribute("aria-invalid", "true");
      if (problems.length) { bad[0].focus(); return; }
      const body = {};
      for (const key of ["name", "position", "kind", "main_url", "sub_url", "username", "notes"]) {
        const value = f[key].value.trim();
        if (isNew ? value : value !== v(key)) body[key] = value;
      }
      const site = f.site.value.trim();
      if (isNew ? site : site !== v("site")) body.site = site || null;
      if (f.password.value) body.password = f.password.value;
      const retention = days ? Number(days) : null;
      if (isNew ? retention : String(retention ?? "") !== v("retention_days")) body.retention_days = retention;
      if (isNew || recording.checked !== cam.recording) body.recording = recording.checked;
      try {
        if (isNew) await api("/api/v1/cameras", { method: "POST", body });
        else if (Object.keys(body).length) await api(`/api/v1/cameras/${cam.id}`, { method: "PATCH", body });
      } catch (e) {
        errors.show(plainApi(e.message, LABELS));
        return;
      }
      this.formBox.replaceChildren();
      this.msg.textContent = isNew ? `Camera ${body.name} added.` : `Camera ${f.name.value.trim()} saved.`;
      await this.load();
    });
    this.formBox.replaceChildren(form);
    f.name.focus();
  }

  openDiscovery() {
    const targets = input("adm-discover-targets", { class: "mono", size: 40, placeholder: "192.0.2.10, 192.0.2.11:8080" });
    const errors = new Errors("adm-discover-errors");
    const go = el("button", { type: "submit", id: "adm-discover-go", class: "adm-primary", text: "Search" });
    const close = button("Close", { id: "adm-discover-close" });
    close.addEventListener("click", () => this.discoverBox.replaceChildren());
    const [devices, devicesBody] = table("adm-devices", ["Device", "Hardware", "Address", ""], "Cameras found");
    const status = el("p", { id: "adm-discover-status", class: "adm-msg", role: "status" });
    const form = el("form", { id: "adm-discover-form", class: "adm-form", novalidate: true, "aria-labelledby": "adm-discover-title" },
      el("h3", { id: "adm-discover-title", text: "Find cameras (ONVIF)" }),
      el("p", { class: "adm-hint", text: "Probe the addresses given, and list the cameras that announced themselves. Leave empty to search the configured network interfaces only." }),
      errors.root, field("Addresses to probe", targets, { hint: "host or host:port, separated by commas" }),
      el("div", { class: "adm-actions" }, go, close), status, devices, el("div", { id: "adm-adopt-box" }));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      errors.clear();
      const list = targets.value.split(/[\s,]+/).filter(Boolean);
      const bad = list.filter((t) => !/^[A-Za-z0-9.\-:[\]]+$/.test(t));
      if (bad.length) { errors.show([`Addresses to probe: ${bad.join(", ")} is not a host or host:port`]); return; }
      status.textContent = "Searching...";
      try {
        const found = await api("/api/v1/discover", { method: "POST", body: { targets: list, timeout_s: 3 } });
        status.textContent = found.devices.length ? `${found.devices.length} found.` : "No camera answered.";
        devicesBody.replaceChildren(...found.devices.map((d) => {
          const xaddr = (d.xaddrs || [])[0] || "";
          const cell = d.adopted ? el("td", { text: `adopted as ${d.camera}` }) : el("td", {});
          if (!d.adopted) {
            const adopt = button("Adopt", { class: "adm-adopt", "aria-label": `Adopt ${d.name || xaddr}` });
            adopt.addEventListener("click", () => this.adopt(form.querySelector("#adm-adopt-box"), d, xaddr));
            cell.append(adopt);
          }
          return row(d.name || "(no name)", d.hardware || "", xaddr, cell);
        }));
      } catch (e) { status.textContent = ""; errors.show(plainApi(e.message, LABELS)); }
    });
    this.discoverBox.replaceChildren(form);
    targets.focus();
  }

  adopt(box, device, xaddr) {
    const f = {
      name: input("adm-adopt-name", { value: device.name || "" }),
      site: input("adm-adopt-site", { list: "adm-site-names" }),
      username: input("adm-adopt-user"),
      password: input("adm-adopt-password", { type: "password", autocomplete: "new-password" }),
    };
    const errors = new Errors("adm-adopt-errors");
    const save = el("button", { type: "submit", id: "adm-adopt-save", class: "adm-primary", text: "Adopt camera" });
    const form = el("form", { id: "adm-adopt-form", class: "adm-form", novalidate: true, "aria-labelledby": "adm-adopt-title" },
      el("h4", { id: "adm-adopt-title", text: `Adopt ${device.name || xaddr}` }), errors.root,
      el("div", { class: "adm-fields" }, field("Name", f.name, { hint: "empty: the device's own name" }), field("Site", f.site),
        field("Camera user name", f.username, { required: true }), field("Camera password", f.password, { required: true })),
      el("datalist", { id: "adm-site-names" }, ...(this.sites || []).map((s) => el("option", { value: s.name }))),
      el("div", { class: "adm-actions" }, save));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const problems = [];
      if (!f.username.value.trim()) problems.push("Camera user name is required (the camera's ONVIF account)");
      if (!f.password.value) problems.push("Camera password is required");
      errors.show(problems);
      if (problems.length) return;
      const body = { xaddr, username: f.username.value.trim(), password: f.password.value };
      if (f.name.value.trim()) body.name = f.name.value.trim();
      if (f.site.value.trim()) body.site = f.site.value.trim();
      try {
        const done = await api("/api/v1/cameras/adopt", { method: "POST", body });
        box.replaceChildren();
        this.discoverBox.replaceChildren();
        this.msg.textContent = `Camera ${done.camera.name} adopted.`;
        await this.load();
      } catch (e) { errors.show(plainApi(e.message, LABELS)); }
    });
    box.replaceChildren(form);
    f.username.focus();
  }
}
