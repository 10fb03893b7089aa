// The occurrence book (issue 13): log an incident from the live view or playback in two clicks
// ("New incident" or I, then its category: the camera and the time are filled in), bookmark the
// moment with one key (B) and add a note if wanted, and the incidents view (#incidents,
// #incidents/ID, #incidents/bookmarks): open incidents, their running logs, adding entries,
// changing an open incident, closing (supervisors), bookmarks listed and searched.
// Closed incidents are append-only: the view offers only entries (corrections) for them, and the
// service refuses anything else (409). Everything from the API is inserted as text.

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { formatLocal, isoLocal } from "./time.js";
import { syncHash } from "./syncplay.js";

// Every list read is audited (incidents.list, bookmarks.list): read when the view opens, after
// an action, on Refresh and every 30 s, not polled faster.
const LIST_MS = 30000;
const fmtIso = (iso) => (iso ? formatLocal(Date.parse(iso)) : "");

function loadStyles() {
  if (document.querySelector("link[data-incidents]")) return;
  document.head.append(el("link", { rel: "stylesheet", href: "/static/css/incidents.css", "data-incidents": true }));
}

export class IncidentsView {
  constructor(store, can, { go, single, playback }) {
    Object.assign(this, { store, can, go, single, playback });
    this.vocab = { categories: [], outcomes: [], told: [] };
    this.selected = null; this.tab = "list"; this.timer = null; this.lastBookmark = null;
    loadStyles();
    this.buildView();
    this.buildQuick();
    this.buildBookmarkBar();
    this.addButtons();
    this.ready = api("/api/v1/incidents/vocabulary").then((v) => { this.vocab = v; this.fillVocab(); })
      .catch((e) => { this.quickError.textContent = `Categories unavailable: ${e.message}`; });
    // Bookmarks on the playback timelines: each day the playback view loads.
    if (playback) playback.onDay = (camId, start, end) => this.loadMarks(camId, start, end);
  }

  // --- the buttons on the live and playback screens ------------------------------------------

  addButtons() {
    const nav = document.querySelector("nav.views");
    this.nav = el("button", { type: "button", id: "nav-incidents", "aria-keyshortcuts": "l" }, "Incidents ", el("kbd", { text: "L" }));
    this.nav.addEventListener("click", () => this.go("#incidents"));
    nav.append(this.nav);
    const pair = (prefix) => {
      const inc = el("button", { type: "button", id: `${prefix}-incident`, class: "inc-new", "aria-keyshortcuts": "i" },
        "New incident ", el("kbd", { text: "I" }));
      const mark = el("button", { type: "button", id: `${prefix}-bookmark`, "aria-keyshortcuts": "b" },
        "Bookmark ", el("kbd", { text: "B" }));
      return [inc, mark];
    };
    const [si, sb] = pair("single");
    $("single-back30").before(si, sb);
    si.addEventListener("click", () => this.quick(this.here("single")));
    sb.addEventListener("click", () => this.bookmark(this.here("single")));
    const [pi, pbm] = pair("pb");
    $("pb-live").before(pi, pbm);
    pi.addEventListener("click", () => this.quick(this.here("playback")));
    pbm.addEventListener("click", () => this.bookmark(this.here("playback")));
  }

  /** The camera and the moment the operator is looking at: now in live view, the picture's
   * own time in playback. */
  here(where) {
    if (where === "single") return this.single.cam ? { camera: this.single.cam.id, ms: Date.now() } : null;
    const pb = this.playback;
    const camera = Number(pb.cameraSel.value);
    if (!camera) return null;
    const wall = pb.plan && pb.video.src ? pb.wallOf(pb.video.currentTime) : null;
    return { camera, ms: Math.round(wall ?? pb.day.cursor ?? Date.now()) };
  }

