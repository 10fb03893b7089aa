// The operator's screen: live grid (home), single camera view, playback, the alerts panel,
// evidence requests (the police's home) and ANPR. Views are addressed by the URL fragment
// (#grid, #camera/ID, #playback/ID/UTCms, #evidence[/new|/ID], #anpr[/journeys|/hotlists]), so
// the browser's back button and a reload keep the user where they were. Each view is offered
// only to roles with its rights.

import { api, setCsrfToken, csrfToken } from "./api.js";
import { CameraStore } from "./cameras.js";
import { Grid } from "./grid.js";
import { SingleView } from "./single.js";
import { PlaybackView } from "./playback.js";
import { SyncView, syncHash } from "./syncplay.js";
import { DigitalZoom } from "./zoom.js";
import { AlertsPanel } from "./alerts.js";
import { EvidenceView } from "./evidence.js";
import { AnprView } from "./anpr.js";
import { IncidentsView } from "./incidents.js";
import { startDuty } from "./duty.js";
import { HealthView } from "./health.js";
import { LawfulView } from "./lawful.js";
import { DirectedUsePanel } from "./directeduse.js";
import { AdminView, hasAdmin } from "./admin.js";
import { ReportsView } from "./reports.js";
import { ViewsView, TourRunner } from "./views.js";
import { MapView } from "./map.js";
import { keyTable, keyRow, drawHelp } from "./keys.js";
import { formatLocal } from "./time.js";
import { $ } from "./dom.js";

