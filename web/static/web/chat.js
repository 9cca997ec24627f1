// The chat page's message form, streamed: the API's own streamed turn
// (POST /api/v1/sessions/{id}/turns/ with Accept: text/event-stream) under the session cookie and
// the CSRF token. Deltas are appended as they come; a 402 shows the top-up prompt and keeps what
// was typed; a stream that errors says so. One message at a time: a double click sends one.
// Without this script the form posts to the page, which takes the same turn unstreamed.
"use strict";

(() => {
  const form = document.getElementById("message-form");
  if (!form || !window.fetch || !window.TextDecoder) return;
  const textarea = form.querySelector("textarea[name=content]");
  const send = document.getElementById("send");
  const status = document.getElementById("chat-status");
  const log = document.getElementById("conversation");
  const topUp = document.getElementById("top-up");
  const capReached = document.getElementById("cap-reached");
  const capDetail = document.getElementById("cap-reached-detail");
  const errorBox = document.getElementById("chat-error");
  const available = document.getElementById("available");
  const lowBalance = document.getElementById("low-balance");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const modelName = log.dataset.model || "";
  let busy = false;

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function clearNotices() {
    errorBox.hidden = true;
    errorBox.textContent = "";
    topUp.hidden = true;
    capReached.hidden = true;
    form.querySelectorAll(".errorlist, .form-errors").forEach((node) => node.remove());
  }

  function bubble(role, who, text) {
    const box = document.createElement("div");
    box.className = `msg ${role}`;
    const label = document.createElement("span");
    label.className = "who";
    label.textContent = who;
    const body = document.createElement("p");
    body.className = "text";
    body.textContent = text;
    box.append(label, body);
    return box;
  }

  function done(turn, item) {
    item.id = `turn-${turn.id}`;
    item.querySelector(".msg.assistant .text").textContent = turn.assistant_message.content;
    const cost = document.createElement("p");
    cost.className = "usage";
    cost.textContent = `${turn.usage.cost} credits (${turn.usage.input_tokens} in, ${turn.usage.output_tokens} out)`;
    item.querySelector(".msg.assistant").append(cost);
    lowBalance.hidden = !turn.low_balance;
    refreshAvailable();
  }

  // `done` carries the balance after the turn, but this figure is what is available: the balance less
  // what other calls still hold (a key's, another tab's), which only the server knows. Read it again;
  // should that fail, the figure is left as it was rather than show the balance under its name.
  async function refreshAvailable() {
    try {
      const response = await fetch(available.dataset.url, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (!response.ok) return;
      const figures = await response.json();
      available.textContent = figures.available;
      lowBalance.hidden = !figures.low_balance;
    } catch (_) { /* a sign-in page or a lost connection: the next page load shows the figure */ }
  }

  // Server-sent events from a fetch body: blocks separated by a blank line, "event:" and "data:" lines.
  async function* events(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done: finished } = await reader.read();
      if (finished) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trim());
        }
        if (data.length) yield { name, data: JSON.parse(data.join("\n")) };
      }
    }
  }

  async function refusal(response) {
    let body = {};
    try { body = await response.json(); } catch (_) { /* not JSON: say what happened below */ }
    if (response.status === 402 && body.limit_source === "spend_cap") {
      // Credits are left; a spending cap refused it: say which, and where to change it.
      capDetail.textContent = body.detail || "";
      capReached.hidden = false;
      capReached.focus();
      return;
    }
    if (response.status === 402) {
      topUp.hidden = false;
      topUp.focus();
      return;
    }
    if (response.status === 400 && body.content) {
      showError(body.content.join(" "));
    } else if (response.status === 403 || response.status === 401) {
      showError("Your sign-in has expired. Reload the page and sign in again; what you typed is kept here.");
    } else {
      showError(body.detail || `The message could not be sent (${response.status}). Try again in a moment.`);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    const content = textarea.value;
    clearNotices();
    if (!content.trim()) {
      showError("Write a message first.");
      textarea.focus();
      return;
    }
    busy = true;
    send.disabled = true;
    status.textContent = "Sending…";
    const empty = document.getElementById("conversation-empty");
    const item = document.createElement("li");
    item.className = "turn pending";
    const answer = bubble("assistant", modelName || "Answer", "");
    answer.setAttribute("aria-busy", "true");
    item.append(bubble("user", "You", content), answer);
    let kept = false;
    try {
      const response = await fetch(form.dataset.streamUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream", "X-CSRFToken": csrf },
        body: JSON.stringify({ content }),
      });
      if (!response.ok || !(response.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
        await refusal(response);
        return;
      }
      if (empty) empty.remove();
      log.append(item);
      status.textContent = "Writing…";
      const text = answer.querySelector(".text");
      for await (const sse of events(response)) {
        if (sse.name === "delta") {
          text.textContent += sse.data.text;
        } else if (sse.name === "done") {
          done(sse.data, item);
          kept = true;
          textarea.value = "";
          status.textContent = "Answered.";
        } else if (sse.name === "error") {
          showError(sse.data.detail || "The answer failed; try again.");
          status.textContent = "";
        }
      }
      if (!kept && errorBox.hidden) showError("The answer was cut off; nothing more was charged. Send it again.");
    } catch (_) {
      showError("The connection was lost before the answer finished. Send the message again.");
    } finally {
      answer.removeAttribute("aria-busy");
      item.classList.remove("pending");
      if (!kept) {
        item.remove(); // an unfinished answer is not kept by the server either
        if (status.textContent !== "") status.textContent = "";
      }
      busy = false;
      send.disabled = false;
      // The send button was disabled under the keyboard's focus: give it back where typing goes on.
      if (kept && (document.activeElement === document.body || document.activeElement === send)) {
        textarea.focus();
      }
    }
  });

  // Leaving mid-answer stops it, and what the model wrote so far is still charged (docs/api.md):
  // the browser asks first.
  window.addEventListener("beforeunload", (event) => {
    if (busy) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
})();
