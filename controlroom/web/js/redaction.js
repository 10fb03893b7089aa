// Redaction of a subject access request's footage, inside the SAR's detail (lawful.js): start a
// job, follow its progress (polled while it runs: the jobs' progress discloses nothing, so
// polling writes no audit entries), review any frame of a window with the boxes the last
// analysis found (obscured, or left visible and why), mark the requester or a false alarm by
// clicking a box, draw a box to obscure by hand (dragged on the picture), remove marks, run
// again, download the signed package. docs/design/lawful-use.md (Redaction). Text only.

import { api } from "./api.js";
import { el } from "./dom.js";

const POLL_MS = 1000;
const KIND_TEXT = { requester: "the requester (left visible)", keep: "not a third party (left visible)", add: "obscured by hand" };

export class RedactionPanel {
  constructor(sar, { closed }) {
    this.sar = sar;
    this.closed = closed;
    this.base = `/api/v1/sar/requests/${sar.id}`;
    this.window = sar.windows.length ? sar.windows[0].id : null;
    this.frame = 0;
    this.selected = null; // {track} of a clicked box, or {draw: [x, y, w, h]}
    this.error = el("p", { class: "error", role: "alert", id: "lw-red-error" });
    this.status = el("p", { id: "lw-red-status" });
    this.progress = el("progress", { id: "lw-red-progress", max: 1, value: 0 });
    this.jobs = el("ul", { id: "lw-red-jobs", class: "lw-windows" });
    this.marks = el("ul", { id: "lw-red-marks", class: "lw-windows" });
    this.img = el("img", { id: "lw-red-img", alt: "the recorded frame under review" });
    this.overlay = el("div", { class: "lw-red-overlay", id: "lw-red-overlay" });
    this.stage = el("div", { class: "lw-red-stage", id: "lw-red-stage" }, this.img, this.overlay);
    this.frameInput = el("input", { id: "lw-red-frame", type: "number", min: 0, value: 0 });
    this.frameInfo = el("span", { id: "lw-red-frame-info" });
    this.root = el("section", { class: "lw-red", id: "lw-red" });
    this.timer = null;
    this.build();
  }

  button(id, text, fn) {
    const b = el("button", { type: "button", id, text });
    b.addEventListener("click", async () => {
      this.error.textContent = "";
      try { await fn(); } catch (e) { this.error.textContent = e.message; }
    });
    return b;
  }

  build() {
    const windowSelect = el("select", { id: "lw-red-window" },
      ...this.sar.windows.map((w) => el("option", { value: String(w.id), text: `Window ${w.id}: camera ${w.camera_id}` })));
    windowSelect.addEventListener("change", () => { this.window = Number(windowSelect.value); this.frame = 0; this.showFrame(); });
    this.frameInput.addEventListener("change", () => { this.frame = Math.max(0, Number(this.frameInput.value) || 0); this.showFrame(); });
    const step = (d) => this.button(`lw-red-step${d > 0 ? "-next" : "-prev"}`, d > 0 ? `+${d}` : `${d}`, () => {
      this.frame = Math.max(0, this.frame + d); this.showFrame();
    });
    this.bindDrawing();
    const parts = [el("h4", { text: "Redaction: other people obscured, the requester left visible" })];
    if (!this.closed) parts.push(el("div", { class: "ev-buttons" }, this.button("lw-red-start", "Redact footage", () => this.start())));
    parts.push(el("div", {}, this.progress, " ", this.status), this.jobs);
    if (this.sar.windows.length) {
      parts.push(el("h4", { text: "Review a frame" }),
        el("div", { class: "lw-red-controls" }, windowSelect, step(-25), step(-1), this.frameInput, step(1), step(25), this.frameInfo),
        this.stage);
      if (!this.closed) {
        parts.push(el("div", { class: "ev-buttons" },
          this.button("lw-red-requester", "Selected box is the requester", () => this.mark("requester")),
          this.button("lw-red-keep", "Selected box is not a third party", () => this.mark("keep")),
          this.button("lw-red-add", "Obscure the drawn box", () => this.mark("add"))));
      }
      parts.push(el("h4", { text: "Marks" }), this.marks);
    }
    parts.push(this.error);
    this.root.replaceChildren(...parts);
  }

  // Drag on the picture (not on a box) to draw a box; frame pixels are worked out from the
  // image's shown size. A click on a box selects it (paintBoxes).
  bindDrawing() {
    let start = null;
    const at = (ev) => {
      const r = this.img.getBoundingClientRect();
      const sx = (this.img.naturalWidth || 1) / r.width, sy = (this.img.naturalHeight || 1) / r.height;
      return [Math.round((ev.clientX - r.left) * sx), Math.round((ev.clientY - r.top) * sy)];
    };
    this.overlay.addEventListener("pointerdown", (ev) => { if (ev.target === this.overlay) { start = at(ev); ev.preventDefault(); } });
    this.overlay.addEventListener("pointerup", (ev) => {
      if (!start) return;
      const end = at(ev);
      const box = [Math.min(start[0], end[0]), Math.min(start[1], end[1]), Math.abs(end[0] - start[0]), Math.abs(end[1] - start[1])];
      start = null;
      if (box[2] >= 4 && box[3] >= 4) { this.selected = { draw: box, frame: this.frame }; this.paintBoxes(); }
    });
  }

  async open() {
    await this.refresh();
    if (this.window !== null) await this.showFrame();
  }

