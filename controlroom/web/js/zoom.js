// Digital zoom and pan on a <video> (live or recorded): the wheel zooms about the pointer (1x to
// 8x), a drag pans while zoomed, a double click (or 0) goes back to the whole picture. Only the
// picture on this screen is enlarged: nothing is asked of the camera (PTZ is the optical zoom).

const MIN = 1, MAX = 8, STEP = 1.25;

export class DigitalZoom {
  constructor(box, video) {
    Object.assign(this, { box, video });
    this.scale = 1; this.x = 0; this.y = 0;
    video.style.transformOrigin = "0 0";
    this.badge = document.createElement("span");
    this.badge.className = "zoom-badge"; this.badge.hidden = true;
    box.append(this.badge);
    box.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const r = box.getBoundingClientRect();
      this.zoomAt(ev.deltaY < 0 ? STEP : 1 / STEP, ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
    let drag = null;
    box.addEventListener("pointerdown", (ev) => {
      if (this.scale === 1 || ev.button !== 0 || ev.target.closest("button, a, select, input")) return;
      drag = { px: ev.clientX, py: ev.clientY, x: this.x, y: this.y, id: ev.pointerId };
      box.setPointerCapture(ev.pointerId); box.classList.add("panning");
    });
    box.addEventListener("pointermove", (ev) => {
      if (!drag || ev.pointerId !== drag.id) return;
      this.x = drag.x + ev.clientX - drag.px; this.y = drag.y + ev.clientY - drag.py; this.apply();
    });
    const end = () => { drag = null; box.classList.remove("panning"); };
    box.addEventListener("pointerup", end); box.addEventListener("pointercancel", end);
    box.addEventListener("dblclick", (ev) => { if (this.scale !== 1) { ev.stopPropagation(); this.reset(); } });
  }

  /** Zoom by ``factor`` keeping the point (px, py) of the box where it is (centre if omitted). */
  zoomAt(factor, px, py) {
    const w = this.box.clientWidth, h = this.box.clientHeight;
    px ??= w / 2; py ??= h / 2;
    const s = Math.min(MAX, Math.max(MIN, this.scale * factor));
    const k = s / this.scale;
    this.x = px - (px - this.x) * k; this.y = py - (py - this.y) * k; this.scale = s;
    this.apply();
  }

  reset() { this.scale = 1; this.x = 0; this.y = 0; this.apply(); }

  /** Keys while the box (or its screen) has focus: + and - zoom, 0 resets. */
  onKey(key) {
    if (key === "+" || key === "=") this.zoomAt(STEP);
    else if (key === "-") this.zoomAt(1 / STEP);
    else if (key === "0") this.reset();
    else return false;
    return true;
  }

  apply() {
    const w = this.box.clientWidth, h = this.box.clientHeight;
    // Keep the enlarged picture over the whole box: no panning off into black.
    this.x = Math.min(0, Math.max(w - w * this.scale, this.x));
    this.y = Math.min(0, Math.max(h - h * this.scale, this.y));
    this.video.style.transform = this.scale === 1 ? "" : `translate(${this.x}px, ${this.y}px) scale(${this.scale})`;
    this.box.dataset.zoom = this.scale.toFixed(2);
    this.badge.hidden = this.scale === 1;
    this.badge.textContent = `Digital zoom ${this.scale.toFixed(1)}×`;
  }
}
