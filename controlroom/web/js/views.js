// Views (#views, V): named layouts and camera tours kept by the service (controlroom/api/views.py),
// the operator's own or shared by a supervisor with a site or the whole team. Opening a layout
// puts it on the live grid; a tour shows its cameras or layouts one after another, each for its
// dwell time, in the whole grid or in one tile, until Stop (or Esc on the grid). The map
// (#map, M) is in map.js. Names are set with textContent only.

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { formatLocal } from "./time.js";

const SCOPE_TEXT = { own: "Only me", team: "The whole team" };

export function scopeText(v) {
  return v.scope === "site" ? `Site ${v.site_name || v.site}` : SCOPE_TEXT[v.scope] || v.scope;
}

/** A running tour: a timer stepping through the tour on the grid; a bar above the grid says
 * which step is shown and offers Stop. */
export class TourRunner {
  constructor(grid, store, bar) {
    Object.assign(this, { grid, store, bar, tour: null, timer: null, step: 0 });
    this.text = el("span", { id: "tour-text", role: "status" });
    const stop = el("button", { type: "button", id: "tour-stop" }, "Stop the tour ", el("kbd", { text: "Esc" }));
    stop.addEventListener("click", () => this.stop());
    bar.replaceChildren(this.text, stop);
  }

  get running() { return Boolean(this.tour); }

  start(tour, layouts) {
    this.stop();
    // A tour in one tile shows cameras only: a layout does not fit in a tile, so its steps are skipped.
    const steps = tour.steps.filter((s) => s.camera ? this.store.get(s.camera) : tour.target !== "tile" && layouts.has(s.view));
    if (!steps.length) throw new Error("none of this tour's cameras or layouts is available to you");
    this.tour = { ...tour, steps }; this.layouts = layouts; this.step = -1;
    this.tile = this.grid.focusedIndex ?? 0;
    this.bar.hidden = false;
    this.next();
  }

  next() {
    const t = this.tour; if (!t) return;
    this.step = (this.step + 1) % t.steps.length;
    const s = t.steps[this.step];
    let what;
    if (s.camera) {
      what = this.store.get(s.camera)?.name || `camera ${s.camera}`;
      if (t.target === "tile") this.grid.setTile(this.tile, s.camera); else this.grid.applyView(1, [s.camera]);
    } else {
      const v = this.layouts.get(s.view); what = `layout ${v.name}`;
      this.grid.applyView(v.layout, v.tiles);
    }
    this.text.textContent = `Tour ${t.name}: step ${this.step + 1} of ${t.steps.length}, ${what}; ` +
      `next in ${t.dwell_s} s${t.target === "tile" ? ` (tile ${this.tile + 1})` : ""}.`;
    this.bar.dataset.step = String(this.step);
    this.timer = setTimeout(() => this.next(), t.dwell_s * 1000);
  }

  stop() {
    clearTimeout(this.timer); this.timer = null; this.tour = null;
    this.bar.hidden = true; delete this.bar.dataset.step;
  }
}