  /** Keys: I (new incident) and B (bookmark) in live view and playback, L the occurrence
   * book (the log), Esc closes the quick form. True if the key was used. */
  onKey(ev, current) {
    const k = ev.key;
    if (k === "Escape" && !this.quickBox.hidden) { this.closeQuick(); return true; }
    if (k === "Escape" && !this.bar.hidden) { this.bar.hidden = true; return true; }
    if (k === "l") { this.go("#incidents"); return true; }
    if (current !== "single" && current !== "playback") return false;
    if (k === "i") { this.quick(this.here(current)); return true; }
    if (k === "b") { this.bookmark(this.here(current)); return true; }
    return false;
  }

  // --- the two-click incident -----------------------------------------------------------------

  buildQuick() {
    this.quickWhere = el("p", { id: "qi-where", class: "qi-where" });
    this.quickCats = el("div", { id: "qi-categories", class: "qi-categories", role: "group", "aria-label": "Category: choosing one saves the incident" });
    this.quickError = el("p", { id: "qi-error", class: "error", role: "alert" });
    const cancel = el("button", { type: "button", id: "qi-cancel" }, "Cancel ", el("kbd", { text: "Esc" }));
    cancel.addEventListener("click", () => this.closeQuick());
    this.quickBox = el("section", { id: "quick-incident", class: "quick-incident", role: "dialog", "aria-labelledby": "qi-title", hidden: true },
      el("h2", { id: "qi-title", text: "New incident" }), this.quickWhere,
      el("p", { class: "muted small", text: "Choose the category: that saves the incident. Add details in the occurrence book." }),
      this.quickCats, this.quickError, el("div", { class: "qi-foot" }, cancel));
    this.done = el("div", { id: "qi-done", class: "qi-done", role: "status", hidden: true });
    document.body.append(this.quickBox, this.done);
  }

  fillVocab() {
    this.quickCats.replaceChildren(...this.vocab.categories.map((c) => {
      const b = el("button", { type: "button", class: "qi-cat", "data-category": c.value, text: c.label });
      b.addEventListener("click", () => this.saveQuick(c));
      return b;
    }));
    const opts = (list, blank) => [...(blank ? [el("option", { value: "", text: blank })] : []),
      ...list.map((o) => el("option", { value: o.value, text: o.label }))];
    this.fCategory.replaceChildren(...opts(this.vocab.categories, "All categories"));
  }

  quick(where) {
    this.pending = where || { camera: null, ms: Date.now() };
    const cam = this.pending.camera ? this.store.get(this.pending.camera) : null;
    this.quickWhere.textContent = `${cam ? cam.name + (cam.site ? " · " + cam.site : "") : "No camera"} · ${formatLocal(this.pending.ms)}`;
    this.quickError.textContent = "";
    this.quickBox.hidden = false;
    const first = this.quickCats.querySelector("button");
    if (first) first.focus();
  }

  closeQuick() { this.quickBox.hidden = true; this.pending = null; }

  async saveQuick(category) {
    const where = this.pending;
    if (!where) return;
    const body = { category: category.value, occurred_at: isoLocal(where.ms) };
    if (where.camera) body.camera = where.camera;
    for (const b of this.quickCats.querySelectorAll("button")) b.disabled = true;
    try {
      const inc = await api("/api/v1/incidents", { method: "POST", body });
      this.closeQuick();
      this.showDone(inc);
      if (this.active) this.loadList();
    } catch (e) {
      this.quickError.textContent = `Not saved: ${e.message}`;
    } finally {
      for (const b of this.quickCats.querySelectorAll("button")) b.disabled = false;
    }
  }

  showDone(inc) {
    const open = el("a", { href: `#incidents/${inc.id}`, class: "button", text: "Add details" });
    this.done.replaceChildren(el("span", { class: "qi-done-text", "data-incident": inc.id,
      text: `Incident ${inc.id} opened: ${inc.category_label}${inc.camera ? " at " + inc.camera : ""}, ${fmtIso(inc.occurred_at)}` }), open);
    this.done.hidden = false;
    clearTimeout(this.doneTimer);
    this.doneTimer = setTimeout(() => { this.done.hidden = true; }, 15000);
  }

