// Reports (issue 13): the weekly tasking pack and the statistics table, for supervisors (the
// reports right). Addressed as #reports[/WEEK] and #reports/stats. The figures come from the
// API as JSON; the charts are the PNGs the PDF carries (GET /api/v1/reports/tasking/chart.png),
// so the screen and the paper show the same pictures; the heat map is also a table of numbers.
// The download buttons are plain links to the PDF and CSV routes. Everything from the API is
// inserted as text, never as HTML.

import { api } from "./api.js";
import { $, el } from "./dom.js";

const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const WEEK_RE = /^\d{4}-W\d{2}$/;

/** The ISO week ("2026-W48") of a calendar date given as y, m (1-12), d. */
export function isoWeek(y, m, d) {
  const t = new Date(Date.UTC(y, m - 1, d));
  const day = (t.getUTCDay() + 6) % 7; // Monday 0
  t.setUTCDate(t.getUTCDate() - day + 3); // the Thursday of this week decides its year
  const year = t.getUTCFullYear();
  const week = 1 + Math.floor((t - Date.UTC(year, 0, 1)) / 86400000 / 7);
  return `${year}-W${String(week).padStart(2, "0")}`;
}

/** Last week in London: the week of the London date seven days ago. */
function lastWeek() {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: "Europe/London", year: "numeric", month: "2-digit", day: "2-digit" })
    .format(new Date(Date.now() - 7 * 86400000)).split("-").map(Number);
  return isoWeek(parts[0], parts[1], parts[2]);
}

function londonDate(offsetDays) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: "Europe/London", year: "numeric", month: "2-digit", day: "2-digit" })
    .format(new Date(Date.now() + offsetDays * 86400000));
}

const row = (...cells) => el("tr", {}, ...cells.map((c) => (c instanceof Node ? c : el("td", { text: String(c ?? "") }))));
const num = (n) => el("td", { class: "num", text: String(n ?? "") });
const head = (...names) => el("tr", {}, ...names.map((n) => el("th", { text: n })));
const pct = (p) => (p === null || p === undefined ? "n/a" : `${p > 0 ? "+" : ""}${p.toFixed(1)}%`);

