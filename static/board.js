// fastfood lobby board.
//
// Follows GET /updates (Server-Sent Events). The first event (and one after
// falling behind or reconnecting) carries the whole board (`orders`: every
// order not yet collected); every other event carries one `change`, the
// order as it is now, which this page applies to its copy of the board.
// Rendering is always "draw exactly what the copy says"; a diff against the
// previous board only decides what to highlight and announce.
//
// The ready column never hides a number: its tiles shrink (down to a size
// still readable across a room) until every READY number fits; beyond that,
// pages of numbers rotate so each is on screen at least every ROTATION_MS.
// The other two columns may summarise ("+105 waiting").
//
// No framework, no build step, no external resources.
"use strict";

(() => {
  /** How long a number that just became READY stays highlighted. */
  const FRESH_MS = 8000;
  /** The average wait is taken over this many most recent READY orders. */
  const WAIT_SAMPLE = 20;
  /** With no event for this long, check GET /orders to detect a dead stream. */
  const WATCHDOG_MS = 20000;
  /** Upper bound of tiles put in the DOM before measuring what fits. */
  const MAX_TILES = 300;
  /**
   * A number READY for longer than this is marked, like a kitchen display's
   * overdue colour: 3 minutes, or `?overdue=SECONDS` (for tests).
   */
  const OVERDUE_MS = (() => {
    const asked = Number(new URLSearchParams(location.search).get("overdue"));
    return (Number.isFinite(asked) && asked > 0 ? asked : 180) * 1000;
  })();
  /** Every ready number is on screen at least once in this time, however many pages. */
  const ROTATION_MS = 9000;
  /** No page of ready numbers is shown for less than this. */
  const MIN_PAGE_MS = 1500;

  const $ = (id) => document.getElementById(id);
  const el = {
    body: document.body,
    connText: $("conn-text"),
    stale: $("stale-banner"),
    staleText: $("stale-text"),
    clock: $("clock"),
    lastUpdate: $("last-update"),
    statWait: $("stat-wait"),
    columns: $("columns"),
    readyPage: $("ready-page"),
    overdueLegend: $("overdue-legend"),
    announcer: $("ready-announcer"),
    chime: $("chime-toggle"),
    voice: $("voice-toggle"),
  };
  const columns = ["TAKEN", "PREPARING", "READY"].map((status) => {
    const key = status.toLowerCase();
    return {
      status,
      list: $("col-" + key),
      count: $("count-" + key),
      empty: $("empty-" + key),
    };
  });

  const state = {
    /** The last board received: array of order objects. */
    orders: [],
    /** Have we received any board at all since the page loaded? */
    haveBoard: false,
    /** Version (SSE id) of the last event. */
    version: null,
    /** Date.now() of the last event. */
    lastEventAt: 0,
    /** order number -> status, as of the last event (to spot what changed). */
    statusOf: new Map(),
    /** order number -> Date.now() until which it is highlighted as just ready. */
    freshUntil: new Map(),
    /** order number -> { at: ready time (ms), wait: ms from ticket to ready }. */
    waits: new Map(),
    /** Has a board been drawn yet? Tiles drawn at page load do not animate in. */
    drawn: false,
    /** Which page of ready numbers is on screen (0-based), when they need pages. */
    readyPage: 0,
  };

  // ---------------------------------------------------------------- stream

  /** The stream, once started: `reconnect()` opens it again. */
  let updates = null;

  /** order number -> order: the board as the events so far make it. */
  let copy = new Map();
  const LIVE = new Set(["TAKEN", "PREPARING", "READY"]);

  /** One event: the whole board, or one change to apply to the copy. */
  function onEvent(data) {
    if (Array.isArray(data.orders)) {
      copy = new Map(data.orders.map((o) => [o.order, o]));
    } else if (data.change && typeof data.change.order === "number") {
      // A change older than the board we hold is already in it.
      if (typeof state.version === "number" && data.version <= state.version) return;
      if (LIVE.has(data.change.status)) copy.set(data.change.order, data.change);
      else copy.delete(data.change.order);
    } else {
      return;
    }
    state.lastEventAt = Date.now();
    state.version = data.version ?? state.version;
    const orders = [...copy.values()].sort((a, b) => a.order - b.order);
    onBoard({ orders });
  }

  /**
   * Keep-alive comments are invisible to EventSource, so a connection that
   * died silently (a sleeping laptop, a NAT timeout) would look healthy
   * forever. When nothing arrived for a while, ask for the board version:
   * if the kitchen moved on without telling us, reconnect.
   */
  async function watchdog() {
    if (!state.haveBoard || Date.now() - state.lastEventAt < WATCHDOG_MS) return;
    const askedAt = Date.now();
    try {
      const res = await fetch("/orders", { cache: "no-store" });
      if (!res.ok) return;
      const board = await res.json();
      const behind =
        typeof board.version === "number" &&
        typeof state.version === "number" &&
        board.version > state.version &&
        state.lastEventAt < askedAt;
      if (behind) {
        console.warn("fastfood: the stream fell silent while the board changed; reconnecting");
        updates.reconnect();
      }
    } catch {
      // The server is unreachable; the EventSource will notice and report it.
    }
  }

  /** conn: "connecting" | "live" | "down". */
  function setConn(conn) {
    const bannerWas = el.stale.hidden;
    el.body.dataset.conn = conn;
    el.connText.textContent =
      conn === "live" ? "Live" : conn === "down" ? "Reconnecting…" : "Connecting…";
    el.stale.hidden = conn !== "down";
    if (conn === "down") {
      el.staleText.textContent = state.haveBoard
        ? `The numbers below are from ${timeOf(state.lastEventAt)} and may be out of date. Reconnecting…`
        : "Cannot reach the kitchen yet. Retrying…";
    }
    // The banner takes room from the columns: fit the tiles again.
    if (el.stale.hidden !== bannerWas) render();
  }

  // ---------------------------------------------------------------- data

  /** Handle one event: `{version, change, orders}`. */
  function onBoard(data) {
    const orders = Array.isArray(data.orders) ? data.orders : [];
    const now = Date.now();
    const previous = state.statusOf;
    const statusOf = new Map();
    const newlyReady = [];

    for (const o of orders) {
      statusOf.set(o.order, o.status);
      recordWait(o);
      // A number is "just ready" if it was not READY on the board we showed
      // before. For a normal event that is exactly `change`; after a resync
      // (`change: null`, e.g. after a reconnect) it also catches numbers that
      // became ready while we were away. Nothing is highlighted on first load.
      if (o.status === "READY" && state.haveBoard && previous.get(o.order) !== "READY") {
        newlyReady.push(o.order);
      }
    }

    for (const n of newlyReady) state.freshUntil.set(n, now + FRESH_MS);
    // Forget highlights of numbers that left the board.
    for (const n of state.freshUntil.keys()) {
      if (statusOf.get(n) !== "READY") state.freshUntil.delete(n);
    }

    state.orders = orders;
    state.statusOf = statusOf;
    state.haveBoard = true;
    el.lastUpdate.textContent = "Updated " + timeOf(now);

    render();
    if (newlyReady.length > 0) announceReady(newlyReady.sort((a, b) => a - b));
  }

  /** Remember how long an order took from ticket to READY. */
  function recordWait(o) {
    if (!o.ready_at || !o.taken_at || state.waits.has(o.order)) return;
    const at = Date.parse(o.ready_at);
    const wait = at - Date.parse(o.taken_at);
    if (!Number.isFinite(wait) || wait < 0) return;
    state.waits.set(o.order, { at, wait });
    if (state.waits.size > WAIT_SAMPLE) {
      // Drop the oldest sample (by ready time).
      let oldest = null;
      for (const [n, s] of state.waits) {
        if (oldest === null || s.at < state.waits.get(oldest).at) oldest = n;
      }
      state.waits.delete(oldest);
    }
  }

  const isFresh = (o) => (state.freshUntil.get(o.order) ?? 0) > Date.now();

  // ---------------------------------------------------------------- render

  let freshTimer = 0;

  function render() {
    const byStatus = { TAKEN: [], PREPARING: [], READY: [] };
    for (const o of state.orders) byStatus[o.status]?.push(o);
    for (const list of Object.values(byStatus)) list.sort((a, b) => a.order - b.order);
    giveRoomToReady(byStatus.READY.length);

    for (const col of columns) {
      const items = byStatus[col.status];
      if (col.status === "READY") renderReady(col.list, items, state.drawn);
      else renderColumn(col.list, items, state.drawn, col.status === "TAKEN" ? "waiting" : "more");
      col.count.textContent = state.haveBoard ? String(items.length) : "";
      col.empty.hidden = !state.haveBoard || items.length > 0;
    }

    renderAverageWait();
    state.drawn = state.haveBoard;

    // Re-render when the earliest highlight runs out.
    clearTimeout(freshTimer);
    const now = Date.now();
    let next = Infinity;
    for (const until of state.freshUntil.values()) if (until > now) next = Math.min(next, until);
    if (next !== Infinity) freshTimer = setTimeout(render, next - now + 50);
  }

  /** Same label, always; "–" until one order has gone from ticket to ready. */
  function renderAverageWait() {
    const samples = [...state.waits.values()];
    if (samples.length === 0) {
      el.statWait.textContent = "–";
      return;
    }
    const avg = samples.reduce((sum, s) => sum + s.wait, 0) / samples.length;
    el.statWait.textContent = formatDuration(avg);
  }

  /**
   * The more numbers are ready, the more of the screen their column gets
   * (the other two summarise what does not fit). Each layout (landscape,
   * portrait, phone) reads the weights it uses.
   */
  function giveRoomToReady(ready) {
    const busy = Math.min(1, Math.max(0, (ready - 24) / 60));
    const set = (name, value) => el.columns.style.setProperty(name, `${value.toFixed(3)}fr`);
    set("--fr-taken", 1 - 0.15 * busy);
    set("--fr-preparing", 1.45 - 0.4 * busy);
    set("--fr-ready", 2.2 + 1.6 * busy);
    set("--fr-ready-row", 1.3 + 1.2 * busy);
    set("--fr-ready-phone", 1.5 + 1.5 * busy);
  }

  // ---------------------------------------------------------------- ready column

  let rotateTimer = 0;

  /**
   * The largest tiles with which all `n` numbers fit the list; if even the
   * smallest readable size does not hold them all, that size and as many
   * pages as needed (few enough that each page stays up MIN_PAGE_MS).
   */
  function fitReady(list, n, digits) {
    const cs = getComputedStyle(list);
    const width = list.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight) - 1;
    const height = list.clientHeight - parseFloat(cs.paddingTop) - parseFloat(cs.paddingBottom) - 1;
    const gap = parseFloat(cs.rowGap) || 8;
    const wide = Math.sqrt(digits / 3);
    const vmin = Math.min(innerWidth, innerHeight);
    // Readable across a room: 4.4% of the screen's short side (48 px on a
    // 1080p TV), never under 24 px; as large as 10.5% of its height.
    const readable = Math.max(24, 0.044 * vmin);
    const largest = Math.max(readable, Math.min(136, 0.105 * innerHeight));
    const grid = (num) => {
      const cols = Math.max(1, Math.floor((width + gap) / (num * 2 * wide + gap)));
      const rows = Math.max(1, Math.floor((height + gap) / (num * 1.35 + gap)));
      return { num, cols, rows, perPage: cols * rows };
    };
    for (let num = Math.floor(largest); num >= readable; num -= 1) {
      const g = grid(num);
      if (g.perPage >= n) return g;
    }
    // Pages, then: keep the rotation's pages long enough to read, even if
    // that takes tiles a little under the readable size.
    const maxPages = Math.floor(ROTATION_MS / MIN_PAGE_MS);
    let g = grid(readable);
    for (let num = Math.floor(readable); num >= 16 && Math.ceil(n / g.perPage) > maxPages; num -= 1) {
      g = grid(num);
    }
    return g;
  }

  /** Every READY number, by number: all at once, or page by page. */
  function renderReady(list, items, animate) {
    let digits = 3;
    for (const o of items) digits = Math.max(digits, String(o.order).length);
    list.style.setProperty("--wide", Math.sqrt(digits / 3).toFixed(3));
    const g = fitReady(list, items.length, digits);
    list.style.setProperty("--num", `${g.num}px`);
    list.style.gridTemplateColumns = `repeat(${g.cols}, minmax(0, 1fr))`;
    list.style.gridAutoRows = `${(g.num * 1.35).toFixed(2)}px`;

    const pages = Math.max(1, Math.ceil(items.length / g.perPage));
    if (state.readyPage >= pages) state.readyPage = 0;
    const shown = items.slice(state.readyPage * g.perPage, (state.readyPage + 1) * g.perPage);
    drawTiles(list, shown, 0, animate && pages === 1, "");
    el.readyPage.textContent = pages > 1 ? `page ${state.readyPage + 1} of ${pages}` : "";
    list.dataset.pages = String(pages);

    const now = Date.now();
    const byKey = new Map(shown.map((o) => [String(o.order), o]));
    for (const li of list.children) {
      const readyAt = Date.parse(byKey.get(li.dataset.key)?.ready_at ?? "");
      li.classList.toggle("overdue", Number.isFinite(readyAt) && now - readyAt > OVERDUE_MS);
    }

    if (pages > 1 && !rotateTimer) {
      const dwell = Math.max(MIN_PAGE_MS, ROTATION_MS / pages);
      rotateTimer = setTimeout(() => {
        rotateTimer = 0;
        state.readyPage += 1; // wraps to 0 in renderReady
        render();
      }, dwell);
    } else if (pages === 1) {
      clearTimeout(rotateTimer);
      rotateTimer = 0;
      state.readyPage = 0;
    }
  }

  /** list element -> { size: its size when measured, fit: how many tiles fit }. */
  const capacity = new WeakMap();

  /**
   * Draw `items` (sorted oldest first) into a tile grid that never overflows:
   * when they do not all fit, show the oldest that do and a "+N more" tile.
   * Numbers that just became ready are shown first (see pickShown).
   */
  function renderColumn(list, items, animate, moreWord) {
    // Tiles are sized for three digits. Longer numbers (the counter never
    // resets) get wider tiles and a smaller font, half each, so they stay
    // readable without leaving only one tile per row.
    let digits = 3;
    for (const o of items) digits = Math.max(digits, String(o.order).length);
    list.style.setProperty("--wide", Math.sqrt(digits / 3).toFixed(3));

    // Capacity measured before for this size: a busy board skips the
    // draw-everything-then-measure pass on every event.
    const size = `${list.clientWidth}x${list.clientHeight}/${digits}`;
    const known = capacity.get(list);
    if (known && known.size === size && items.length > known.fit) {
      const shown = pickShown(items, Math.max(0, known.fit - 1));
      drawTiles(list, shown, items.length - shown.length, animate, moreWord);
      list.classList.add("full");
      return;
    }

    list.classList.remove("full");
    const first = items.slice(0, MAX_TILES);
    drawTiles(list, first, items.length - first.length, animate, moreWord);
    if (list.scrollHeight <= list.clientHeight + 1) return;

    // How many tiles fit entirely? (Tiles are all the same size, laid out in
    // rows, so this is the grid's capacity.) Keep one slot for "+N more".
    const limit = list.clientHeight - parseFloat(getComputedStyle(list).paddingBottom) + 1;
    let fit = 0;
    for (const li of list.children) {
      if (li.offsetTop + li.offsetHeight <= limit) fit++;
      else break;
    }
    capacity.set(list, { size, fit });
    const shown = pickShown(items, Math.max(0, fit - 1));
    drawTiles(list, shown, items.length - shown.length, animate, moreWord);
    list.classList.add("full");
  }

  /**
   * The `k` oldest items, except that numbers that just became ready and would
   * be hidden take the places of the newest others, up to half the places.
   */
  function pickShown(items, k) {
    const shown = items.slice(0, k);
    let swaps = Math.ceil(k / 2);
    for (const o of items.slice(k)) {
      if (swaps === 0) break;
      if (!isFresh(o)) continue;
      swaps--;
      let i = shown.length - 1;
      while (i >= 0 && isFresh(shown[i])) i--;
      if (i < 0) break;
      shown.splice(i, 1);
      shown.push(o);
    }
    return shown.sort((a, b) => a.order - b.order);
  }

  /**
   * Make `list` show exactly `items` (+ a "+N waiting" tile when more > 0),
   * reusing existing tiles so their animations do not restart. New tiles
   * animate in when `animate`.
   */
  function drawTiles(list, items, more, animate, moreWord) {
    const keys = items.map((o) => String(o.order));
    if (more > 0) keys.push("more");
    const wanted = new Set(keys);
    const existing = new Map();
    for (const li of [...list.children]) {
      if (wanted.has(li.dataset.key)) existing.set(li.dataset.key, li);
      else li.remove();
    }

    keys.forEach((key, i) => {
      let li = existing.get(key);
      if (!li) {
        li = document.createElement("li");
        li.dataset.key = key;
        if (key === "more") {
          li.className = "tile more";
        } else {
          li.className = animate ? "tile enter" : "tile";
          li.dataset.order = key;
          li.textContent = key;
        }
      }
      if (key === "more") {
        li.replaceChildren(`+${more}`, document.createElement("small"));
        li.lastChild.textContent = moreWord;
        li.setAttribute("aria-label", `and ${more} more ${moreWord === "waiting" ? "waiting" : ""}`.trim());
      } else {
        li.classList.toggle("fresh", isFresh(items[i]));
      }
      if (list.children[i] !== li) list.insertBefore(li, list.children[i] ?? null);
    });
  }

  // ---------------------------------------------------------------- announce

  function announceReady(numbers) {
    // Screen readers: one short sentence per event, the live region keeps the last few.
    const p = document.createElement("p");
    p.textContent =
      numbers.length === 1
        ? `Order ${numbers[0]} is ready for pickup.`
        : `Orders ${listOf(numbers)} are ready for pickup.`;
    el.announcer.append(p);
    while (el.announcer.childElementCount > 5) el.announcer.firstElementChild.remove();

    if (isOn(el.chime)) chime();
    if (isOn(el.voice)) {
      speak(
        numbers.length === 1
          ? `Order ${numbers[0]} is ready.`
          : `Orders ${listOf(numbers)} are ready.`,
      );
    }
  }

  // ---------------------------------------------------------------- sound

  let audio = null;

  const isOn = (button) => button.getAttribute("aria-pressed") === "true";

  function toggle(button) {
    const on = !isOn(button);
    button.setAttribute("aria-pressed", String(on));
    return on;
  }

  const chime = () => window.Fastfood.chime(audio);

  function speak(text) {
    if (!("speechSynthesis" in window)) return;
    // Do not let a backlog build up: a long queue would call numbers late.
    if (speechSynthesis.pending) speechSynthesis.cancel();
    const u = new SpeechSynthesisUtterance(text);
    u.lang = "en-US";
    speechSynthesis.speak(u);
  }

  // Browsers only allow sound after a click, hence the toggles.
  el.chime.addEventListener("click", () => {
    if (toggle(el.chime)) {
      audio ??= window.Fastfood.newAudio();
      if (!audio) {
        el.chime.setAttribute("aria-pressed", "false");
        el.chime.disabled = true;
        el.chime.title = "This browser cannot play sounds";
        return;
      }
      chime(); // so whoever switched it on hears what it sounds like
    }
  });

  if ("speechSynthesis" in window) {
    el.voice.addEventListener("click", () => {
      if (toggle(el.voice)) speak("Announcements on.");
      else speechSynthesis.cancel();
    });
  } else {
    el.voice.hidden = true;
  }

  // ---------------------------------------------------------------- helpers

  function timeOf(ms) {
    return new Date(ms).toLocaleTimeString([], {
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
  }

  /** 42 s, 3 min 05 s, 1 h 02 min. */
  function formatDuration(ms) {
    const s = Math.round(ms / 1000);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
    return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
  }

  /** [1, 2, 3] -> "1, 2 and 3". */
  function listOf(numbers) {
    return numbers.length === 1
      ? String(numbers[0])
      : `${numbers.slice(0, -1).join(", ")} and ${numbers[numbers.length - 1]}`;
  }

  function tick() {
    el.clock.textContent = new Date().toLocaleTimeString([], {
      hour: "2-digit",
      minute: "2-digit",
    });
  }

  // ---------------------------------------------------------------- start

  let resizeFrame = 0;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(render);
  });

  el.overdueLegend.textContent = `waiting over ${
    OVERDUE_MS % 60000 === 0 ? `${OVERDUE_MS / 60000} min` : `${OVERDUE_MS / 1000} s`
  }`;
  tick();
  setInterval(tick, 1000);
  // Numbers cross the overdue threshold with no event: look again now and then.
  setInterval(() => state.haveBoard && render(), 5000);
  setInterval(watchdog, WATCHDOG_MS / 2);
  render();
  updates = Fastfood.stream("/updates", { onData: onEvent, onLink: setConn });
})();
