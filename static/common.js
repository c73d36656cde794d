// fastfood: what the pages share (the board, the kiosk, the phone page).
//
// - errors: an API error as the sentence in its JSON `message`;
// - the wait in words ("7 orders ahead of you · ready in about 2 minutes");
// - following one order live: GET /updates (SSE) for its status (the whole
//   board first, then each change alone), and GET /orders/N for how long it
//   will be (the stream carries no estimates);
// - a chime made with WebAudio (no sound file).
//
// Loaded before each page's own script; defines one global, `Fastfood`.
"use strict";

window.Fastfood = (() => {
  const OFFLINE = "The restaurant cannot be reached right now. Check the connection and try again.";

  /** Statuses only move forward; the last three are final. */
  const RANK = { TAKEN: 0, PREPARING: 1, READY: 2, COLLECTED: 3, CANCELLED: 3, GONE: 3 };
  const FINAL = new Set(["COLLECTED", "CANCELLED", "GONE"]);

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
    if (res.status === 429 || res.status === 503) {
      return "The restaurant is very busy right now. Please try again in a moment.";
    }
    if (res.status >= 500) return "Something went wrong on our side. Please try again.";
    return "The restaurant could not handle that request. Please try again.";
  }

  /** Seconds from a Retry-After header, or 0. */
  function retryAfter(res) {
    const s = Number.parseInt(res.headers.get("Retry-After") ?? "", 10);
    return Number.isFinite(s) && s > 0 ? s : 0;
  }

  /** "482913" -> "482 913": easier to read out and to type. */
  function formatCode(code) {
    const s = String(code ?? "");
    return s.length === 6 ? `${s.slice(0, 3)} ${s.slice(3)}` : s;
  }

  /**
   * How long, in words, from what GET /orders/N (or the 201) says:
   * "7 orders ahead of you · ready in about 2 minutes". Empty when the
   * server gave neither `ahead` nor `estimated_ready_at`, or the order is
   * past the kitchen.
   */
  function waitWords(order, now = Date.now()) {
    if (!order || (order.status !== "TAKEN" && order.status !== "PREPARING")) return "";
    const parts = [];
    if (order.status === "TAKEN" && Number.isInteger(order.ahead)) {
      parts.push(
        order.ahead === 0
          ? "You are next"
          : `${order.ahead} order${order.ahead === 1 ? "" : "s"} ahead of you`,
      );
    }
    const at = Date.parse(order.estimated_ready_at ?? "");
    if (Number.isFinite(at)) {
      const s = (at - now) / 1000;
      if (s <= 15) parts.push("ready any moment now");
      else if (s < 60) parts.push("ready in less than a minute");
      else {
        const m = Math.round(s / 60);
        parts.push(`ready in about ${m} minute${m === 1 ? "" : "s"}`);
      }
    }
    return parts.join(" · ");
  }

  /**
   * Follow a Server-Sent Events stream of JSON events at `url`: calls
   * `onData(data)` with each event's parsed data and `onLink("connecting" |
   * "live" | "down")` as the connection changes. When the browser gives up on
   * the stream (a proxy's error page), retries by itself, backing off from
   * 1 s up to 30 s; the first event of every stream of this server is the
   * whole picture, so nothing is lost. Returns `{ reconnect, stop }`.
   */
  function stream(url, { onData, onLink }) {
    let source = null;
    let retryTimer = 0;
    let retryDelay = 1000;
    let stopped = false;
    let down = false;

    function connect() {
      clearTimeout(retryTimer);
      if (source) source.close();
      if (stopped) return;
      if (!down) onLink("connecting");
      source = new EventSource(url);
      source.onmessage = (ev) => {
        let data;
        try {
          data = JSON.parse(ev.data);
        } catch (err) {
          console.warn("fastfood: ignoring an event that is not JSON", err);
          return;
        }
        retryDelay = 1000;
        down = false;
        onData(data);
        onLink("live");
      };
      source.onerror = () => {
        down = true;
        onLink("down");
        if (source.readyState === EventSource.CLOSED) {
          retryTimer = setTimeout(connect, retryDelay);
          retryDelay = Math.min(retryDelay * 2, 30000);
        }
        // Otherwise (CONNECTING) the browser reconnects by itself.
      };
    }

    function stop() {
      stopped = true;
      clearTimeout(retryTimer);
      if (source) source.close();
      source = null;
    }

    connect();
    return { reconnect: connect, stop };
  }

  /**
   * Follow order `n` live. Calls `onOrder(order)` with what is known of it
   * (at least `order` and `status`; `ahead` and `estimated_ready_at` while in
   * the kitchen, when the server gives them) and `onLink("connecting" |
   * "live" | "down")`. Returns `{ stop, refresh }`.
   */
  function follow(n, { onOrder, onLink }) {
    let stopped = false;
    let last = null;
    // GET /orders/N at most once a second, however busy the stream.
    let asking = false;
    let askAgain = false;
    let lastAsked = 0;
    let askTimer = 0;

    const emit = (order) => {
      if (stopped || !order || !(order.status in RANK)) return;
      // Never step back: a late answer must not undo a newer event.
      if (last && RANK[order.status] < RANK[last.status]) return;
      if (last && FINAL.has(last.status)) return;
      last = { ...(last?.status === order.status ? last : {}), ...order };
      onOrder(last);
      if (FINAL.has(order.status)) stop();
    };

    async function refresh() {
      if (stopped) return;
      if (asking) {
        askAgain = true;
        return;
      }
      const wait = lastAsked + 1000 - Date.now();
      if (wait > 0) {
        clearTimeout(askTimer);
        askTimer = setTimeout(refresh, wait);
        return;
      }
      asking = true;
      lastAsked = Date.now();
      try {
        const res = await fetch(`/orders/${encodeURIComponent(n)}`, { cache: "no-store" });
        if (res.ok) emit(await res.json());
        else if (res.status === 404) emit({ order: n, status: "GONE" });
      } catch {
        // offline: the stream's own state says so
      } finally {
        asking = false;
        if (askAgain) {
          askAgain = false;
          refresh();
        }
      }
    }

    const onData = (data) => {
      if (Array.isArray(data.orders)) {
        // The whole board (on connect, or after falling behind).
        const mine = data.orders.find((o) => o.order === n);
        if (mine) {
          emit({ order: n, status: mine.status, content: mine.content });
          if (mine.status === "TAKEN" || mine.status === "PREPARING") refresh();
        } else {
          refresh(); // not on the board and we missed why: ask
        }
      } else if (data.change && data.change.order === n) {
        const { status, content, cancelled_by } = data.change;
        const seen = { order: n, status };
        if (content !== undefined) seen.content = content;
        if (cancelled_by !== undefined) seen.cancelled_by = cancelled_by;
        emit(seen);
        if (status === "TAKEN" || status === "PREPARING") refresh();
      } else if (last && (last.status === "TAKEN" || last.status === "PREPARING")) {
        // Any move in the kitchen may change how long: ask again.
        refresh();
      }
    };

    function stop() {
      stopped = true;
      clearTimeout(askTimer);
      board.stop();
    }

    const board = stream("/updates", { onData, onLink });
    refresh();
    return { stop, refresh };
  }

  /** A two-note "ding-dong" on `audio` (an AudioContext), if there is one. */
  function chime(audio) {
    if (!audio) return;
    audio.resume?.();
    const t0 = audio.currentTime + 0.02;
    [
      [987.77, 0], // B5
      [1318.51, 0.22], // E6
    ].forEach(([freq, delay]) => {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = "sine";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, t0 + delay);
      gain.gain.exponentialRampToValueAtTime(0.35, t0 + delay + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + delay + 1.2);
      osc.connect(gain).connect(audio.destination);
      osc.start(t0 + delay);
      osc.stop(t0 + delay + 1.3);
    });
  }

  /** A new AudioContext, or null where the browser has none. */
  function newAudio() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    try {
      return Ctx ? new Ctx() : null;
    } catch {
      return null;
    }
  }

  return { OFFLINE, RANK, FINAL, errorSentence, retryAfter, formatCode, waitWords, stream, follow, chime, newAudio };
})();