export class ViewsView {
  constructor(store, grid, can, { go }) {
    Object.assign(this, { store, grid, can, go });
    this.share = can.has("views_share");
    this.views = []; this.sites = [];
    this.msg = el("p", { id: "vw-msg", role: "status" });
    this.layoutsBody = el("tbody", { id: "vw-layouts" });
    this.toursBody = el("tbody", { id: "vw-tours" });
    const head = (...names) => el("thead", {}, el("tr", {}, ...names.map((n) => el("th", { scope: "col", text: n }))));

    // Save the live grid as a layout.
    this.saveName = el("input", { id: "vw-save-name", autocomplete: "off", maxlength: 200, "aria-required": "true" });
    this.saveScope = this.scopeSelect("vw-save-scope");
    this.saveError = el("p", { id: "vw-save-error", class: "error", role: "alert" });
    const saveForm = el("form", { id: "vw-save", class: "vw-form", novalidate: true },
      el("h3", { text: "Save the live grid as a layout" }),
      el("div", { class: "vw-fields" },
        el("label", { for: "vw-save-name" }, "Name ", el("span", { class: "req", text: "(required)" })), this.saveName,
        el("label", { for: "vw-save-scope", text: "Shared with" }), this.saveScope,
        el("button", { type: "submit", id: "vw-save-go", text: "Save layout" })), this.saveError);
    saveForm.addEventListener("submit", (ev) => { ev.preventDefault(); this.saveLayout(); });

    // A new tour.
    this.tourName = el("input", { id: "vw-tour-name", autocomplete: "off", maxlength: 200, "aria-required": "true" });
    this.tourDwell = el("input", { id: "vw-tour-dwell", type: "number", min: 3, max: 600, value: 10, size: 4 });
    this.tourTarget = el("select", { id: "vw-tour-target" },
      el("option", { value: "grid", text: "the whole grid" }), el("option", { value: "tile", text: "one tile (the one last focused)" }));
    this.tourScope = this.scopeSelect("vw-tour-scope");
    this.stepPick = el("select", { id: "vw-tour-pick" });
    const addStep = el("button", { type: "button", id: "vw-tour-add", text: "Add step" });
    this.stepList = el("ol", { id: "vw-tour-steps", class: "vw-steps" });
    this.steps = [];
    addStep.addEventListener("click", () => {
      if (!this.stepPick.value) return;
      const [kind, id] = this.stepPick.value.split(":");
      this.steps.push(kind === "c" ? { camera: Number(id) } : { view: Number(id) }); this.drawSteps();
    });
    this.tourError = el("p", { id: "vw-tour-error", class: "error", role: "alert" });
    const tourForm = el("form", { id: "vw-tour", class: "vw-form", novalidate: true },
      el("h3", { text: "New tour" }),
      el("div", { class: "vw-fields" },
        el("label", { for: "vw-tour-name" }, "Name ", el("span", { class: "req", text: "(required)" })), this.tourName,
        el("label", { for: "vw-tour-dwell", text: "Seconds per step" }), this.tourDwell,
        el("label", { for: "vw-tour-target", text: "Runs in" }), this.tourTarget,
        el("label", { for: "vw-tour-scope", text: "Shared with" }), this.tourScope,
        el("label", { for: "vw-tour-pick", text: "Step" }), el("span", {}, this.stepPick, " ", addStep)),
      this.stepList,
      el("button", { type: "submit", id: "vw-tour-go", text: "Save tour" }), this.tourError);
    tourForm.addEventListener("submit", (ev) => { ev.preventDefault(); this.saveTour(); });

    this.root = el("section", { id: "view-views", class: "view views-view", "aria-label": "Views and tours", hidden: true },
      el("div", { class: "vw-head" }, el("h2", { text: "Views and tours" }),
        el("a", { class: "button", href: "#map", id: "vw-map-link" }, "Map ", el("kbd", { text: "M" })),
        el("span", { class: "muted", text: "Layouts and tours kept by the service; shared ones show only the cameras you may see." })),
      el("div", { class: "vw-body" },
        el("div", { class: "vw-lists" }, this.msg,
          el("h3", { text: "Layouts" }),
          el("table", { class: "an-table vw-table", "aria-label": "Layouts" }, head("Name", "Tiles", "Shared with", "Owner", ""), this.layoutsBody),
          el("h3", { text: "Tours" }),
          el("table", { class: "an-table vw-table", "aria-label": "Tours" }, head("Name", "Steps", "Every", "Runs in", "Shared with", ""), this.toursBody)),
        el("div", { class: "vw-forms" }, saveForm, tourForm)));
    $("main").append(this.root);
  }

  scopeSelect(id) {
    const s = el("select", { id });
    s.append(el("option", { value: "own", text: SCOPE_TEXT.own }));
    if (this.share) s.append(el("option", { value: "team", text: SCOPE_TEXT.team }));
    return s;
  }

  fillScopes() {
    if (!this.share) return;
    for (const s of [this.saveScope, this.tourScope]) {
      const keep = s.value;
      s.replaceChildren(el("option", { value: "own", text: SCOPE_TEXT.own }), el("option", { value: "team", text: SCOPE_TEXT.team }),
        ...this.sites.map((x) => el("option", { value: `site:${x.id}`, text: `Site ${x.name}` })));
      s.value = [...s.options].some((o) => o.value === keep) ? keep : "own";
    }
  }

  scopeBody(select) {
    const [scope, site] = select.value.split(":");
    return scope === "site" ? { scope, site: Number(site) } : { scope };
  }

  async load() {
    try {
      const data = await api("/api/v1/views");
      this.views = data.views; this.sites = data.sites;
    } catch (e) { this.msg.textContent = `Views unavailable: ${e.message}`; return; }
    this.fillScopes();
    this.layouts = new Map(this.views.filter((v) => v.kind === "layout").map((v) => [v.id, v]));
    this.draw();
  }

  open() { this.root.hidden = false; this.load(); }
  close() { this.root.hidden = true; }

  mayChange(v) { return v.owner === this.me || (v.scope !== "own" && this.share); }