  // --- bookmarks ------------------------------------------------------------------------------

  buildBookmarkBar() {
    this.barText = el("span", { id: "bm-text" });
    this.barNote = el("input", { id: "bm-note", type: "text", maxlength: "2000", placeholder: "Note (optional)", autocomplete: "off" });
    const save = el("button", { type: "button", id: "bm-save", text: "Save note" });
    const close = el("button", { type: "button", id: "bm-close", text: "Done" });
    this.barMsg = el("span", { id: "bm-msg", class: "muted small", role: "status" });
    this.bar = el("div", { id: "bookmark-bar", class: "bookmark-bar", hidden: true }, this.barText, this.barNote, save, close, this.barMsg);
    save.addEventListener("click", () => this.saveNote());
    this.barNote.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") { ev.preventDefault(); this.saveNote(); }
      if (ev.key === "Escape") { ev.preventDefault(); this.bar.hidden = true; }
    });
    close.addEventListener("click", () => { this.bar.hidden = true; });
    document.body.append(this.bar);
  }

  async bookmark(where) {
    if (!where) return;
    try {
      const mark = await api("/api/v1/bookmarks", { method: "POST", body: { camera: where.camera, at: isoLocal(where.ms) } });
      this.lastBookmark = mark;
      this.barText.textContent = `Bookmark made: ${mark.camera} · ${fmtIso(mark.start)}`;
      this.barText.dataset.bookmark = String(mark.id);
      this.barNote.value = ""; this.barMsg.textContent = "";
      this.bar.hidden = false;
      if (this.playback && this.playback.active) this.refreshMarks();
    } catch (e) {
      this.barText.textContent = `Bookmark not made: ${e.message}`;
      this.bar.hidden = false;
    }
  }

  async saveNote() {
    const mark = this.lastBookmark;
    if (!mark) return;
    try {
      await api(`/api/v1/bookmarks/${mark.id}`, { method: "PATCH", body: { note: this.barNote.value } });
      this.barMsg.textContent = "Note saved";
      setTimeout(() => { this.bar.hidden = true; }, 800);
      if (this.playback && this.playback.active) this.refreshMarks();
    } catch (e) { this.barMsg.textContent = `Note not saved: ${e.message}`; }
  }

  refreshMarks() {
    const pb = this.playback;
    if (pb.cameraSel.value) this.loadMarks(pb.cameraSel.value, pb.day.start, pb.day.end);
  }

  async loadMarks(camId, start, end) {
    try {
      const q = `camera=${encodeURIComponent(camId)}&from=${encodeURIComponent(new Date(start).toISOString())}&to=${encodeURIComponent(new Date(end).toISOString())}&limit=2000`;
      const data = await api(`/api/v1/bookmarks?${q}`);
      const marks = data.bookmarks.map((b) => [b.start_us / 1000, b.end_us / 1000, b.note]);
      this.playback.day.setMarks(marks); this.playback.hour.setMarks(marks);
    } catch (e) { this.playback.say(`Bookmarks unavailable: ${e.message}`); }
  }

  // --- the occurrence book view ---------------------------------------------------------------

  buildView() {
    const tab = (id, text) => el("button", { type: "button", id, text });
    this.tabList = tab("inc-tab-list", "Incidents");
    this.tabMarks = tab("inc-tab-bookmarks", "Bookmarks");
    this.tabList.addEventListener("click", () => this.go("#incidents"));
    this.tabMarks.addEventListener("click", () => this.go("#incidents/bookmarks"));
    const newBtn = el("button", { type: "button", id: "inc-new", text: "New incident" });
    newBtn.addEventListener("click", () => this.quick(null));
    this.fStatus = el("select", { id: "inc-f-status" }, el("option", { value: "open", text: "Open" }),
      el("option", { value: "closed", text: "Closed" }), el("option", { value: "", text: "All" }));
    this.fCategory = el("select", { id: "inc-f-category" });
    this.fText = el("input", { id: "inc-f-text", type: "search", placeholder: "Search", autocomplete: "off" });
    const refresh = el("button", { type: "button", id: "inc-refresh", text: "Refresh" });
    for (const f of [this.fStatus, this.fCategory]) f.addEventListener("change", () => this.loadList());
    this.fText.addEventListener("keydown", (ev) => { if (ev.key === "Enter") this.loadList(); });
    refresh.addEventListener("click", () => this.tab === "bookmarks" ? this.loadBookmarks() : this.loadList());
    this.listBody = el("tbody", { id: "inc-list-body" });
    this.listMsg = el("p", { id: "inc-list-msg", class: "muted", role: "status" });
    this.detail = el("article", { id: "inc-detail", class: "inc-detail" });
    this.filters = el("div", { class: "inc-filters" }, el("label", { for: "inc-f-status", text: "Status" }), this.fStatus,
      el("label", { for: "inc-f-category", text: "Category" }), this.fCategory, this.fText);
    this.listWrap = el("div", { class: "inc-list-wrap" }, el("table", { class: "inc-list" },
      el("thead", {}, el("tr", {}, ...["#", "Happened", "Category", "Camera", "Status"].map((h) => el("th", { scope: "col", text: h })))),
      this.listBody), this.listMsg);
    // Bookmarks tab
    this.bText = el("input", { id: "bm-f-text", type: "search", placeholder: "Search notes", autocomplete: "off" });
    this.bText.addEventListener("keydown", (ev) => { if (ev.key === "Enter") this.loadBookmarks(); });
    this.bBody = el("tbody", { id: "bm-list-body" });
    this.bMsg = el("p", { id: "bm-list-msg", class: "muted", role: "status" });
    this.marksWrap = el("div", { class: "inc-marks", hidden: true }, el("div", { class: "inc-filters" }, this.bText),
      el("table", { class: "inc-list" }, el("thead", {}, el("tr", {}, ...["When", "Camera", "Note", "By", "Incident", ""].map((h) => el("th", { scope: "col", text: h })))), this.bBody),
      this.bMsg);
    this.root = el("section", { id: "view-incidents", class: "view incidents", "aria-label": "Occurrence book", hidden: true },
      el("div", { class: "inc-head" }, el("h2", { text: "Occurrence book" }),
        el("span", { class: "inc-tabs", role: "group", "aria-label": "Occurrence book" }, this.tabList, this.tabMarks),
        newBtn, refresh, el("div", { class: "spacer" }),
        el("span", { class: "muted", text: "Closed incidents are append-only: correct them with a new entry." })),
      el("div", { class: "inc-body" }, el("div", { class: "inc-side" }, this.filters, this.listWrap, this.marksWrap), this.detail));
    $("main").append(this.root);
  }

  open(what) {
    this.active = true;
    clearInterval(this.timer);
    this.tab = what === "bookmarks" ? "bookmarks" : "list";
    this.tabList.setAttribute("aria-pressed", String(this.tab === "list"));
    this.tabMarks.setAttribute("aria-pressed", String(this.tab === "bookmarks"));
    this.filters.hidden = this.tab !== "list"; this.listWrap.hidden = this.tab !== "list";
    this.marksWrap.hidden = this.tab !== "bookmarks";
    if (this.tab === "bookmarks") { this.loadBookmarks(); this.timer = setInterval(() => this.loadBookmarks(), LIST_MS); return; }
    this.loadList();
    this.timer = setInterval(() => this.loadList(), LIST_MS);
    const id = Number(what);
    if (id) this.select(id); else if (!this.selected) this.detail.replaceChildren(el("p", { class: "muted", text: "Choose an incident." }));
  }

  close() { this.active = false; clearInterval(this.timer); }

  async loadList() {
    const q = new URLSearchParams({ limit: "200" });
    if (this.fStatus.value) q.set("status", this.fStatus.value);
    if (this.fCategory.value) q.set("category", this.fCategory.value);
    if (this.fText.value.trim()) q.set("q", this.fText.value.trim());
    try {
      const data = await api(`/api/v1/incidents?${q}`);
      this.listBody.replaceChildren(...data.incidents.map((i) => {
        const tr = el("tr", { "data-incident": i.id, class: this.selected && this.selected.id === i.id ? "selected" : undefined },
          el("td", {}, el("a", { href: `#incidents/${i.id}`, text: String(i.id) })),
          el("td", { text: fmtIso(i.occurred_at) }), el("td", { text: i.category_label }),
          el("td", { text: i.camera || i.site || "" }), el("td", { class: `inc-status-${i.status}`, text: i.status === "open" ? "Open" : "Closed" }));
        return tr;
      }));
      this.listMsg.textContent = data.incidents.length ? "" : "No incidents match.";
    } catch (e) { this.listMsg.textContent = `Incidents unavailable: ${e.message}`; }
  }

  async select(id) {
    try { this.show(await api(`/api/v1/incidents/${id}`)); }
    catch (e) { this.detail.replaceChildren(el("p", { class: "error", text: `Incident ${id}: ${e.message}` })); }
  }

  async act(path, method, body, { list = true } = {}) {
    const err = this.detail.querySelector(".inc-error");
    try {
      const inc = await api(path, { method, body });
      this.show(inc.id ? inc : await api(`/api/v1/incidents/${this.selected.id}`));
      if (list) this.loadList();
      return true;
    } catch (e) {
      if (err) err.textContent = e.message;
      return false;
    }
  }

  show(inc) {
    this.selected = inc;
    for (const tr of this.listBody.querySelectorAll("tr")) tr.classList.toggle("selected", Number(tr.dataset.incident) === inc.id);
    const open = inc.status === "open";
    const row = (k, v) => (v ? [el("dt", { text: k }), el("dd", { text: v })] : []);
    const fields = el("dl", { class: "inc-fields" },
      ...row("Happened", fmtIso(inc.occurred_at)), ...row("Opened", `${fmtIso(inc.opened_at)} by ${inc.opened_by}`),
      ...row("Camera", inc.camera), ...row("Site", inc.site), ...row("Location", inc.location),
      ...row("Told", inc.told_labels.join(", ")), ...row("Police reference", inc.police_reference),
      ...row("Outcome", inc.outcome_label), ...row("Summary", inc.summary),
      ...row("Closed", inc.closed_at ? `${fmtIso(inc.closed_at)} by ${inc.closed_by}` : ""));
    const log = el("ol", { class: "inc-log", id: "inc-log" }, ...inc.entries.map((e) => el("li", { class: `inc-entry inc-${e.kind}`, "data-kind": e.kind },
      el("span", { class: "inc-when", text: fmtIso(e.at) }), el("span", { class: "inc-who", text: e.author }),
      el("span", { class: "inc-kind", text: e.kind }), el("span", { class: "inc-text", text: e.text }))));
    const parts = [
      el("h3", {}, el("span", { text: `Incident ${inc.id} · ${inc.category_label} ` }),
        el("span", { id: "inc-status", class: `inc-badge inc-status-${inc.status}`, text: open ? "Open" : "Closed" })),
      fields,
      el("p", { class: "error inc-error", role: "alert" }),
      el("h4", { text: "Log" }), log, this.entryForm(inc),
    ];
    if (open) parts.push(this.editForm(inc));
    if (open && this.can.has("incident_close")) parts.push(this.closeForm(inc));
    parts.push(this.extras(inc));
    this.detail.replaceChildren(...parts);
  }

  entryForm(inc) {
    const text = el("textarea", { id: "inc-entry-text", rows: "2", maxlength: "2000", placeholder: inc.status === "open" ? "What happened, what was done" : "A correction: the record itself cannot change" });
    const kind = el("select", { id: "inc-entry-kind" }, el("option", { value: "note", text: "Note" }), el("option", { value: "correction", text: "Correction" }));
    if (inc.status === "closed") kind.value = "correction";
    const add = el("button", { type: "button", id: "inc-entry-add", text: "Add to log" });
    add.addEventListener("click", async () => {
      if (!text.value.trim()) return;
      await this.act(`/api/v1/incidents/${inc.id}/entries`, "POST", { text: text.value, kind: kind.value }, { list: false });
    });
    return el("div", { class: "inc-form" }, el("label", { for: "inc-entry-text", text: "New entry" }), text, el("div", { class: "inc-row" }, kind, add));
  }

  editForm(inc) {
    const sel = (id, list, value, blank) => {
      const s = el("select", { id }, ...(blank ? [el("option", { value: "", text: blank })] : []), ...list.map((o) => el("option", { value: o.value, text: o.label })));
      s.value = value || ""; return s;
    };
    const category = sel("inc-edit-category", this.vocab.categories, inc.category);
    const outcome = sel("inc-edit-outcome", this.vocab.outcomes, inc.outcome, "Not yet");
    const location = el("input", { id: "inc-edit-location", maxlength: "2000", value: inc.location });
    const reference = el("input", { id: "inc-edit-reference", maxlength: "100", value: inc.police_reference || "" });
    const summary = el("textarea", { id: "inc-edit-summary", rows: "2", maxlength: "2000" }); summary.value = inc.summary;
    const told = this.vocab.told.map((t) => {
      const box = el("input", { type: "checkbox", id: `inc-told-${t.value}`, value: t.value, checked: inc.told.includes(t.value) });
      return [box, el("label", { for: `inc-told-${t.value}`, text: t.label })];
    });
    const save = el("button", { type: "button", id: "inc-edit-save", text: "Save changes" });
    save.addEventListener("click", () => this.act(`/api/v1/incidents/${inc.id}`, "PATCH", {
      category: category.value, outcome: outcome.value || null, location: location.value,
      police_reference: reference.value.trim() || null, summary: summary.value,
      told: told.filter(([b]) => b.checked).map(([b]) => b.value),
    }));
    return el("details", { class: "inc-edit", id: "inc-edit" }, el("summary", { text: "Change the details" }),
      el("div", { class: "inc-grid" },
        el("label", { for: "inc-edit-category", text: "Category" }), category,
        el("label", { for: "inc-edit-location", text: "Location" }), location,
        el("span", { text: "Who was told" }), el("div", { class: "inc-told" }, ...told.flat()),
        el("label", { for: "inc-edit-reference", text: "Police reference" }), reference,
        el("label", { for: "inc-edit-outcome", text: "Outcome" }), outcome,
        el("label", { for: "inc-edit-summary", text: "Summary" }), summary),
      save);
  }

  closeForm(inc) {
    const outcome = el("select", { id: "inc-close-outcome" }, el("option", { value: "", text: inc.outcome ? "As recorded" : "Choose the outcome" }),
      ...this.vocab.outcomes.map((o) => el("option", { value: o.value, text: o.label })));
    const note = el("input", { id: "inc-close-note", maxlength: "2000", placeholder: "Closing note (optional)" });
    const close = el("button", { type: "button", id: "inc-close", class: "ok", text: "Close incident" });
    close.addEventListener("click", () => this.act(`/api/v1/incidents/${inc.id}/close`, "POST", { outcome: outcome.value || null, note: note.value }));
    return el("div", { class: "inc-form inc-closing" }, el("h4", { text: "Close (supervisor)" }),
      el("div", { class: "inc-row" }, outcome, note, close),
      el("p", { class: "muted small", text: "Once closed the incident is append-only: corrections are new entries." }));
  }

  extras(inc) {
    const marks = el("ul", { class: "inc-marks-list", id: "inc-bookmarks" }, ...inc.bookmarks.map((b) => el("li", {},
      el("a", { href: `#playback/${b.camera_id}/${Math.round(b.start_us / 1000)}`, text: `${b.camera} · ${fmtIso(b.start)}` }),
      el("span", { text: b.note ? ` ${b.note}` : "" }),
      this.can.has("playback") ? el("a", { class: "inc-sync", href: syncHash(this.store, b.camera_id, b.start_us / 1000), text: " (4 cameras)" }) : null)));
    const holds = el("ul", { class: "inc-holds" }, ...inc.holds.map((h) => el("li", { text: `Hold ${h.id}, review ${fmtIso(h.review)}${h.released ? " (released)" : ""}` })));
    const parts = [el("h4", { text: "Bookmarks" }), inc.bookmarks.length ? marks : el("p", { class: "muted small", text: "None. Press B in live view or playback to bookmark a moment; attach it from the Bookmarks tab." })];
    parts.push(el("h4", { text: "Footage and evidence" }), holds);
    if (inc.camera_id && this.can.has("playback")) {
      parts.push(el("p", {}, el("a", { id: "inc-sync", href: syncHash(this.store, inc.camera_id, Date.parse(inc.occurred_at) - 30e3),
        text: "Play this camera and 3 more of its site at the time" })));
    }
    if (inc.camera_id) {
      const hold = el("button", { type: "button", id: "inc-hold", text: "Keep the footage (1 h either side)" });
      hold.addEventListener("click", () => this.act(`/api/v1/incidents/${inc.id}/hold`, "POST", {}, { list: false }));
      parts.push(hold);
    }
    const reqs = inc.evidence_requests.length ? `Evidence requests: ${inc.evidence_requests.join(", ")}` : "No evidence request linked.";
    const rid = el("input", { id: "inc-evidence-id", inputmode: "numeric", size: "6", placeholder: "Request no." });
    const link = el("button", { type: "button", id: "inc-evidence-link", text: "Link request" });
    link.addEventListener("click", () => { const n = Number(rid.value); if (n) this.act(`/api/v1/incidents/${inc.id}/evidence`, "POST", { request: n }, { list: false }); });
    parts.push(el("p", { text: reqs }), el("div", { class: "inc-row" }, rid, link));
    return el("div", { class: "inc-extras" }, ...parts);
  }

  async loadBookmarks() {
    const q = new URLSearchParams({ limit: "200" });
    if (this.bText.value.trim()) q.set("q", this.bText.value.trim());
    try {
      const data = await api(`/api/v1/bookmarks?${q}`);
      const target = this.selected && this.selected.status === "open" ? this.selected : null;
      this.bBody.replaceChildren(...data.bookmarks.map((b) => {
        const play = el("a", { class: "button", href: `#playback/${b.camera_id}/${Math.round(b.start_us / 1000)}`, text: "Play" });
        const play4 = this.can.has("playback") ? el("a", { class: "button", href: syncHash(this.store, b.camera_id, b.start_us / 1000), text: "4 cameras" }) : null;
        const cell = el("td", {}, play, play4);
        if (target && !b.incident_id) {
          const attach = el("button", { type: "button", class: "bm-attach", text: `Attach to incident ${target.id}` });
          attach.addEventListener("click", async () => {
            try { await api(`/api/v1/bookmarks/${b.id}/attach`, { method: "POST", body: { incident: target.id } }); this.loadBookmarks(); }
            catch (e) { this.bMsg.textContent = e.message; }
          });
          cell.append(attach);
        }
        return el("tr", { "data-bookmark": b.id }, el("td", { text: fmtIso(b.start) + (b.end_us !== b.start_us ? ` to ${fmtIso(b.end)}` : "") }),
          el("td", { text: b.camera || "" }), el("td", { text: b.note }), el("td", { text: b.made_by }),
          el("td", {}, b.incident_id ? el("a", { href: `#incidents/${b.incident_id}`, text: String(b.incident_id) }) : ""), cell);
      }));
      this.bMsg.textContent = data.bookmarks.length ? "" : "No bookmarks match.";
    } catch (e) { this.bMsg.textContent = `Bookmarks unavailable: ${e.message}`; }
  }
}