export class ReportsView {
  constructor() {
    this.week = null;
    this.pack = null;
    $("rp-tab-tasking").addEventListener("click", () => { location.hash = "#reports"; });
    $("rp-tab-stats").addEventListener("click", () => { location.hash = "#reports/stats"; });
    $("rp-week-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const w = $("rp-week").value;
      if (!WEEK_RE.test(w)) { $("rp-error").textContent = "Choose a week."; $("rp-week").focus(); return; }
      location.hash = `#reports/${w}`;
    });
    $("rp-stats-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.stats(); });
    $("rp-send-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.send(); });
    $("rp-from").value = londonDate(-365); $("rp-to").value = londonDate(-1);
    $("rp-cfrom").value = londonDate(-730); $("rp-cto").value = londonDate(-366);
  }

  open(part) {
    const stats = part === "stats";
    $("rp-part-tasking").hidden = stats; $("rp-part-stats").hidden = !stats;
    $("rp-tab-tasking").setAttribute("aria-pressed", String(!stats));
    $("rp-tab-stats").setAttribute("aria-pressed", String(stats));
    if (stats) { this.stats(); return; }
    this.load(WEEK_RE.test(part || "") ? part : lastWeek());
  }

  close() {}

  async load(week) {
    this.week = week;
    $("rp-week").value = week;
    $("rp-error").textContent = ""; $("rp-send-done").textContent = ""; $("rp-send-error").textContent = "";
    const q = `week=${encodeURIComponent(week)}`;
    $("rp-pdf").href = `/api/v1/reports/tasking.pdf?${q}`;
    $("rp-csv").href = `/api/v1/reports/tasking.csv?${q}`;
    $("rp-summary").textContent = `Loading ${week}...`;
    let pack;
    try { pack = await api(`/api/v1/reports/tasking?${q}`); } catch (e) {
      $("rp-summary").textContent = ""; $("rp-error").textContent = e.message; return;
    }
    if (this.week !== week) return; // another week was asked for meanwhile
    this.pack = pack;
    $("rp-chart-categories").src = `/api/v1/reports/tasking/chart.png?${q}&chart=categories`;
    $("rp-chart-heatmap").src = `/api/v1/reports/tasking/chart.png?${q}&chart=heatmap`;
    $("rp-summary").textContent = `Week ${pack.week} (${pack.day_dates[0]} to ${pack.day_dates[6]}): `
      + `${pack.total} incidents, against ${pack.previous_total} the week before.`;
    $("rp-categories").replaceChildren(head("Category", "This week", "Week before"),
      ...pack.by_category.map((c) => { const r = row(c.label, num(c.count), num(c.previous)); r.dataset.key = c.key; return r; }));
    $("rp-repeats").replaceChildren(head(`Location (at least ${pack.repeat_at_least})`, "Kind", "Incidents"),
      ...pack.repeat_locations.map((p) => row(p.name, p.kind, num(p.count))));
    $("rp-outcomes").replaceChildren(head("Outcome", "Incidents"), ...pack.outcomes.map((c) => row(c.label, num(c.count))));
    const s = pack.staffed;
    const avail = pack.availability_mean === null ? "n/a" : `${(pack.availability_mean * 100).toFixed(1)}%`;
    $("rp-other").replaceChildren(head("", ""),
      row("Hotlist hits", num(pack.hits_total)),
      row("Evidence released", num(pack.evidence_released)),
      row("Camera faults opened / repaired", el("td", { class: "num", text: `${pack.faults_opened} / ${pack.faults_repaired}` })),
      row("Camera availability (mean)", el("td", { class: "num", text: avail })),
      row("Staffed hours (target)", el("td", { class: "num", text: `${s.staffed_hours.toFixed(1)} (${s.target_hours})` })),
      row("Unmonitored hours", el("td", { class: "num", text: s.unmonitored_hours.toFixed(1) })),
      row("Incidents in unmonitored hours", num(pack.incidents_unmonitored)));
    this.heat(pack);
  }

  heat(pack) {
    const max = Math.max(1, ...pack.heatmap.flat());
    const rows = [el("tr", {}, el("th", { text: "" }), ...[...Array(24).keys()].map((h) => el("th", { text: String(h).padStart(2, "0") })))];
    pack.heatmap.forEach((hours, d) => {
      rows.push(el("tr", {}, el("th", { text: `${DAYS[d]} ${pack.day_dates[d].slice(5)}` }),
        ...hours.map((n, h) => el("td", { class: `l${n === 0 ? 0 : Math.min(4, 1 + Math.floor((3 * n) / max))}`,
          text: String(n), title: `${DAYS[d]} ${String(h).padStart(2, "0")}:00: ${n}`, "data-cell": `${d}-${h}` }))));
    });
    $("rp-heat").replaceChildren(...rows);
  }

  async send() {
    $("rp-send-error").textContent = ""; $("rp-send-done").textContent = "";
    const recipient = $("rp-recipient").value.trim();
    if (!recipient) { $("rp-send-error").textContent = "Name the police account."; $("rp-recipient").focus(); return; }
    try {
      const r = await api("/api/v1/reports/tasking/send", { method: "POST",
        body: { week: this.week, recipient, note: $("rp-note").value } });
      $("rp-send-done").textContent = `Sent the police edition of ${r.week} to ${r.recipient}.`;
    } catch (e) { $("rp-send-error").textContent = e.message; }
  }

  async stats() {
    $("rp-stats-error").textContent = "";
    const q = new URLSearchParams({ from: $("rp-from").value, to: $("rp-to").value,
      compare_from: $("rp-cfrom").value, compare_to: $("rp-cto").value }).toString();
    $("rp-stats-pdf").href = `/api/v1/reports/stats.pdf?${q}`;
    $("rp-stats-csv").href = `/api/v1/reports/stats.csv?${q}`;
    let t;
    try { t = await api(`/api/v1/reports/stats?${q}`); } catch (e) { $("rp-stats-error").textContent = e.message; return; }
    const line = (r) => {
      const tr = row(r.label, num(r.current), num(r.previous),
        el("td", { class: `num ${r.change_pct < 0 ? "down" : r.change_pct > 0 ? "up" : ""}`, text: pct(r.change_pct) }));
      tr.className = r.group ? "group" : r.level ? "sub" : "";
      tr.dataset.key = r.key;
      return tr;
    };
    $("rp-stats").replaceChildren(head("Category", `${t.from_date} to ${t.to_date}`, `${t.compare_from} to ${t.compare_to}`, "Change"),
      ...t.rows.map(line), line(t.total));
  }
}
