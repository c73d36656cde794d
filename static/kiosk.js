// fastfood customer kiosk: a SHARED screen in the lobby.
//
// 1. Say what you want (type it, or tap items), POST /order.
// 2. For a short while (RESET_S seconds, or ?reset=N for tests), show the
//    number, the pickup code and a QR code of the customer's own page
//    (/my/N#code=C, drawn by POST /qr), with the wait in words, live.
// 3. Then clear everything and show a fresh order screen by itself.
//
// Nothing of an order is ever written to localStorage or sessionStorage: a
// reload, or the next customer, never sees someone else's number or code.
// API errors are shown as the sentence in the JSON error's `message` field.
"use strict";

(() => {
  const MAX_CHARS = 1000;
  const { OFFLINE, errorSentence, retryAfter, formatCode, waitWords, follow } = window.Fastfood;
  /** How long a ticket stays on screen, in seconds; `?reset=3` shortens it. */
  const RESET_S = (() => {
    const asked = Number(new URLSearchParams(location.search).get("reset"));
    return Number.isFinite(asked) && asked > 0 ? asked : 30;
  })();

  const $ = (id) => document.getElementById(id);
  const el = {
    orderView: $("order-view"),
    form: $("order-form"),
    picks: $("picks"),
    text: $("order-text"),
    count: $("order-count"),
    clear: $("clear"),
    place: $("place"),
    orderError: $("order-error"),
    ticketView: $("ticket-view"),
    number: $("ticket-number"),
    codeBlock: $("code-block"),
    code: $("pickup-code"),
    qrBlock: $("qr-block"),
    qr: $("qr"),
    content: $("ticket-content"),
    status: $("ticket-status"),
    wait: $("wait"),
    done: $("done"),
    resetNote: $("reset-note"),
  };

  const STATUS_TEXT = {
    TAKEN: "In line.",
    PREPARING: "Being prepared…",
    READY: "Ready! Collect it at the counter with your pickup code.",
    COLLECTED: "Collected. Enjoy your meal!",
    CANCELLED: "This order was cancelled.",
    GONE: "This order is no longer on the board.",
  };

  /** The ticket on screen: { order, status, … } or null. */
  let ticket = null;

  // ---------------------------------------------------------------- ordering

  /** Quick-pick items: singular and plural, so taps can count ("2 burgers"). */
  const ITEMS = {
    burger: "burgers",
    cheeseburger: "cheeseburgers",
    "veggie wrap": "veggie wraps",
    fries: "fries",
    "nugget box": "nugget boxes",
    cola: "colas",
    milkshake: "milkshakes",
    "ice cream": "ice creams",
  };

  /** Add one `item` to the text: "1 burger" becomes "2 burgers", anything typed is kept. */
  function addItem(item) {
    const plural = ITEMS[item] ?? item;
    const parts = el.text.value
      .split(",")
      .map((p) => p.trim())
      .filter(Boolean);
    let found = false;
    const updated = parts.map((part) => {
      const m = /^(\d+)\s*(?:x\s*)?(.+)$/i.exec(part);
      const qty = m ? Number(m[1]) : 1;
      const name = (m ? m[2] : part).trim().toLowerCase();
      if (found || (name !== item && name !== plural)) return part;
      found = true;
      return `${qty + 1} ${plural}`;
    });
    if (!found) updated.push(`1 ${item}`);
    el.text.value = updated.join(", ");
    updateCount();
  }

  function updateCount() {
    const n = [...el.text.value.trim()].length; // characters, as the server counts them
    el.count.textContent = `${n} / ${MAX_CHARS} characters`;
    el.count.classList.toggle("over", n > MAX_CHARS);
  }

  async function placeOrder(event) {
    event.preventDefault();
    el.orderError.textContent = "";
    const text = el.text.value.trim();
    if (!text) {
      el.orderError.textContent =
        "Your order is empty. Type what you would like, or tap one of the items above.";
      el.text.focus();
      return;
    }
    setBusy(true);
    let res;
    try {
      res = await fetch("/order", {
        method: "POST",
        headers: { "Content-Type": "text/plain; charset=utf-8" },
        body: text,
      });
    } catch {
      setBusy(false);
      el.orderError.textContent = OFFLINE;
      return;
    }

    if (res.ok) {
      let o;
      try {
        o = await res.json();
      } catch {
        setBusy(false);
        el.orderError.textContent =
          "The order may have been placed, but the answer could not be read. Please ask at the counter.";
        return;
      }
      setBusy(false);
      el.text.value = "";
      updateCount();
      showTicket({ ...o, content: o.content ?? text, status: o.status ?? "TAKEN" });
      return;
    }

    const sentence = await errorSentence(res);
    const after = retryAfter(res);
    if (res.status === 503 && after > 0) {
      // Keep the text; let them try again once the server says it may work.
      el.orderError.textContent = `${sentence} You can try again in ${after} s.`;
      countdown(after);
    } else {
      el.orderError.textContent = sentence;
      setBusy(false);
    }
  }

  function setBusy(busy) {
    el.place.disabled = busy;
    el.place.textContent = busy ? "Placing order…" : "Place order";
  }

  /** Disable "Place order" for `seconds`, showing the time left. */
  function countdown(seconds) {
    el.place.disabled = true;
    const end = Date.now() + seconds * 1000;
    const step = () => {
      const left = Math.ceil((end - Date.now()) / 1000);
      if (left <= 0) {
        setBusy(false);
        return;
      }
      el.place.textContent = `Try again in ${left} s`;
      setTimeout(step, 250);
    };
    step();
  }

  // ---------------------------------------------------------------- ticket

  let following = null;
  let resetAt = 0;
  let tickTimer = 0;

  /** Show a just-placed order (the 201's body) until the screen resets. */
  function showTicket(o) {
    ticket = o;
    el.orderView.hidden = true;
    el.ticketView.hidden = false;
    el.number.textContent = String(o.order);
    el.content.textContent = o.content ?? "";
    const code = typeof o.pickup_code === "string" ? o.pickup_code : "";
    el.code.textContent = formatCode(code);
    el.codeBlock.hidden = !code;
    el.qr.replaceChildren();
    el.qrBlock.hidden = true;
    if (code) drawQr(o.order, code);
    renderTicket();
    el.number.focus();
    document.title = `#${o.order} · fastfood`;

    following = follow(o.order, {
      onOrder: (update) => {
        if (!ticket || update.order !== ticket.order) return;
        ticket = { ...ticket, ...update };
        renderTicket();
      },
      onLink: () => {},
    });
    resetAt = Date.now() + RESET_S * 1000;
    tick();
  }

  /** The QR code of the customer's own page, code in the fragment. */
  async function drawQr(order, code) {
    const url = `${location.origin}/my/${order}#code=${encodeURIComponent(code)}`;
    try {
      let res;
      // 503: the server is drawing others; it says when to ask again.
      for (let tries = 0; tries < 3; tries++) {
        res = await fetch("/qr", {
          method: "POST",
          headers: { "Content-Type": "text/plain; charset=utf-8" },
          body: url,
        });
        if (res.status !== 503) break;
        const wait = Number(res.headers.get("Retry-After")) || 1;
        await new Promise((done) => setTimeout(done, wait * 1000));
      }
      if (!res.ok || !ticket || ticket.order !== order) return;
      const svg = new DOMParser().parseFromString(await res.text(), "image/svg+xml").documentElement;
      if (svg.nodeName !== "svg") return;
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", `QR code: order ${order} on your phone`);
      svg.removeAttribute("width");
      svg.removeAttribute("height");
      el.qr.replaceChildren(document.importNode(svg, true));
      el.qrBlock.hidden = false;
    } catch {
      // No QR code: the number and the code are on screen all the same.
    }
  }

  function renderTicket() {
    const s = ticket.status;
    el.ticketView.dataset.status = s;
    el.status.textContent = STATUS_TEXT[s] ?? s;
    el.wait.textContent = waitWords(ticket);
  }

  /** Once a second: the countdown, the wait's words, and the reset itself. */
  function tick() {
    clearTimeout(tickTimer);
    if (!ticket) return;
    const left = Math.ceil((resetAt - Date.now()) / 1000);
    if (left <= 0) {
      showForm();
      return;
    }
    el.resetNote.textContent = `This screen clears in ${left} s for the next customer.`;
    el.wait.textContent = waitWords(ticket);
    tickTimer = setTimeout(tick, 1000);
  }

  /** A fresh order screen: every trace of the last ticket is removed. */
  function showForm() {
    clearTimeout(tickTimer);
    following?.stop();
    following = null;
    ticket = null;
    for (const e of [el.number, el.code, el.content, el.status, el.wait, el.resetNote]) {
      e.textContent = "";
    }
    el.qr.replaceChildren();
    el.codeBlock.hidden = true;
    el.qrBlock.hidden = true;
    delete el.ticketView.dataset.status;
    document.title = "Order here · fastfood";
    el.ticketView.hidden = true;
    el.orderView.hidden = false;
    el.orderError.textContent = "";
    el.text.focus();
  }

  // ---------------------------------------------------------------- wiring

  el.picks.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-item]");
    if (button) addItem(button.dataset.item);
  });
  el.text.addEventListener("input", updateCount);
  el.text.addEventListener("keydown", (event) => {
    // Ctrl/Cmd+Enter places the order; plain Enter makes a new line.
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) el.form.requestSubmit();
  });
  el.clear.addEventListener("click", () => {
    el.text.value = "";
    updateCount();
    el.text.focus();
  });
  el.form.addEventListener("submit", placeOrder);
  el.done.addEventListener("click", showForm);

  updateCount();
  // Earlier versions of this page kept the last ticket across reloads: drop it.
  try {
    sessionStorage.removeItem("fastfood.ticket");
  } catch {
    // storage disabled: nothing was kept either
  }
})();
