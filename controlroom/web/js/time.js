// Times on screen: Europe/London with the UTC offset, so the October hour that happens twice
// reads "01:30:00 +01:00" then "01:30:00 +00:00". Dates are British (dd/mm/yyyy, 24 h) whatever
// the browser's locale. Everything internal is UTC milliseconds; dates as "yyyy-mm-dd".

export const ZONE = "Europe/London";

const partsFmt = new Intl.DateTimeFormat("en-GB", {
  timeZone: ZONE, year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  timeZoneName: "longOffset",
});

export function localParts(ms) {
  const p = {};
  for (const { type, value } of partsFmt.formatToParts(new Date(ms))) p[type] = value;
  let off = (p.timeZoneName || "GMT").replace("GMT", "");
  if (!off) off = "+00:00";
  return { y: +p.year, mo: +p.month, d: +p.day, h: +p.hour, mi: +p.minute, s: +p.second,
           date: `${p.year}-${p.month}-${p.day}`, dateGB: `${p.day}/${p.month}/${p.year}`, time: `${p.hour}:${p.minute}:${p.second}`, offset: off };
}

export function offsetMs(ms) {
  const off = localParts(ms).offset;
  const sign = off[0] === "-" ? -1 : 1;
  const [h, m] = off.slice(1).split(":").map(Number);
  return sign * (h * 3600 + (m || 0) * 60) * 1000;
}

/** "25/10/2026 01:30:00 +01:00" */
export function formatLocal(ms, { date = true } = {}) {
  const p = localParts(ms);
  return `${date ? p.dateGB + " " : ""}${p.time} ${p.offset}`;
}

/** "25/10/2026 01:30:00.480 +01:00": for the playback position. */
export function formatLocalPrecise(ms) {
  const p = localParts(ms);
  const frac = String(Math.floor(((ms % 1000) + 1000) % 1000)).padStart(3, "0");
  return `${p.dateGB} ${p.time}.${frac} ${p.offset}`;
}

/** "2026-12-31" -> "31/12/2026" (a London date as the screen shows it). */
export function dateGB(isoDate) {
  const [y, mo, d] = isoDate.split("-");
  return `${d}/${mo}/${y}`;
}

/** A typed date, "31/12/2026" (or "2026-12-31"), as "2026-12-31"; null if it is no date. */
export function readDate(text) {
  const v = (text || "").trim();
  let m = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/.exec(v), y, mo, d;
  if (m) [d, mo, y] = [+m[1], +m[2], +m[3]];
  else if ((m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(v))) [y, mo, d] = [+m[1], +m[2], +m[3]];
  else return null;
  const day = new Date(Date.UTC(y, mo - 1, d));
  if (day.getUTCFullYear() !== y || day.getUTCMonth() !== mo - 1 || day.getUTCDate() !== d) return null;
  return `${y}-${String(mo).padStart(2, "0")}-${String(d).padStart(2, "0")}`;
}

/** Every UTC ms whose London wall-clock time is `dateStr` h:mi:s, earliest first: one on most
 * days, two in the October hour that happens twice (BST +01:00, then GMT +00:00), none in the
 * March hour that never happens. */
export function londonCandidates(dateStr, h = 0, mi = 0, s = 0) {
  const [y, mo, d] = dateStr.split("-").map(Number);
  const naive = Date.UTC(y, mo - 1, d, h, mi, s);
  // Try the offsets in force either side; keep those that give back the same wall time.
  const tries = new Set([naive - offsetMs(naive - 3 * 3600e3), naive - offsetMs(naive + 3 * 3600e3)]);
  return [...tries].filter((t) => {
    const p = localParts(t);
    return p.h === h && p.mi === mi && p.s === s && p.date === dateStr;
  }).sort((a, b) => a - b);
}

/** UTC ms of a wall-clock time on a London date ("2026-03-29", 0..24 h). In the October
 * repeated hour the earlier (BST) instant is returned; a time in the missing March hour is
 * moved forward by an hour, as clocks do. Where a guess is not acceptable (evidence
 * windows), use londonCandidates and ask. */
export function londonToUtc(dateStr, h = 0, mi = 0, s = 0) {
  const fits = londonCandidates(dateStr, h, mi, s);
  if (fits.length) return fits[0];
  const [y, mo, d] = dateStr.split("-").map(Number);
  const naive = Date.UTC(y, mo - 1, d, h, mi, s);
  return naive - offsetMs(naive - 3 * 3600e3);
}

/** "2026-10-25T01:30:00+01:00": ISO 8601 in London local time with its offset (what the API
 * takes; unambiguous in the repeated hour). */
export function isoLocal(ms) {
  const p = localParts(ms);
  return `${p.date}T${p.time}${p.offset}`;
}

/** [start, end) UTC ms of a London calendar day: 23, 24 or 25 hours long. */
export function londonDay(dateStr) {
  const start = londonToUtc(dateStr, 0, 0, 0);
  const next = new Date(Date.UTC(...dateStr.split("-").map((v, i) => (i === 1 ? +v - 1 : +v))) + 86400e3 + 43200e3);
  const nextStr = localParts(next.getTime()).date;
  return [start, londonToUtc(nextStr, 0, 0, 0)];
}

export function todayLondon() { return localParts(Date.now()).date; }

export function sinceText(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}
