// ANPR (issue 6): searches of the plate reads, journeys between two sites, and the hotlists.
// Addressed as #anpr (search), #anpr/journeys and #anpr/hotlists; each part is offered only to
// roles with its right (anpr_search, hotlist_admin). Every search states a reason and a
// reference: the page does not check them itself, the API refuses without and its message is
// shown beside the form, which keeps what was typed. Everything from the API is inserted as
// text (textContent, attributes); never as HTML.

import { api, csrfToken } from "./api.js";
import { $, el } from "./dom.js";
import { formatLocal, localParts, dateGB, readDate } from "./time.js";
import { TimeInfo } from "./timefield.js";
import { showImage } from "./lightbox.js";
import { syncHash, siteHash } from "./syncplay.js";

const fmtIso = (iso) => (iso ? formatLocal(Date.parse(iso)) : "");
/** A hotlist entry's expiry: an entry typed "31/12/2026" is live to the end of that London day,
 * so a London midnight is shown as the day before it ends ("31/12/2026"); any other instant in full. */
const fmtExpiry = (iso) => {
  if (!iso) return "";
  const ms = Date.parse(iso);
  return localParts(ms).time === "00:00:00" ? dateGB(localParts(ms - 1).date) : formatLocal(ms);
};

/** "7 min 30 s", "45 s", "1 h 02 min 05 s". */
export function fmtTravel(seconds) {
  const s = Math.round(Number(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (h) return `${h} h ${String(m).padStart(2, "0")} min ${String(r).padStart(2, "0")} s`;
  return m ? `${m} min ${r} s` : `${r} s`;
}

/** A time field that may be left empty (no limit): null, or the ISO time with its offset;
 * throws (after focusing the field) when it is typed but wrong or undecided. */
function optionalIso(info) {
  return info.input.value.trim() ? info.iso() : null;
}

/** The plate patch as a button: a click shows the overview picture large. */
export function plateThumb(read, label) {
  if (!read.plate_url && !read.overview_url) return el("span", { class: "muted", text: "no image" });
  const img = el("img", { class: "an-plate", src: read.plate_url || read.overview_url, alt: `Plate patch: ${read.vrm}`,
    loading: "lazy", decoding: "async" });
  if (!read.overview_url) return img;
  const b = el("button", { type: "button", class: "an-thumb", title: "Show the overview picture",
    "aria-label": `Show the overview picture of ${label}` }, img);
  b.addEventListener("click", () => showImage(read.overview_url, `${label}: overview`));
  return b;
}

export class AnprView {
  constructor(store, can) {
    this.store = store; this.can = can;
    this.canSearch = can.has("anpr_search");
    this.canHotlists = can.has("hotlist_admin");
    this.tab = null;
    this.hotlists = []; this.hotlist = null; // the list, and the one whose entries are shown
    for (const [tab, allowed] of [["reads", this.canSearch], ["journeys", this.canSearch], ["hotlists", this.canHotlists]]) {
      $(`an-tab-${tab}`).hidden = !allowed;
      $(`an-tab-${tab}`).addEventListener("click", () => { location.hash = tab === "reads" ? "#anpr" : `#anpr/${tab}`; });
    }
    // Under each time field, the instant it means with its offset (or which of two, or why not).
    const timeField = (id, label) => { const info = new TimeInfo($(id), `${id}-when`, label); $(id).after(info.root); return info; };
    this.fromInfo = timeField("an-from", "from");
    this.toInfo = timeField("an-to", "to");
    this.jFromInfo = timeField("an-j-from", "from");
    this.jToInfo = timeField("an-j-to", "to");
    $("an-search").addEventListener("submit", (ev) => { ev.preventDefault(); this.search(); });
    $("an-journeys").addEventListener("submit", (ev) => { ev.preventDefault(); this.journeys(); });
    $("hl-new").addEventListener("submit", (ev) => { ev.preventDefault(); this.addHotlist(); });
    $("hl-entry").addEventListener("submit", (ev) => { ev.preventDefault(); this.addEntry(); });
    $("hl-import").addEventListener("submit", (ev) => { ev.preventDefault(); this.importCsv(); });
    store.addEventListener("change", () => this.fillSites());
    this.fillSites();
  }

  /** "reads" (the search), "journeys" or "hotlists"; a part the role may not use falls back. */
  open(tab) {
    const allowed = { reads: this.canSearch, journeys: this.canSearch, hotlists: this.canHotlists };
    if (!allowed[tab]) tab = this.canSearch ? "reads" : "hotlists";
    this.tab = tab;
    for (const t of Object.keys(allowed)) {
      $(`an-part-${t}`).hidden = t !== tab;
      $(`an-tab-${t}`).setAttribute("aria-pressed", String(t === tab));
    }
    if (tab === "hotlists") this.loadHotlists();
    // Focus on the tab, not in a field: after A, the view shortcuts (G, P, E) still work and
    // type nothing into the registration; Tab reaches the form.
    $(`an-tab-${tab}`).focus();
  }

  close() {}

  /** The ANPR sites (of cameras of kind anpr; every site if there is none) in the site lists. */
  fillSites() {
    const anprSites = [...new Set(this.store.list.filter((c) => c.kind === "anpr").map((c) => c.site).filter(Boolean))].sort();
    const sites = anprSites.length ? anprSites : this.store.sites();
    for (const [id, first] of [["an-site", "All sites"], ["an-j-from-site", "Choose a site"], ["an-j-to-site", "Choose a site"]]) {
      const sel = $(id);
      const have = [...sel.options].slice(1).map((o) => o.value).join("\n");
      if (have === sites.join("\n")) continue;
      const was = sel.value;
      sel.replaceChildren(el("option", { value: "", text: first }), ...sites.map((s) => el("option", { value: s, text: s })));
      sel.value = sites.includes(was) ? was : "";
    }
  }

  cameraName(id) { return this.store.get(id)?.name || (id == null ? "" : `camera ${id}`); }

  // -- search ----------------------------------------------------------------------------

  async search() {
    const error = $("an-search-error");
    error.textContent = "";
    const p = new URLSearchParams();
    p.set("vrm", $("an-vrm").value.trim());
    try {
      const from = optionalIso(this.fromInfo), to = optionalIso(this.toInfo);
      if (from) p.set("from", from);
      if (to) p.set("to", to);
    } catch (e) { error.textContent = `Not searched: ${e.message}`; return; }
    if ($("an-site").value) p.append("site", $("an-site").value);
    p.set("reason", $("an-reason").value);
    p.set("reference", $("an-reference").value);
    const button = $("an-search-go");
    button.disabled = true;
    $("an-search-summary").textContent = "Searching…";
    try {
      const data = await api(`/api/v1/anpr/reads?${p}`);
      this.showReads(data.reads, p);
    } catch (e) {
      // The API's own words (e.g. "an ANPR search must state its reason"); the form keeps what was typed.
      error.textContent = `Not searched: ${e.message}`;
      this.showReads(null, null);
    } finally { button.disabled = false; }
  }

  showReads(reads, params) {
    const csv = $("an-csv");
    csv.hidden = !reads || !reads.length;
    $("an-csv-note").hidden = csv.hidden;
    // The CSV is the search just made (same terms, reason and reference), audited as an export.
    if (reads && reads.length) csv.href = `/api/v1/anpr/reads.csv?${params}`;
    else csv.removeAttribute("href");
    $("an-reads").hidden = !reads || !reads.length;
    $("an-search-summary").textContent = !reads ? "" : reads.length
      ? `${reads.length} read${reads.length === 1 ? "" : "s"}, newest first${reads.length >= 1000 ? " (the first 1000: narrow the search)" : ""}.`
      : "No reads match.";
    $("an-reads-body").replaceChildren(...(reads || []).map((r) => {
      const when = fmtIso(r.time).split(" ");
      return el("tr", { "data-read": r.id, "data-vrm": r.vrm },
        el("td", { class: "an-vrm-cell" }, el("span", { class: "vrm", text: r.vrm })),
        el("td", { class: "nowrap" }, el("div", { text: when[0] }), el("div", { class: "muted small", text: when.slice(1).join(" ") })),
        el("td", { text: this.cameraName(r.camera_id) }),
        el("td", { text: r.site }),
        el("td", { text: r.lane }),
        el("td", { text: r.direction }),
        el("td", { class: "num", text: `${Math.round(r.confidence * 100)}%` }),
        el("td", {}, plateThumb(r, `${r.vrm} at ${fmtIso(r.time)}`),
          this.syncLink(syncHash(this.store, r.camera_id, Date.parse(r.time)), `the read of ${r.vrm}`)));
    }));
  }

  /** A link to synchronised playback of the cameras there at that moment (for those who may play back). */
  syncLink(hash, what) {
    if (!hash || !this.can.has("playback")) return null;
    return el("a", { class: "an-sync small", href: hash, text: "Play cameras", "aria-label": `Synchronised playback: ${what}` });
  }

  // -- journeys ----------------------------------------------------------------------------

  async journeys() {
    const error = $("an-j-error");
    error.textContent = "";
    const p = new URLSearchParams();
    p.set("from_site", $("an-j-from-site").value);
    p.set("to_site", $("an-j-to-site").value);
    const minutes = Number($("an-j-within").value);
    if (!(minutes > 0)) { error.textContent = "Not searched: within must be a number of minutes above 0"; $("an-j-within").focus(); return; }
    p.set("within_s", String(Math.round(minutes * 60)));
    if ($("an-j-either").checked) p.set("either_direction", "1");
    try {
      const from = optionalIso(this.jFromInfo), to = optionalIso(this.jToInfo);
      if (from) p.set("from", from);
      if (to) p.set("to", to);
    } catch (e) { error.textContent = `Not searched: ${e.message}`; return; }
    if ($("an-j-vrm").value.trim()) p.set("vrm", $("an-j-vrm").value.trim());
    p.set("reason", $("an-j-reason").value);
    p.set("reference", $("an-j-reference").value);
    const button = $("an-j-go");
    button.disabled = true;
    $("an-j-summary").textContent = "Searching…";
    try {
      const data = await api(`/api/v1/anpr/journeys?${p}`);
      this.showJourneys(data.journeys, minutes);
    } catch (e) {
      error.textContent = `Not searched: ${e.message}`;
      this.showJourneys(null);
    } finally { button.disabled = false; }
  }

  showJourneys(journeys, minutes) {
    $("an-j-table").hidden = !journeys || !journeys.length;
    $("an-j-summary").textContent = !journeys ? "" : journeys.length
      ? `${journeys.length} journey${journeys.length === 1 ? "" : "s"} within ${minutes} min.` : "No journeys found.";
    $("an-j-body").replaceChildren(...(journeys || []).map((j) => el("tr", { "data-vrm": j.vrm, "data-travel-s": j.travel_s },
      el("td", { class: "an-vrm-cell" }, el("span", { class: "vrm", text: j.vrm })),
      el("td", {}, el("div", { text: j.from_site }), el("div", { class: "muted small nowrap", text: fmtIso(j.start) }),
        this.syncLink(siteHash(this.store, j.from_site, Date.parse(j.start)), `${j.vrm} at ${j.from_site}`)),
      el("td", {}, el("div", { text: j.to_site }), el("div", { class: "muted small nowrap", text: fmtIso(j.end) }),
        this.syncLink(siteHash(this.store, j.to_site, Date.parse(j.end)), `${j.vrm} at ${j.to_site}`)),
      el("td", { class: "num an-travel", text: fmtTravel(j.travel_s) }))));
  }

  // -- hotlists ----------------------------------------------------------------------------

  async loadHotlists() {
    try {
      this.hotlists = (await api("/api/v1/anpr/hotlists")).hotlists;
      $("hl-list-msg").textContent = this.hotlists.length ? "" : "No hotlists yet.";
    } catch (e) { $("hl-list-msg").textContent = `The hotlists could not be read: ${e.message}`; }
    $("hl-list-body").replaceChildren(...this.hotlists.map((h) => {
      const open = el("button", { type: "button", class: "linkish", text: h.name });
      open.addEventListener("click", () => this.openHotlist(h.id));
      return el("tr", { "data-id": h.id, class: this.hotlist && this.hotlist.id === h.id ? "selected" : "" },
        el("td", {}, open), el("td", { text: h.source }), el("td", { class: "num", text: String(h.default_priority) }),
        el("td", { class: "num", text: String(h.live_entries ?? "") }), el("td", { text: h.enabled ? "yes" : "no" }));
    }));
    if (this.hotlist) await this.openHotlist(this.hotlist.id);
  }

  async openHotlist(id) {
    const msg = $("hl-entries-msg");
    try { this.hotlist = await api(`/api/v1/anpr/hotlists/${id}`); }
    catch (e) { msg.textContent = `Hotlist ${id}: ${e.message}`; return; }
    for (const tr of $("hl-list-body").children) tr.classList.toggle("selected", Number(tr.dataset.id) === id);
    $("hl-detail").hidden = false;
    $("hl-name").textContent = this.hotlist.name;
    $("hl-entry-source").placeholder = this.hotlist.source || "";
    msg.textContent = this.hotlist.entries.length ? "" : "No live entries.";
    $("hl-entries-body").replaceChildren(...this.hotlist.entries.map((e) => {
      const remove = el("button", { type: "button", text: "Remove", "aria-label": `Remove ${e.vrm}` });
      remove.addEventListener("click", () => this.removeEntry(e, remove));
      return el("tr", { "data-entry": e.id },
        el("td", {}, el("span", { class: "vrm", text: e.vrm })), el("td", { text: e.reason }), el("td", { text: e.source }),
        el("td", { class: "num", text: String(e.priority) }), el("td", { class: "nowrap", text: fmtExpiry(e.expires), title: `Live until ${fmtIso(e.expires)}` }),
        el("td", { class: "muted small", text: e.created_by }), el("td", {}, remove));
    }));
  }

  async addHotlist() {
    const error = $("hl-new-error");
    error.textContent = "";
    const body = { name: $("hl-new-name").value, source: $("hl-new-source").value,
      default_priority: Number($("hl-new-priority").value) };
    try {
      const h = await api("/api/v1/anpr/hotlists", { method: "POST", body });
      $("hl-new").reset();
      this.hotlist = { id: h.id };
      await this.loadHotlists();
    } catch (e) { error.textContent = `Not added: ${e.message}`; }
  }

  async addEntry() {
    const error = $("hl-entry-error");
    error.textContent = "";
    // Every missing or wrong field at once, named by its label; the API checks again.
    const typed = $("hl-entry-expires").value.trim(), day = readDate(typed);
    const problems = [];
    if (!$("hl-entry-vrm").value.trim()) problems.push("Registration or pattern is required");
    if (!$("hl-entry-reason").value.trim()) problems.push("Reason is required");
    if (!typed) problems.push("Expires is required: the last day the entry is live, DD/MM/YYYY");
    else if (!day) problems.push(`Expires: ${typed} is not a date (DD/MM/YYYY)`);
    if (problems.length) { error.textContent = `Not added: ${problems.join("; ")}.`; return; }
    const body = { vrm: $("hl-entry-vrm").value, reason: $("hl-entry-reason").value, expires: day };
    if ($("hl-entry-source").value.trim()) body.source = $("hl-entry-source").value.trim();
    if ($("hl-entry-priority").value) body.priority = Number($("hl-entry-priority").value);
    try {
      await api(`/api/v1/anpr/hotlists/${this.hotlist.id}/entries`, { method: "POST", body });
      $("hl-entry").reset();
      await this.loadHotlists();
    } catch (e) { error.textContent = `Not added: ${e.message}`; }
  }

  async removeEntry(entry, button) {
    button.disabled = true;
    try {
      await api(`/api/v1/anpr/hotlists/${this.hotlist.id}/entries/${entry.id}`, { method: "DELETE" });
      await this.loadHotlists();
    } catch (e) { $("hl-entry-error").textContent = `${entry.vrm} not removed: ${e.message}`; button.disabled = false; }
  }

  /** The chosen CSV file as the request body (all or nothing: the API names each bad line). */
  async importCsv() {
    const error = $("hl-import-error"), done = $("hl-import-done");
    error.textContent = ""; done.textContent = "";
    const file = $("hl-import-file").files[0];
    if (!file) { error.textContent = "Choose a CSV file first."; return; }
    const replace = $("hl-import-replace").checked ? "1" : "0";
    const res = await fetch(`/api/v1/anpr/hotlists/${this.hotlist.id}/import?replace=${replace}`, {
      method: "POST", credentials: "same-origin", body: await file.text(),
      headers: { "Content-Type": "text/csv", "Accept": "application/json", "X-CSRF-Token": csrfToken() },
    });
    const data = (res.headers.get("Content-Type") || "").includes("application/json") ? await res.json() : {};
    if (!res.ok) {
      const lines = (data.errors || []).map((x) => `line ${x.line}: ${x.error}`);
      error.replaceChildren(el("div", { text: `Nothing imported: ${lines.length ? `${lines.length} bad line(s)` : data.error || res.statusText}` }),
        ...lines.slice(0, 50).map((l) => el("div", { class: "small", text: l })));
      return;
    }
    done.textContent = `Imported ${data.added} entr${data.added === 1 ? "y" : "ies"}${data.replaced ? `, replacing ${data.replaced}` : ""}.`;
    $("hl-import").reset();
    await this.loadHotlists();
  }
}