async function boot() {
  let me;
  try { me = await api("/api/v1/session"); } catch (e) { if (e.status !== 401) throw e; return; }
  if (me.csrf_token) setCsrfToken(me.csrf_token);
  $("user-name").textContent = me.user ? `${me.user.display_name || me.user.username} (${me.user.role})` : "";

  const can = new Set((me.user && me.user.permissions) || []);
  const store = new CameraStore();
  // Police hold no inventory right: asking would only collect refusals in the audit trail.
  if (can.has("inventory_read")) await store.start();
  const grid = new Grid($("grid"), store, { onOpen: (id) => go(`#camera/${id}`) });
  const single = new SingleView(store, { onBack: () => { grid.focusAfter = single.cam?.id; go("#grid"); }, onBack30: (id) => go(`#playback/${id}/${Date.now() - 30e3}`) });
  const playback = new PlaybackView(store, { onLive: (id) => go(`#camera/${id}`) });
  // Synchronised playback of up to 16 cameras (#sync/IDS/UTCms); digital zoom on live and recorded video.
  const sync = new SyncView(store, { go: (h) => go(h) });
  $("pb-sync").addEventListener("click", () => {
    const shown = Number(playback.video.dataset.wallMs) || playback.cursorMs();
    go(syncHash(store, playback.cameraSel.value, shown));
  });
  const zooms = { single: new DigitalZoom($("single-video").parentElement, $("single-video")),
                  playback: new DigitalZoom(playback.video.parentElement, playback.video) };
  const role = (me.user && me.user.role) || "this account";
  if (!can.has("live_view")) {
    // Keeping the system and watching people are separate duties (docs/design/security-model.md).
    grid.forbidden = `Your role (${role}) has no live-view right. Sign in with an operator's account to watch cameras.`;
  }
  const alerts = new AlertsPanel($("alerts-list"), $("alerts-count"), $("alerts-conn"), { can, store: can.has("inventory_read") ? store : null,
    user: me.user ? me.user.username : "", soundButton: $("alerts-sound") });
  if (can.has("live_view")) alerts.start(); else $("alerts").hidden = true; // alerts are for those who watch
  const hasEvidence = ["evidence_request", "export", "approve"].some((p) => can.has(p));
  const evidence = hasEvidence ? new EvidenceView(me.user, can) : null;
  $("nav-evidence").hidden = !hasEvidence;
  const hasAnpr = can.has("anpr_search") || can.has("hotlist_admin");
  const anpr = hasAnpr ? new AnprView(store, can) : null;
  $("nav-anpr").hidden = !hasAnpr;
  const hasLawful = can.has("ripa") || can.has("sar"); // the RIPA and SAR registers (supervisors)
  const lawful = hasLawful ? new LawfulView(can) : null;
  $("nav-lawful").hidden = !hasLawful;
  const directed = can.has("directed_use") ? new DirectedUsePanel($("ptz")) : null; // RIPA link in the PTZ panel
  const reports = can.has("reports") ? new ReportsView() : null;
  $("nav-reports").hidden = !reports;
  $("nav-grid").hidden = !can.has("live_view");
  $("nav-playback").hidden = !can.has("playback");
  // The occurrence book (operators log, supervisors close): incidents.js adds its own buttons.
  const incidents = can.has("incidents") ? new IncidentsView(store, can, { go: (h) => go(h), single, playback }) : null;
  // Police have evidence and nothing to watch: that is their home.
  // An administrator (no live view, no evidence) lands on camera health (faults are theirs to
  // manage), and sees no live-view controls (layouts, site filter, G and P) they could not use.
  const duty = startDuty(can); // "On duty / Sign on" in the header (operators and supervisors)
  const hasHealth = can.has("faults") || can.has("rota");
  const health = hasHealth ? new HealthView(store, can) : null;
  $("nav-health").hidden = !hasHealth;
  const admin = hasAdmin(can) ? new AdminView(can) : null; // cameras, users, sites, retention, holds, audit, system
  $("nav-admin").hidden = !admin;
  const home = can.has("live_view") ? "#grid" : hasEvidence ? "#evidence" : hasHealth ? "#health" : hasAnpr ? "#anpr" : "#grid";
  // Views (V): layouts and tours kept by the service; the map (M): a site plan with camera pins.
  const hasViews = can.has("live_view");
  const tours = hasViews ? new TourRunner(grid, store, $("tour-bar")) : null;
  const viewsView = hasViews ? new ViewsView(store, grid, can, { go: (h) => go(h) }) : null;
  if (viewsView) { viewsView.me = me.user.username; viewsView.tours = tours; }
  const mapView = hasViews ? new MapView(store, can, { go: (h) => go(h) }) : null;
  $("nav-views").hidden = !hasViews;
  window.controlroom = { store, grid, single, playback, sync, zooms, alerts, evidence, anpr, incidents, duty, health, lawful, admin, reports, views: viewsView, map: mapView, tours }; // for tests and the curious

  // Site filter and layout buttons.
  const siteSel = $("site-filter");
  const fillSites = () => {
    const have = [...siteSel.options].slice(1).map((o) => o.value).join("\n");
    const sites = store.sites();
    if (have === sites.join("\n")) return;
    siteSel.replaceChildren(siteSel.options[0], ...sites.map((s) => { const o = document.createElement("option"); o.value = s; o.textContent = s; return o; }));
    siteSel.value = grid.site;
  };
  fillSites();
  store.addEventListener("change", fillSites);
  siteSel.addEventListener("change", () => grid.setSite(siteSel.value));
  for (const b of document.querySelectorAll("[data-layout]")) b.addEventListener("click", () => grid.setLayout(Number(b.dataset.layout)));
  const viewHash = { grid: () => "#grid", playback: () => `#playback/${store.list[0]?.id ?? ""}`, evidence: () => "#evidence", anpr: () => "#anpr", health: () => "#health", lawful: () => "#lawful", admin: () => "#admin", reports: () => "#reports", views: () => "#views" };
  for (const b of document.querySelectorAll("[data-view]")) b.addEventListener("click", () => go(viewHash[b.dataset.view]()));

  $("logout").addEventListener("click", async () => {
    // Signing out leaves no personal data behind: drafts of evidence requests go (evidence.js).
    for (const k of Object.keys(localStorage)) if (k.startsWith("controlroom.evidence.draft")) localStorage.removeItem(k);
    try { await api("/api/v1/session", { method: "DELETE" }); } catch (e) { /* signed out anyway */ }
    setCsrfToken(""); location.assign("/login");
  });

  const views = { grid: $("view-grid"), single: $("view-single"), playback: $("view-playback"), sync: $("view-sync"), evidence: $("view-evidence"), anpr: $("view-anpr"), lawful: $("view-lawful"), reports: $("view-reports") };
  if (incidents) views.incidents = $("view-incidents");
  if (health) views.health = health.root;
  if (admin) views.admin = admin.root;
  if (viewsView) { views.views = viewsView.root; views.map = mapView.root; }
  let current = null;
  function show(name) {
    for (const [k, el] of Object.entries(views)) el.hidden = k !== name;
    $("grid-controls").hidden = name !== "grid" || !can.has("live_view");
    $("nav-grid").setAttribute("aria-pressed", String(name === "grid" || name === "single"));
    $("nav-playback").setAttribute("aria-pressed", String(name === "playback" || name === "sync"));
    $("nav-evidence").setAttribute("aria-pressed", String(name === "evidence"));
    $("nav-anpr").setAttribute("aria-pressed", String(name === "anpr"));
    if (incidents) $("nav-incidents").setAttribute("aria-pressed", String(name === "incidents"));
    $("nav-health").setAttribute("aria-pressed", String(name === "health"));
    $("nav-lawful").setAttribute("aria-pressed", String(name === "lawful"));
    $("nav-admin").setAttribute("aria-pressed", String(name === "admin"));
    $("nav-reports").setAttribute("aria-pressed", String(name === "reports"));
    $("nav-views").setAttribute("aria-pressed", String(name === "views" || name === "map"));
    current = name;
  }
  function route() {
    const [view, a, b] = location.hash.replace(/^#/, "").split("/");
    if (view !== "camera") { single.close(); if (directed) directed.close(); }
    if (view !== "playback") playback.close();
    if (view !== "sync") sync.close();
    if (view !== "evidence" && evidence) evidence.close();
    if (view !== "anpr" && anpr) anpr.close();
    if (view !== "incidents" && incidents) incidents.close();
    if (view !== "health" && health) health.close();
    if (view !== "lawful" && lawful) lawful.close();
    if (view !== "admin" && admin) admin.close();
    if (view !== "reports" && reports) reports.close();
    if (view !== "views" && viewsView) viewsView.close();
    if (view !== "map" && mapView) mapView.close();
    if (view !== "grid" && view !== "" && tours) tours.stop(); // a tour runs on the grid only
    if (!view) { history.replaceState(null, "", home); route(); return; }
    if (view === "evidence" && evidence) { grid.hide(); show("evidence"); evidence.open(a || ""); }
    else if (view === "anpr" && anpr) { grid.hide(); show("anpr"); anpr.open(a || "reads"); }
    else if (view === "incidents" && incidents) { grid.hide(); show("incidents"); incidents.open(a || ""); }
    else if (view === "health" && health) { grid.hide(); show("health"); health.open(); }
    else if (view === "lawful" && lawful) { grid.hide(); show("lawful"); lawful.open(a || ""); }
    else if (view === "admin" && admin) { grid.hide(); show("admin"); admin.open(a || ""); }
    else if (view === "reports" && reports) { grid.hide(); show("reports"); reports.open(a || ""); }
    else if (view === "views" && viewsView) { grid.hide(); show("views"); viewsView.open(); }
    else if (view === "map" && mapView) { grid.hide(); show("map"); mapView.open(a ? Number(a) : undefined); }
    else if (view === "camera" && a) { grid.hide(); show("single"); single.open(Number(a)); if (directed) directed.open(single.cam); }
    else if (view === "sync" && can.has("playback")) { grid.hide(); show("sync"); sync.open((a || "").split(",").filter(Boolean).map(Number), b ? Number(b) : undefined); }
    else if (view === "playback") { grid.hide(); show("playback"); playback.open(a ? Number(a) : store.list[0]?.id, b ? Number(b) : undefined); }
    else { show("grid"); grid.show(); }
  }
  function go(hash) { if (location.hash === hash) route(); else location.hash = hash; }
  window.addEventListener("hashchange", route);
  route();

  // "?": the shortcuts this role has, in a modal dialog (Esc or Close closes it, focus returns).
  // One table (keys.js) drives both the handler below and the help, so they cannot drift.
  const help = $("shortcut-help");
  const have = { live_view: can.has("live_view"), playback: can.has("playback"), evidence: hasEvidence, anpr: hasAnpr, ptz: can.has("ptz"),
                 incidents: Boolean(incidents), health: hasHealth, lawful: Boolean(lawful), reports: Boolean(reports), views: hasViews };
  const keyCtx = { go: (h) => go(h), have, single, store, grid, tours, home };
  const keys = keyTable(keyCtx);
  drawHelp($("shortcut-list"), keys);
  $("shortcut-help-close").addEventListener("click", () => help.close());

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "?" && !document.querySelector("dialog[open]") && !(ev.target.closest && ev.target.closest("input, select, textarea"))) {
      ev.preventDefault(); help.showModal(); return;
    }
    if (document.querySelector("dialog[open]")) return; // Esc closes the picture, not the view
    if (ev.target.closest && ev.target.closest("input, select, textarea")) {
      // Typing is typing, never a shortcut; Esc leaves the field, and the next Esc the view.
      if (ev.key === "Escape") { ev.target.blur(); ev.preventDefault(); }
      return;
    }
    if (current === "playback" && playback.onKey(ev)) { ev.preventDefault(); return; }
    if (current === "sync" && sync.onKey(ev)) { ev.preventDefault(); return; }
    if ((current === "single" || current === "playback") && ["+", "=", "-", "0"].includes(ev.key) && zooms[current].onKey(ev.key)) { ev.preventDefault(); return; }
    if (incidents && incidents.onKey(ev, current)) { ev.preventDefault(); return; }
    const row = keyRow(keys, ev.key, current);
    if (row && row.run(current, ev.key) !== false) ev.preventDefault();
  });

  const clock = $("clock");
  // The date over the time and offset, two short lines: the header holds every view on one line.
  const [clockDay, clockTime] = [document.createElement("span"), document.createElement("span")];
  clock.replaceChildren(clockDay, " ", clockTime);
  const tick = () => {
    const now = Date.now(); const [day, ...rest] = formatLocal(now).split(" ");
    clockDay.textContent = day; clockTime.textContent = rest.join(" "); clock.dateTime = new Date(now).toISOString();
  };
  tick(); setInterval(tick, 1000);
  void csrfToken;
}

boot().catch((e) => {
  const t = $("toast"); t.hidden = false; t.textContent = `The screen could not start: ${e.message}`;
});
