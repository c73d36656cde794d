// fastfood: one customer's own order, on their phone (GET /my/N).
//
// The number comes from the page's path; the pickup code from the URL
// fragment (#code=482913), which the browser never sends to a server, so no
// log holds it. Without a code the page asks for one; it never guesses.
// The status follows GET /updates live; the wait comes from GET /orders/N.
// Cancel while TAKEN (POST /cancel), collect once READY (POST /take), both
// with the code. When the order becomes READY: a clear banner, a vibration
// and a chime where the phone allows.
"use strict";

(() => {
  const { OFFLINE, RANK, FINAL, errorSentence, retryAfter, formatCode, waitWords, follow, chime, newAudio } =
    window.Fastfood;

  const $ = (id) => document.getElementById(id);
  const el = {
    codeView: $("code-view"),
    codeForm: $("code-form"),
    codeInput: $("code-input"),
    codeError: $("code-error"),
    ticket: $("ticket"),
    number: $("number"),
    banner: $("ready-banner"),
    content: $("content"),
    steps: $("steps"),
    status: $("status"),
    wait: $("wait"),
    collect: $("collect"),
    cancel: $("cancel"),
    confirm: $("confirm"),
    confirmYes: $("confirm-yes"),
    confirmNo: $("confirm-no"),
    error: $("error"),
    codeLine: $("code-line"),
    code: $("code"),
    changeCode: $("change-code"),
    liveNote: $("live-note"),
    sound: $("sound"),
  };

  const STATUS_TEXT = {
    TAKEN: "In line.",
    PREPARING: "Being prepared…",
    READY: "Your order is waiting for you at the counter.",
    COLLECTED: "Collected. Enjoy your meal!",
    CANCELLED: "Cancelled. The kitchen will not make this order.",
    GONE: "This order is no longer on the board: it was collected or cancelled.",
  };
  /** A poison order the kitchen set aside (CANCELLED, cancelled_by "kitchen"). */
  const SET_ASIDE_TEXT =
    "Sorry: the kitchen could not make this order and had to set it aside. Please see the counter.";

  const n = (() => {
    const m = /^\/my\/0*([0-9]{1,10})\/?$/.exec(location.pathname);
    const v = m ? Number(m[1]) : NaN;
    return Number.isSafeInteger(v) && v > 0 ? v : null;
  })();

  /** The pickup code (six digits), or "" when we do not have one. */
  let code = readCode();
  /** What we know of the order: { order, status, ahead?, estimated_ready_at?, content? }. */
  let order = null;
  let audio = null;
  /** No action until this time (after a 429 with Retry-After). */
  let blockedUntil = 0;

  function readCode() {
    const found = new URLSearchParams(location.hash.slice(1)).get("code") ?? "";
    const digits = found.replace(/\s+/g, "");
    return /^[0-9]{6}$/.test(digits) ? digits : "";
  }

  /** Keep the code in the fragment (never sent to a server) so a reload keeps it. */
  function writeCode(value) {
    code = value;
    const hash = value ? `#code=${value}` : "";
    history.replaceState(null, "", location.pathname + location.search + hash);
  }

  // ---------------------------------------------------------------- render

  function render() {
    const s = order?.status ?? "";
    el.ticket.dataset.status = s;
    document.body.dataset.status = s;
    const setAside = s === "CANCELLED" && order?.cancelled_by === "kitchen";
    document.body.dataset.setAside = String(setAside);
    el.status.textContent = order
      ? setAside
        ? SET_ASIDE_TEXT
        : (STATUS_TEXT[s] ?? s)
      : "Looking up your order…";
    setText(el.wait, waitWords(order));
    el.content.textContent = order?.content ?? "";
    el.banner.hidden = s !== "READY";

    const rank = RANK[s] ?? -1;
    for (const li of el.steps.children) {
      const r = RANK[li.dataset.step];
      const done = r < rank || (r === rank && s === "COLLECTED");
      li.classList.toggle("done", done);
      if (r === rank && !FINAL.has(s)) li.setAttribute("aria-current", "step");
      else li.removeAttribute("aria-current");
    }
    el.steps.hidden = s === "CANCELLED" || s === "GONE";

    const blocked = Date.now() < blockedUntil;
    el.collect.hidden = !code || s !== "READY";
    el.collect.disabled = blocked;
    el.cancel.hidden = !code || s !== "TAKEN" || !el.confirm.hidden;
    el.cancel.disabled = blocked;
    if (s !== "TAKEN") el.confirm.hidden = true;
    el.confirmYes.disabled = blocked;

    el.codeView.hidden = Boolean(code) || FINAL.has(s);
    el.codeLine.hidden = !code || FINAL.has(s);
    el.code.textContent = formatCode(code);
    document.title = order ? `${s === "READY" ? "Ready: " : ""}#${n} · fastfood` : "Your order · fastfood";
  }

  /** Change text only when it changes, so aria-live does not repeat itself. */
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function onOrder(update) {
    const was = order?.status;
    if (update.status === "GONE" && was === undefined) {
      // Never seen: not an order that left, but a number that is not one.
      STATUS_TEXT.GONE = `There is no order ${n} here. Please check the number on your ticket.`;
    }
    order = { ...(order ?? {}), ...update };
    if (order.status !== "TAKEN") delete order.ahead;
    if (FINAL.has(order.status) || order.status === "READY") delete order.estimated_ready_at;
    render();
    if (FINAL.has(order.status)) el.liveNote.textContent = ""; // nothing more will change
    if (order.status === "READY" && was !== "READY") readyNow(was !== undefined);
  }

  /** The moment it becomes ready: buzz and chime (only if we saw it change). */
  function readyNow(changed) {
    el.number.focus();
    if (!changed) return;
    navigator.vibrate?.([300, 150, 300, 150, 300]);
    chime(audio);
  }

  function onLink(state) {
    el.liveNote.classList.toggle("down", state === "down");
    el.liveNote.textContent =
      state === "live"
        ? "Live: this page updates by itself."
        : state === "down"
          ? "Connection lost: the status above may be out of date. Reconnecting…"
          : "Connecting…";
    if (order && FINAL.has(order.status)) el.liveNote.textContent = "";
  }

  // ---------------------------------------------------------------- actions

  /** POST /take or /cancel with the code; what the answer means for the page. */
  async function act(path) {
    if (!code || Date.now() < blockedUntil) return;
    el.error.textContent = "";
    for (const b of [el.collect, el.cancel, el.confirmYes]) b.disabled = true;
    let res;
    try {
      // In the body, as a form: a request line is kept by proxies and logs.
      res = await fetch(path, { method: "POST", body: new URLSearchParams({ order: n, code }) });
    } catch {
      el.error.textContent = OFFLINE;
      render();
      return;
    }
    if (res.ok) {
      el.confirm.hidden = true;
      onOrder({ order: n, status: path === "/take" ? "COLLECTED" : "CANCELLED" });
      following.stop();
      el.liveNote.textContent = "";
      return;
    }
    el.error.textContent = await errorSentence(res);
    if (res.status === 403) {
      // The code is wrong: ask for it again rather than keep sending it.
      writeCode("");
      el.codeError.textContent = el.error.textContent;
      el.error.textContent = "";
    } else if (res.status === 429) {
      const wait = retryAfter(res) || 60;
      blockedUntil = Date.now() + wait * 1000;
      el.error.textContent += ` You can try again in ${wait} s.`;
      setTimeout(render, wait * 1000 + 50);
    }
    el.confirm.hidden = true;
    render();
    following.refresh();
  }

  el.collect.addEventListener("click", () => act("/take"));
  el.cancel.addEventListener("click", () => {
    el.confirm.hidden = false;
    render();
    el.confirmNo.focus();
  });
  el.confirmNo.addEventListener("click", () => {
    el.confirm.hidden = true;
    render();
    el.cancel.focus();
  });
  el.confirmYes.addEventListener("click", () => act("/cancel"));

  el.codeForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const digits = el.codeInput.value.replace(/\s+/g, "");
    if (!/^[0-9]{6}$/.test(digits)) {
      el.codeError.textContent = "A pickup code is 6 digits, like 482 913. Please check your ticket.";
      el.codeInput.focus();
      return;
    }
    el.codeError.textContent = "";
    el.codeInput.value = "";
    writeCode(digits);
    render();
  });
  el.changeCode.addEventListener("click", () => {
    writeCode("");
    render();
    el.codeInput.focus();
  });

  // Browsers allow sound only after a tap: the first tap anywhere turns the
  // chime on (the Sound button shows it, and turns it off again).
  const setSound = (on) => {
    if (on) {
      audio ??= newAudio();
      audio?.resume?.();
    } else {
      audio?.close?.();
      audio = null;
    }
    el.sound.setAttribute("aria-pressed", String(Boolean(audio)));
  };
  document.addEventListener(
    "pointerdown",
    (event) => {
      if (!el.sound.contains(event.target)) setSound(true);
    },
    { once: true },
  );
  el.sound.addEventListener("click", () => {
    setSound(!audio);
    chime(audio); // so whoever switched it on hears what it sounds like
  });
  if (!window.AudioContext && !window.webkitAudioContext) el.sound.hidden = true;

  // ---------------------------------------------------------------- start

  let following = { stop() {}, refresh() {} };
  if (n === null) {
    el.number.textContent = "?";
    el.status.textContent = "";
    el.error.textContent =
      "This address does not name an order. Scan the code on your ticket again, or ask at the counter.";
    el.steps.hidden = true;
  } else {
    el.number.textContent = String(n);
    render();
    following = follow(n, { onOrder, onLink });
    // The estimate is a time: say it again in words as the minutes pass.
    setInterval(() => setText(el.wait, waitWords(order)), 5000);
  }
})();
