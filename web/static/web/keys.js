// The new key's page: a Copy button for the secret (shown only with script), and the field selects
// itself on focus so it can be copied by keyboard too. No inline script: the content security policy.
"use strict";

document.querySelectorAll("[data-select-on-focus]").forEach((field) => {
  field.addEventListener("focus", () => field.select());
});

document.querySelectorAll("button[data-copy]").forEach((button) => {
  const field = document.getElementById(button.dataset.copy);
  const status = document.getElementById("copy-status");
  if (!field || !navigator.clipboard) return;
  button.hidden = false;
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(field.value);
      status.textContent = "Copied to the clipboard.";
    } catch (error) {
      field.focus();
      status.textContent = "Could not copy: the key is selected, press Ctrl+C (or ⌘C) to copy it.";
    }
  });
});
