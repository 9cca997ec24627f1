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

// A page sent back with errors: the first field in error (else the form's own errors) gets the focus,
// so a keyboard or screen-reader user starts where the problem is, and the page scrolls to it.
document.addEventListener("DOMContentLoaded", () => {
  const invalid = document.querySelector("form [aria-invalid=true]");
  if (invalid) {
    invalid.focus();
    return;
  }
  const summary = document.querySelector(".form-errors");
  if (summary) {
    summary.setAttribute("tabindex", "-1");
    summary.focus();
  }
});