  draw() {
    const actions = (v, ...first) => {
      const cell = el("td", { class: "vw-actions" }, ...first);
      if (this.mayChange(v)) {
        const del = el("button", { type: "button", class: "bad", text: "Delete", "aria-label": `Delete ${v.name}` });
        del.addEventListener("click", () => this.remove(v));
        cell.append(" ", del);
      }
      return cell;
    };
    this.layoutsBody.replaceChildren(...[...this.layouts.values()].map((v) => {
      const open = el("button", { type: "button", class: "ok vw-open", text: "Open", "aria-label": `Open ${v.name} on the live grid` });
      open.addEventListener("click", () => { this.grid.applyView(v.layout, v.tiles); this.go("#grid"); });
      const shown = v.tiles.filter(Boolean).length;
      return el("tr", { "data-view": v.id }, el("td", { text: v.name }), el("td", { text: `${shown} of ${v.layout}` }),
        el("td", { text: scopeText(v) }), el("td", { text: v.owner }), actions(v, open));
    }));
    if (!this.layouts.size) this.layoutsBody.append(el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No layouts yet." })));
    const tours = this.views.filter((v) => v.kind === "tour");
    this.toursBody.replaceChildren(...tours.map((v) => {
      const start = el("button", { type: "button", class: "ok vw-start", text: "Start", "aria-label": `Start the tour ${v.name}` });
      start.addEventListener("click", () => {
        try { this.tours.start(v, this.layouts); this.go("#grid"); } catch (e) { this.msg.textContent = `Not started: ${e.message}.`; }
      });
      return el("tr", { "data-view": v.id }, el("td", { text: v.name }), el("td", { text: v.steps.map((s) => this.stepText(s)).join(", ") }),
        el("td", { text: `${v.dwell_s} s` }), el("td", { text: v.target === "tile" ? "one tile" : "the grid" }),
        el("td", { text: scopeText(v) }), actions(v, start));
    }));
    if (!tours.length) this.toursBody.append(el("tr", {}, el("td", { colspan: 6, class: "muted", text: "No tours yet." })));
    this.stepPick.replaceChildren(el("option", { value: "", text: "Choose a camera or layout" }),
      ...this.store.list.map((c) => el("option", { value: `c:${c.id}`, text: c.site ? `${c.name} (${c.site})` : c.name })),
      ...[...this.layouts.values()].map((v) => el("option", { value: `v:${v.id}`, text: `Layout: ${v.name}` })));
    this.drawSteps();
  }

  stepText(s) {
    return s.camera ? (this.store.get(s.camera)?.name || `camera ${s.camera}`) : `layout ${this.layouts.get(s.view)?.name || s.view}`;
  }

  drawSteps() {
    this.stepList.replaceChildren(...this.steps.map((s, i) => {
      const rm = el("button", { type: "button", text: "Remove", "aria-label": `Remove step ${i + 1}` });
      rm.addEventListener("click", () => { this.steps.splice(i, 1); this.drawSteps(); });
      return el("li", {}, el("span", { text: this.stepText(s) }), " ", rm);
    }));
  }

  async saveLayout() {
    const name = this.saveName.value.trim();
    if (!name) { this.saveError.textContent = "Not saved: Name is required."; this.saveName.focus(); return; }
    const arr = this.grid.arrangement;
    const tiles = Array.from({ length: arr.layout }, (_, i) => arr.slots[i] ?? null);
    try {
      await api("/api/v1/views", { method: "POST", body: { name, kind: "layout", layout: arr.layout, tiles, ...this.scopeBody(this.saveScope) } });
    } catch (e) { this.saveError.textContent = `Not saved: ${e.message}`; return; }
    this.saveError.textContent = ""; this.saveName.value = "";
    this.msg.textContent = `Layout ${name} saved.`;
    await this.load();
  }

  async saveTour() {
    const name = this.tourName.value.trim();
    const problems = [];
    if (!name) problems.push("Name is required");
    if (!this.steps.length) problems.push("add at least one step");
    const dwell = Number(this.tourDwell.value);
    if (!(dwell >= 3 && dwell <= 600)) problems.push("Seconds per step must be 3 to 600");
    if (problems.length) { this.tourError.textContent = `Not saved: ${problems.join("; ")}.`; return; }
    try {
      await api("/api/v1/views", { method: "POST", body: { name, kind: "tour", dwell_s: dwell, target: this.tourTarget.value,
        steps: this.steps, ...this.scopeBody(this.tourScope) } });
    } catch (e) { this.tourError.textContent = `Not saved: ${e.message}`; return; }
    this.tourError.textContent = ""; this.tourName.value = ""; this.steps = [];
    this.msg.textContent = `Tour ${name} saved.`;
    await this.load();
  }

  async remove(v) {
    try { await api(`/api/v1/views/${v.id}`, { method: "DELETE" }); }
    catch (e) { this.msg.textContent = `Not deleted: ${e.message}`; return; }
    this.msg.textContent = `${v.name} deleted (${formatLocal(Date.now(), { date: false })}).`;
    await this.load();
  }
}
