// The keyboard shortcuts: one table that both the key handler (app.js) and the "?" help read,
// so the help cannot drift from what the keys do. A row with ``run`` is dispatched here; a row
// without it is handled by its view (playback, synchronised playback, zoom, PTZ, the grid's
// tiles, the occurrence book) and is listed for the help only. ``need`` names the right (or
// view) the row needs: a role without it neither sees the row nor gets the key.

import { el } from "./dom.js";

/** The rows for this session: ``ctx`` holds ``go``, ``have`` (need -> bool) and the views. */
export function keyTable(ctx) {
  const { go, have, single, store, grid, tours } = ctx;
  return [
    { keys: ["g"], need: "live_view", help: "Live grid", run: () => go("#grid") },
    { keys: ["p"], need: "playback", help: "Playback (of the camera shown)",
      run: () => go(`#playback/${single.cam?.id ?? store.list[0]?.id ?? ""}`) },
    { keys: ["v"], need: "views", help: "Views: saved layouts and tours (shared by site or team)", run: () => go("#views") },
    { keys: ["m"], need: "views", help: "Map: the site plan with a pin per camera", run: () => go("#map") },
    { keys: ["e"], need: "evidence", help: "Evidence requests", run: () => go("#evidence") },
    { keys: ["a"], need: "anpr", help: "ANPR", run: () => go("#anpr") },
    { keys: ["h"], need: "health", help: "Camera health (faults, availability, rota)", run: () => go("#health") },
    { keys: ["u"], need: "lawful", help: "Lawful use (RIPA and SAR registers)", run: () => go("#lawful") },
    { keys: ["t"], need: "reports", help: "Reports (the weekly tasking pack, statistics)", run: () => go("#reports") },
    { keys: ["l"], need: "incidents", help: "The occurrence book (incidents, bookmarks)" },
    { keys: ["i", "b"], need: "incidents", help: "One camera or playback: new incident here and now; bookmark" },
    { keys: ["Escape"], label: "Esc", help: "Leave a field; stop a tour; back to the home view; close a picture or this help",
      run: (current) => {
        if (current === "grid" && tours && tours.running) { tours.stop(); return true; }
        if (current === "grid") return false;
        if (current === "single") grid.focusAfter = single.cam?.id;
        go(ctx.home); return true;
      } },
    { keys: ["1", "4", "9"], need: "live_view", when: "grid", help: "Grid of 1, 4 or 9 tiles", run: (_, k) => grid.setLayout(Number(k)) },
    { keys: ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"], labels: ["\u2190", "\u2192", "\u2191", "\u2193"], need: "live_view",
      help: "Move between tiles (with Alt: carry the camera); Enter opens it" },
    { keys: ["r"], need: "live_view", when: "single", help: "One camera: back 30 s", run: () => document.getElementById("single-back30").click() },
    { keys: ["s"], need: "live_view", when: "single", help: "One camera: snapshot", run: () => document.getElementById("single-snapshot").click() },
    { keys: ["+", "-"], labels: ["Arrows", "+", "\u2212"], need: "ptz", help: "One PTZ camera, picture focused: pan, tilt, zoom" },
    { keys: [" ", ",", "."], labels: ["Space", ",", "."], need: "playback", help: "Playback: play or pause; a frame back or on" },
    { keys: ["1", "2", "4"], need: "playback", help: "Playback speed" },
    { keys: ["+", "-", "0"], need: "playback",
      help: "Digital zoom in, out, whole picture (one camera, playback, a tile of synchronised playback; the wheel and a drag too)" },
    { keys: ["?"], help: "This help" },
  ].filter((row) => !row.need || have[row.need]);
}

/** The row that handles ``key`` in view ``current``, if it is dispatched here. */
export function keyRow(rows, key, current) {
  return rows.find((r) => r.run && r.keys.includes(key) && (!r.when || r.when === current));
}

/** Fill the help's list from the rows. */
export function drawHelp(dl, rows) {
  dl.replaceChildren(...rows.flatMap((r) => {
    const labels = r.label ? [r.label] : r.labels || r.keys.map((k) => k.toUpperCase());
    const dt = el("dt", { "data-keys": r.keys.join(" ") });
    labels.forEach((l, i) => { if (i) dt.append(" "); dt.append(el("kbd", { text: l })); });
    return [dt, el("dd", { text: r.help })];
  }));
}
