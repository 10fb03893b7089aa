// One picture large, over the screen (a plate read's overview image): a modal <dialog>, closed
// with Esc, the Close button or a click anywhere on it. The caption is set as text.

import { $ } from "./dom.js";

let wired = false;

export function showImage(src, caption) {
  const dialog = $("image-dialog");
  if (!wired) {
    wired = true;
    dialog.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => { $("image-dialog-img").removeAttribute("src"); });
  }
  $("image-dialog-img").src = src;
  $("image-dialog-img").alt = caption;
  $("image-dialog-caption").textContent = caption;
  dialog.showModal();
  $("image-dialog-close").focus();
}
