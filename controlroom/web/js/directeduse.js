// Directed use (RIPA) in the single camera view's PTZ panel, for operators following a person
// at police request: link this camera to a RIPA authorisation in force before steering, so every
// PTZ move is audited with its reference (docs/design/lawful-use.md). The authorisations are read
// only when the operator asks (each read is an audited disclosure); the operator's open uses are
// read once, on the first PTZ camera opened, and then followed locally. Text only, never markup.

import { api } from "./api.js";
import { el } from "./dom.js";
import { formatLocal } from "./time.js";

export class DirectedUsePanel {
  constructor(ptzPanel) {
    this.root = el("section", { id: "du", class: "du", "aria-label": "Directed use (RIPA)" });
    ptzPanel.append(this.root);
    this.uses = null; // open uses of this operator by camera id, once read
    this.cam = null;
  }

  async open(cam) {
    this.cam = cam && cam.ptz ? cam : null;
    this.root.replaceChildren();
    if (!this.cam) return;
    if (this.uses === null) {
      try {
        const data = await api("/api/v1/ripa/directed-use");
        this.uses = new Map(data.uses.map((u) => [u.camera_id, u]));
      } catch (e) { this.render(`Directed use unavailable: ${e.message}`); return; }
    }
    this.render();
  }

  close() { this.cam = null; this.root.replaceChildren(); }

  render(problem = "") {
    const cam = this.cam;
    if (!cam) return;
    const error = el("p", { class: "error small", role: "alert", id: "du-error", text: problem });
    const use = this.uses && this.uses.get(cam.id);
    const parts = [el("h3", { text: "Directed use (RIPA)" })];
    if (use) {
      const end = el("button", { type: "button", id: "du-end", text: "End directed use" });
      end.addEventListener("click", async () => {
        end.disabled = true;
        try { await api("/api/v1/ripa/directed-use/end", { method: "POST", body: { use: use.id } }); this.uses.delete(cam.id); this.render(); }
        catch (e) { end.disabled = false; error.textContent = e.message; }
      });
      parts.push(el("p", { id: "du-status", class: "du-linked small",
        text: `Linked to ${use.reference} since ${formatLocal(Date.parse(use.started.utc), { date: false })}: every move is recorded with it.` }), end);
    } else {
      const pick = el("button", { type: "button", id: "du-pick", text: "Link to an authorisation…" });
      pick.addEventListener("click", () => this.choose(error));
      parts.push(el("p", { id: "du-status", class: "muted small", text: "Not linked. Following a person at police request needs a RIPA authorisation." }), pick);
    }
    parts.push(error);
    this.root.replaceChildren(...parts);
  }

  async choose(error) {
    const cam = this.cam;
    let list;
    try { list = (await api("/api/v1/ripa/in-force")).authorisations; }
    catch (e) { error.textContent = e.message; return; }
    const covering = list.filter((a) => a.cameras.includes(cam.id) || (!a.cameras.length && !a.sites.length) || a.sites.length);
    if (!covering.length) { error.textContent = "No authorisation in force covers this camera."; return; }
    const select = el("select", { id: "du-authorisation", "aria-label": "Authorisation" },
      ...covering.map((a) => el("option", { value: a.reference, text: `${a.reference}: ${a.subject} (to ${formatLocal(Date.parse(a.expires.utc))})` })));
    const purpose = el("input", { id: "du-purpose", autocomplete: "off", placeholder: "purpose, e.g. at the request of DC Smith" });
    const start = el("button", { type: "button", id: "du-start", class: "ok", text: "Start directed use" });
    start.addEventListener("click", async () => {
      start.disabled = true;
      try {
        const use = await api("/api/v1/ripa/directed-use", { method: "POST", body: { authorisation: select.value, camera: cam.id, purpose: purpose.value } });
        this.uses.set(cam.id, use);
        this.render();
      } catch (e) { start.disabled = false; error.textContent = e.message; }
    });
    this.root.replaceChildren(el("h3", { text: "Directed use (RIPA)" }), select, purpose, start, error);
  }
}