  close() { clearTimeout(this.timer); this.timer = null; }

  async start() {
    await api(`${this.base}/redact`, { method: "POST" });
    await this.refresh();
  }

  async refresh() {
    const data = await api(`${this.base}/redaction`);
    const active = data.jobs.find((j) => j.state === "queued" || j.state === "running");
    const latest = data.jobs[0];
    this.progress.value = active ? active.progress : latest && latest.state === "done" ? 1 : 0;
    this.status.textContent = active ? `Job ${active.id} ${active.state}: ${active.stage || "waiting"} (${Math.round(active.progress * 100)}%)`
      : latest ? `Job ${latest.id} ${latest.state}${latest.error ? `: ${latest.error}` : ""}` : "Not redacted yet.";
    this.status.dataset.state = active ? active.state : latest ? latest.state : "none";
    this.jobs.replaceChildren(...data.jobs.map((j) => {
      const li = el("li", { "data-job": String(j.id), "data-state": j.state,
        text: `Job ${j.id} by ${j.created_by}: ${j.state}${j.state === "done" ? ` (${j.obscured} obscured, ${j.left_visible} left visible) ` : " "}` });
      if (j.state === "done") li.append(el("a", { href: `${this.base}/redaction/${j.id}/package`, download: j.package, class: "lw-red-download", text: `Download ${j.package}` }));
      return li;
    }));
    this.marks.replaceChildren(...data.marks.map((m) => {
      const li = el("li", { "data-mark": String(m.id), text: `Mark ${m.id}: ${KIND_TEXT[m.kind]}, window ${m.window}, frame ${m.frame}, box ${m.box.join(",")} by ${m.by} ` });
      if (!this.closed) li.append(this.button(`lw-red-unmark-${m.id}`, "Remove", async () => {
        await api(`${this.base}/marks/remove`, { method: "POST", body: { mark: m.id } }); await this.refresh(); await this.showFrame();
      }));
      return li;
    }));
    clearTimeout(this.timer);
    const wasActive = this.wasActive;
    this.wasActive = Boolean(active);
    if (active && this.root.isConnected) this.timer = setTimeout(() => this.refresh().catch((e) => { this.error.textContent = e.message; }), POLL_MS);
    else if (wasActive && this.window !== null) await this.showFrame(); // the analysis is new: show its boxes
  }

  async showFrame() {
    if (this.window === null) return;
    this.frameInput.value = String(this.frame);
    this.selected = null;
    const url = `${this.base}/windows/${this.window}/frame.jpg?frame=${this.frame}`;
    // The same src again fires no load event: only a new frame is waited for.
    const loaded = this.img.getAttribute("src") === url ? Promise.resolve()
      : new Promise((resolve) => {
        this.img.onload = () => { this.img.hidden = false; resolve(); };
        this.img.onerror = () => { this.img.hidden = true; resolve(); }; // no footage at that frame: said below
        this.img.src = url;
      });
    this.boxes = await api(`${this.base}/windows/${this.window}/boxes?frame=${this.frame}`);
    await loaded;
    this.frameInfo.textContent = this.boxes.analysed
      ? `of ${this.boxes.frames} (${this.boxes.at_utc}); ${this.boxes.boxes.length} box(es)`
      : "not analysed yet: redact once to see the boxes";
    this.paintBoxes();
  }

  paintBoxes() {
    const w = this.img.naturalWidth || 1, h = this.img.naturalHeight || 1;
    const place = (div, [x, y, bw, bh]) => {
      div.style.left = `${(100 * x) / w}%`; div.style.top = `${(100 * y) / h}%`;
      div.style.width = `${(100 * bw) / w}%`; div.style.height = `${(100 * bh) / h}%`;
      return div;
    };
    const divs = [];
    for (const b of (this.boxes && this.boxes.boxes) || []) {
      const div = place(el("div", { class: `lw-red-box ${b.obscured ? "lw-red-obscured" : "lw-red-visible"}`,
        "data-track": String(b.track), "data-kind": b.kind, title: `${b.kind} track ${b.track}: ${b.obscured ? "obscured" : `left visible (${b.marked})`}` }), b.box);
      if (this.selected && this.selected.track === b.track) div.classList.add("lw-red-selected");
      div.addEventListener("click", () => { this.selected = { track: b.track, box: b.box, frame: this.boxes.frame }; this.paintBoxes(); });
      divs.push(div);
    }
    if (this.selected && this.selected.draw) divs.push(place(el("div", { class: "lw-red-box lw-red-drawn lw-red-selected", id: "lw-red-drawn" }), this.selected.draw));
    this.overlay.replaceChildren(...divs);
    this.stage.dataset.frame = String(this.boxes ? this.boxes.frame : this.frame); // what the picture and boxes show
  }

  async mark(kind) {
    const sel = this.selected;
    if (!sel) throw new Error(kind === "add" ? "Draw a box on the picture first (drag)." : "Click a box on the picture first.");
    if (kind === "add" && !sel.draw) throw new Error("Draw a box on the picture first (drag).");
    if (kind !== "add" && !sel.track) throw new Error("Click a box the analysis found first.");
    const [x, y, w, h] = sel.draw || sel.box;
    await api(`${this.base}/marks`, { method: "POST", body: { window: this.window, kind, frame: sel.frame, x, y, w, h } });
    await this.refresh();
    await this.showFrame();
  }
}
