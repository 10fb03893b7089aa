// What every administration screen shares: labelled fields with the required ones marked, a
// form's errors all at once in plain words naming the field, a confirmation for destructive
// actions, tables. Text only, never markup.

import { el } from "./dom.js";
import { readLocal } from "./timefield.js";

/** A labelled field: ``input`` gets the id; a required one is marked (star and aria-required). */
export function field(label, input, { required = false, hint = "" } = {}) {
  if (required) { input.setAttribute("aria-required", "true"); input.required = true; }
  const hintEl = hint ? el("span", { class: "adm-hint", id: `${input.id}-hint`, text: hint }) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  return el("div", { class: "adm-field" },
    el("label", { for: input.id }, label, required ? el("span", { class: "adm-req", "aria-hidden": "true", text: " *" }) : null),
    input, hintEl);
}

export const input = (id, props = {}) => el("input", { id, type: "text", autocomplete: "off", ...props });

export function select(id, options, value = "") {
  const s = el("select", { id }, ...options.map(([v, t]) => el("option", { value: v, text: t })));
  s.value = value;
  return s;
}

/** A checkbox with its label after it. */
export function check(id, label, checked = false) {
  const box = el("input", { id, type: "checkbox" });
  box.checked = checked;
  return [box, el("label", { for: id, class: "adm-check", text: label })];
}

/** A form's error list: ``show(["Name is required", ...])`` shows every error at once. */
export class Errors {
  constructor(id) {
    this.root = el("div", { id, class: "adm-errors", role: "alert", hidden: true });
  }

  show(messages, fields = []) {
    for (const f of fields) f.removeAttribute("aria-invalid");
    if (!messages.length) { this.root.hidden = true; this.root.replaceChildren(); return; }
    this.root.replaceChildren(el("p", { text: messages.length === 1 ? "Please correct this:" : `Please correct these ${messages.length} things:` }),
      el("ul", {}, ...messages.map((m) => el("li", { text: m }))));
    this.root.hidden = false;
  }

  clear() { this.show([]); }
}

/** The API's answer in the form's words: ``body: main_url: must be ...; name: is required``
 * becomes one message per field, each named by its label. */
export function plainApi(message, labels) {
  const text = String(message || "the service refused it").replace(/^(body|query): /, "");
  return text.split("; ").map((part) => {
    const m = /^([a-z_]+)(?:\.\d+)?: (.*)$/.exec(part);
    if (m && labels[m[1]]) return `${labels[m[1]]}: ${m[2]}`;
    for (const [key, label] of Object.entries(labels)) {
      if (part.startsWith(`${key} `)) return `${label} ${part.slice(key.length + 1)}`;
    }
    return part.charAt(0).toUpperCase() + part.slice(1);
  });
}

/** A local (London) time typed in a field, or an error naming the field. */
export function readTime(label, value, { required = true } = {}) {
  if (!value.trim()) return required ? { error: `${label} is required (DD/MM/YYYY HH:MM)` } : { ms: null };
  const r = readLocal(value);
  if (r.error) return { error: `${label}: ${r.error}` };
  if (r.candidates.length > 1) return { error: `${label}: that time happens twice on the night the clocks go back; choose a time outside that hour` };
  return { ms: r.candidates[0] };
}

let dialog = null;
/** Ask before a destructive action; resolves true only on the confirming button. */
export function confirmAction(question, confirmLabel) {
  if (!dialog) {
    dialog = el("dialog", { id: "adm-confirm", class: "adm-confirm", "aria-labelledby": "adm-confirm-text" });
    document.body.append(dialog);
  }
  const yes = el("button", { type: "button", id: "adm-confirm-yes", class: "adm-danger", text: confirmLabel });
  const no = el("button", { type: "button", id: "adm-confirm-no", text: "Cancel" });
  dialog.replaceChildren(el("p", { id: "adm-confirm-text", text: question }), el("div", { class: "adm-actions" }, yes, no));
  const back = document.activeElement;
  return new Promise((resolve) => {
    const done = (answer) => { dialog.close(); if (back && back.focus) back.focus(); resolve(answer); };
    yes.addEventListener("click", () => done(true));
    no.addEventListener("click", () => done(false));
    dialog.addEventListener("cancel", (ev) => { ev.preventDefault(); done(false); }, { once: true });
    dialog.showModal();
    no.focus(); // the safe choice is where Enter lands
  });
}

export function table(id, headers, caption) {
  const body = el("tbody", { id: `${id}-body` });
  const t = el("table", { class: "an-table adm-table", id },
    caption ? el("caption", { class: "adm-caption", text: caption }) : null,
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col", text: h })))), body);
  return [t, body];
}

export const row = (...cells) => el("tr", {}, ...cells.map((c) => (c instanceof Node ? (c.tagName === "TD" ? c : el("td", {}, c)) : el("td", { text: c ?? "" }))));

export function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return i === 0 ? `${v} bytes` : `${v.toFixed(1)} ${units[i]}`;
}

export const button = (text, props = {}) => el("button", { type: "button", ...props, text });
