// Building the page's elements: text and attributes only, never markup (the CSP and the
// "<script> in a camera name" test rely on it).

export const $ = (id) => document.getElementById(id);

/** A new element with text and attributes; children appended. */
export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}
