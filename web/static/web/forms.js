// Every form marked data-once submits once: a double click (or Enter twice) sends one request.
// A form with data-confirm asks first. No inline script: the content security policy forbids it.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-once")) return;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    return;
  }
  if (form.dataset.submitting === "true") {
    event.preventDefault();
    return;
  }
  if (event.defaultPrevented) return; // a script (chat.js) sends this one itself
  form.dataset.submitting = "true";
  // After this tick, so the submitting button's own value still goes with the form.
  setTimeout(() => form.querySelectorAll("button[type=submit]").forEach((b) => { b.disabled = true; }), 0);
});

// Back to a page from the history cache: its forms may be sent again.
window.addEventListener("pageshow", () => {
  document.querySelectorAll("form[data-once]").forEach((form) => {
    delete form.dataset.submitting;
    form.querySelectorAll("button[type=submit]").forEach((b) => { b.disabled = false; });
  });
});
