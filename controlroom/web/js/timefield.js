// A typed London wall-clock time, and the line under its field that says which instant it
// means (with its offset). Shared by the Evidence and ANPR views: a time is typed the way the
// screen shows times ("01/12/2026 21:35:23"; ISO "2026-12-01 21:35:23" too), whatever the browser's locale, and nothing is
// guessed: the October hour that happens twice asks which, the March hour that never happens
// is refused with the reason. Text only, never markup.

import { formatLocal, isoLocal, londonCandidates } from "./time.js";
import { el } from "./dom.js";

/** A typed London wall-clock time ("25/10/2026 01:30:05" or "2026-10-25 01:30:05"; seconds
 * optional, a T may stand for the space) as the instants it can mean: {error} if empty, malformed or in the March hour
 * that never happens; {candidates: [ms]} otherwise (two in the October hour that happens twice). */
export function readLocal(value) {
  const v = (value || "").trim();
  let m = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(v);
  // The way the screen shows dates (en-GB): "31/12/2026 21:35:23".
  const gb = /^(\d{1,2})\/(\d{1,2})\/(\d{4}),? (\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(v);
  if (!m && gb) m = [v, gb[3], gb[2].padStart(2, "0"), gb[1].padStart(2, "0"), gb[4], gb[5], gb[6]];
  if (!m) return { error: "type the date and time as DD/MM/YYYY HH:MM:SS" };
  const [y, mo, d, h, mi, s] = m.slice(1).map((v) => Number(v || 0));
  const day = new Date(Date.UTC(y, mo - 1, d));
  if (day.getUTCFullYear() !== y || day.getUTCMonth() !== mo - 1 || day.getUTCDate() !== d) return { error: `there is no date ${m[3]}/${m[2]}/${m[1]}` };
  if (h > 23 || mi > 59 || s > 59) return { error: `${m[4]}:${m[5]}${m[6] ? `:${m[6]}` : ""} is not a time of day` };
  const date = `${m[1]}-${m[2]}-${m[3]}`;
  const hh = String(h).padStart(2, "0");
  const candidates = londonCandidates(date, h, mi, s);
  if (!candidates.length) {
    // London's clocks go forward at 01:00 GMT in March: that hour of the night never happens.
    const next = String(h + 1).padStart(2, "0");
    return { error: `${m[3]}/${m[2]}/${m[1]} ${hh}:${m[5]} does not exist in London: the clocks went forward from ${hh}:00 to ` +
      `${next}:00 that night. Enter a time before ${hh}:00 or from ${next}:00.` };
  }
  return { candidates };
}

/** Under a time input: the instant it means, with its offset; in the October hour that happens
 * twice, a choice between the two (nothing is guessed); in the March hour, why it is refused. */
export class TimeInfo {
  constructor(input, id, label) {
    this.input = input; this.label = label;
    this.text = el("span", { class: "ev-when-text", id });
    this.choice = el("select", { class: "ev-occurrence", hidden: true, "aria-label": `Which ${label} time` });
    this.root = el("div", { class: "ev-when" }, this.text, this.choice);
    input.setAttribute("aria-describedby", id);
    input.addEventListener("input", () => this.update());
    input.addEventListener("change", () => this.update());
    this.choice.addEventListener("change", () => this.update());
  }

  update() {
    const r = readLocal(this.input.value);
    this.root.classList.toggle("bad", Boolean(r.error && this.input.value));
    if (r.error) {
      this.choice.hidden = true;
      this.text.textContent = this.input.value ? r.error : "";
      return r;
    }
    if (r.candidates.length === 2) {
      const key = r.candidates.join(",");
      if (this.choice.dataset.key !== key) { // a new time: the choice made for another is void
        this.choice.dataset.key = key;
        this.choice.replaceChildren(el("option", { value: "", text: "Choose which" }),
          ...r.candidates.map((ms, i) => el("option", { value: ms,
            text: `${formatLocal(ms)} (${i === 0 ? "first, BST" : "second, GMT"})` })));
      }
      this.choice.hidden = false;
      const chosen = this.choice.value;
      this.root.classList.toggle("bad", !chosen);
      this.text.textContent = chosen ? `= ${formatLocal(Number(chosen))}`
        : `${this.input.value.trim().replace("T", " ")} happens twice in London (the clocks go back an hour that night): choose which one.`;
      return r;
    }
    this.choice.hidden = true;
    this.text.textContent = `= ${formatLocal(r.candidates[0])}`;
    return r;
  }

  /** The ISO 8601 time with its offset, or throws (after focusing what must be fixed). */
  iso() {
    const r = this.update();
    if (r.error) { this.input.focus(); throw new Error(`${this.label}: ${r.error}`); }
    if (r.candidates.length === 2) {
      if (!this.choice.value) {
        this.choice.focus();
        throw new Error(`${this.label}: ${this.input.value.trim().replace("T", " ")} happens twice in London; choose which one`);
      }
      return isoLocal(Number(this.choice.value));
    }
    return isoLocal(r.candidates[0]);
  }
}
