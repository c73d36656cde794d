// fastfood customer kiosk.
//
// 1. Say what you want (type it, or tap items), POST /order, get a number.
// 2. Watch that number live through GET /updates (Server-Sent Events).
// 3. When it is READY, collect it: POST /take?order=N.
//
// API errors are shown as the sentence in the JSON error's `message` field.
"use strict";

(() => {
  const MAX_CHARS = 1000;
  const STORAGE_KEY = "fastfood.ticket";

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
    content: $("ticket-content"),
    steps: $("steps"),
    status: $("ticket-status"),
    collect: $("collect"),
    ticketError: $("ticket-error"),
    liveNote: $("live-note"),
    newOrder: $("new-order"),
  };

  /** Statuses only move forward; CANCELLED and GONE are final like COLLECTED. */
  const RANK = { TAKEN: 0, PREPARING: 1, READY: 2, COLLECTED: 3, CANCELLED: 3, GONE: 3 };
  const FINAL = new Set(["COLLECTED", "CANCELLED", "GONE"]);

  const STATUS_TEXT = {
    TAKEN: "In line. The kitchen starts on it soon.",
    PREPARING: "Being prepared…",
    READY: "Ready! Collect it at the counter.",
    COLLECTED: "Collected. Enjoy your meal!",
    CANCELLED:
      "Sorry, this order was withdrawn: the kitchen could not take it. Please place it again.",
    GONE: "This order is no longer on the board: it was collected or withdrawn.",
  };

  /** The current ticket: { order, content, status } or null. */
  let ticket = null;

  // ---------------------------------------------------------------- API

  /**
   * Turn a failed response into a sentence for a person. The server's JSON
   * errors carry one in `message`; anything else gets a sentence from us.
   */
  async function errorSentence(res) {
    try {
      const body = await res.json();
      if (body && typeof body.message === "string" && body.message.trim()) {
        return body.message.trim();
      }
    } catch {
      // not JSON (a proxy's error page, say): fall through
    }
    if (res.status === 413) return `That order is too long: please keep it under ${MAX_CHARS} characters.`;
    if (res.status === 429 || res.status === 503) {
      return "The kitchen is very busy right now. Please try again in a moment.";
    }
    if (res.status >= 500) return "Something went wrong on our side. Please try again.";
    return "The restaurant could not handle that request. Please try again.";
  }

  const OFFLINE = "The restaurant cannot be reached right now. Check the connection and try again.";

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

  let audio = null;

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
    // A click is the only moment a page may start audio: prepare a chime for READY.
    try {
      audio ??= new (window.AudioContext || window.webkitAudioContext)();
    } catch {
      audio = null;
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
      showTicket({ order: o.order, content: o.content ?? text, status: o.status ?? "TAKEN" });
      return;
    }

    const sentence = await errorSentence(res);
    const retryAfter = Number.parseInt(res.headers.get("Retry-After") ?? "", 10);
    if (res.status === 503 && retryAfter > 0) {
      // Keep the text; let them try again once the server says it may work.
      el.orderError.textContent = `${sentence} You can try again in ${retryAfter} s.`;
      countdown(retryAfter);
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

  function showTicket(t) {
    ticket = t;
    save();
    el.orderView.hidden = true;
    el.ticketView.hidden = false;
    el.ticketError.textContent = "";
    el.number.textContent = String(t.order);
    el.content.textContent = t.content ?? "";
    renderStatus();
    el.number.focus();
    if (!FINAL.has(t.status)) startStream();
  }

  function showForm() {
    stopStream();
    ticket = null;
    save();
    document.title = "Order here · fastfood";
    el.ticketView.hidden = true;
    el.orderView.hidden = false;
    el.orderError.textContent = "";
    el.text.focus();
  }

  /** Apply a status for our ticket; statuses never go backward. */
  function setStatus(status) {
    if (!ticket || !(status in RANK) || FINAL.has(ticket.status)) return;
    if (RANK[status] <= RANK[ticket.status]) return;
    const becameReady = status === "READY";
    ticket.status = status;
    save();
    renderStatus();
    if (becameReady) notifyReady();
    if (FINAL.has(status)) {
      stopStream();
      sessionStorage.removeItem(STORAGE_KEY); // nothing left to follow after a reload
    }
  }

  function renderStatus() {
    const s = ticket.status;
    el.ticketView.dataset.status = s;
    el.status.textContent = STATUS_TEXT[s] ?? s;
    const rank = RANK[s];
    for (const li of el.steps.children) {
      const r = RANK[li.dataset.step];
      li.classList.toggle("done", r < rank || (r === rank && s === "COLLECTED"));
      if (r === rank && s !== "COLLECTED" && !FINAL.has(s)) li.setAttribute("aria-current", "step");
      else li.removeAttribute("aria-current");
    }
    const ready = s === "READY";
    el.collect.disabled = !ready;
    el.collect.classList.toggle("go", ready);
    el.collect.hidden = FINAL.has(s);
    el.collect.textContent = ready ? "Collect my order" : "Collect (when ready)";
    el.newOrder.textContent = FINAL.has(s) ? "Place another order" : "Start a new order";
    document.title = `${ready ? "Ready: " : ""}#${ticket.order} · fastfood`;
  }

  function notifyReady() {
    navigator.vibrate?.([200, 100, 200]);
    if (audio) {
      audio.resume();
      const t0 = audio.currentTime + 0.02;
      [
        [987.77, 0],
        [1318.51, 0.22],
      ].forEach(([freq, delay]) => {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, t0 + delay);
        gain.gain.exponentialRampToValueAtTime(0.3, t0 + delay + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, t0 + delay + 1.1);
        osc.connect(gain).connect(audio.destination);
        osc.start(t0 + delay);
        osc.stop(t0 + delay + 1.2);
      });
    }
  }

  async function collect() {
    if (!ticket || ticket.status !== "READY") return;
    el.ticketError.textContent = "";
    el.collect.disabled = true;
    let res;
    try {
      res = await fetch(`/take?order=${encodeURIComponent(ticket.order)}`, { method: "POST" });
    } catch {
      el.ticketError.textContent = OFFLINE;
      el.collect.disabled = false;
      return;
    }
    if (res.ok) {
      setStatus("COLLECTED");
      el.newOrder.focus(); // the collect button is gone: keep focus somewhere useful
      return;
    }
    el.ticketError.textContent = await errorSentence(res);
    if (res.status === 410) setStatus("COLLECTED");
    else if (res.status === 404) setStatus("GONE");
    else {
      el.collect.disabled = ticket.status !== "READY";
      refresh();
    }
  }

  /** Ask the server where our order is (after a resync that does not list it, or a reload). */
  async function refresh() {
    if (!ticket) return;
    const asked = ticket.order;
    try {
      const res = await fetch(`/orders/${encodeURIComponent(asked)}`, { cache: "no-store" });
      if (!ticket || ticket.order !== asked) return;
      if (res.ok) {
        const o = await res.json();
        setStatus(o.status);
      } else if (res.status === 404) {
        setStatus("GONE");
      }
    } catch {
      // offline: the stream's own note says so
    }
  }

  function save() {
    try {
      if (ticket && !FINAL.has(ticket.status)) {
        sessionStorage.setItem(STORAGE_KEY, JSON.stringify(ticket));
      } else {
        sessionStorage.removeItem(STORAGE_KEY);
      }
    } catch {
      // storage disabled: the page still works, it just forgets on reload
    }
  }

  // ---------------------------------------------------------------- live updates

  let source = null;
  let retryTimer = 0;
  let retryDelay = 1000;

  function startStream() {
    stopStream();
    setLive("connecting");
    source = new EventSource("/updates");
    source.onmessage = (ev) => {
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return;
      }
      retryDelay = 1000;
      setLive("live");
      onBoard(data);
    };
    source.onerror = () => {
      setLive("down");
      if (source.readyState === EventSource.CLOSED) {
        // The browser will not retry by itself: do it, backing off.
        retryTimer = setTimeout(startStream, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 30000);
      }
    };
  }

  function stopStream() {
    clearTimeout(retryTimer);
    if (source) source.close();
    source = null;
    el.liveNote.textContent = "";
    el.liveNote.classList.remove("down");
  }

  function setLive(state) {
    el.liveNote.classList.toggle("down", state === "down");
    el.liveNote.textContent =
      state === "live"
        ? "Live: this page updates by itself."
        : state === "down"
          ? "Connection lost: the status above may be out of date. Reconnecting…"
          : "Connecting…";
  }

  /** One SSE event: `{version, change, orders}`; `orders` is the whole board. */
  function onBoard(data) {
    if (!ticket) return;
    const orders = Array.isArray(data.orders) ? data.orders : [];
    const mine = orders.find((o) => o.order === ticket.order);
    if (mine) {
      setStatus(mine.status);
    } else if (data.change && data.change.order === ticket.order) {
      setStatus(data.change.status); // COLLECTED or CANCELLED: it left the board
    } else if (!FINAL.has(ticket.status)) {
      refresh(); // not on the board and we missed why (e.g. while offline): ask
    }
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
  el.collect.addEventListener("click", collect);
  el.newOrder.addEventListener("click", showForm);

  updateCount();

  // A reload keeps following the order placed in this tab.
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? "null");
  } catch {
    saved = null;
  }
  if (saved && Number.isInteger(saved.order) && saved.status in RANK) {
    showTicket(saved);
    refresh();
  }
})();
