// fastfood kitchen view: the queue, one lane per worker, and what happened.
//
// Follows GET /kitchen/updates (Server-Sent Events). Every event carries the
// whole kitchen (`queue`, `workers`, `log`), so rendering is always "draw
// exactly what the last event says". Between events only the clocks move:
// how long each worker has been at its order is counted from `since`
// against the server's own clock (`at`), so a laptop whose clock is off
// still shows the right seconds.
//
// No framework, no build step, no external resources; every text from the
// server goes in with textContent.
"use strict";

(() => {
  /** With no event for this long, ask GET /kitchen/now to detect a dead stream. */
  const WATCHDOG_MS = 20000;
  /** How often the "for 3.4 s" clocks move. */
  const TICK_MS = 100;
  /** How long a new line of the log stands out. */
  const FRESH_MS = 6000;

  const $ = (id) => document.getElementById(id);
  const el = {
    body: document.body,
    connText: $("conn-text"),
    stale: $("stale-banner"),
    staleText: $("stale-text"),
    clock: $("clock"),
    lastUpdate: $("last-update"),
    queueKind: $("queue-kind"),
    workerCount: $("worker-count"),
    queueWhere: $("queue-where"),
    waiting: $("waiting"),
    inFlight: $("in-flight"),
    next: $("next"),
    nextEmpty: $("next-empty"),
    nextNote: $("next-note"),
    lanes: $("lanes"),
    countWorkers: $("count-workers"),
    emptyWorkers: $("empty-workers"),
    log: $("log"),
    emptyLog: $("empty-log"),
  };

  const state = {
    /** The last kitchen received. */
    kitchen: null,
    /** Server clock minus ours, in ms, as of the last event. */
    skew: 0,
    /** Date.now() of the last event. */
    lastEventAt: 0,
    /** The last kitchen, without its `at`, to tell whether the watchdog's answer is news. */
    fingerprint: "",
    /** Has the log been drawn once? Lines drawn at page load do not stand out. */
    drawn: false,
  };

  // ---------------------------------------------------------------- stream

  /** The stream, once started: `reconnect()` opens it again. */
  let updates = null;

  /**
   * A quiet kitchen sends nothing but keep-alive comments, which a page
   * cannot see: when nothing came for a while, ask for the kitchen, and
   * reconnect if it changed without telling us.
   */
  async function watchdog() {
    if (!state.kitchen || Date.now() - state.lastEventAt < WATCHDOG_MS) return;
    const askedAt = Date.now();
    try {
      const res = await fetch("/kitchen/now", { cache: "no-store" });
      if (!res.ok) return;
      const now = await res.json();
      if (fingerprint(now) !== state.fingerprint && state.lastEventAt < askedAt) {
        console.warn("fastfood: the stream fell silent while the kitchen changed; reconnecting");
        updates.reconnect();
      }
    } catch {
      // Unreachable: the EventSource notices and says so.
    }
  }

  const fingerprint = (k) => JSON.stringify([k.queue, k.workers, k.log]);

  /** conn: "connecting" | "live" | "down". */
  function setConn(conn) {
    el.body.dataset.conn = conn;
    el.connText.textContent =
      conn === "live" ? "Live" : conn === "down" ? "Reconnecting…" : "Connecting…";
    el.stale.hidden = conn !== "down";
    if (conn === "down") {
      el.staleText.textContent = state.kitchen
        ? `What you see is from ${timeOf(state.lastEventAt)} and may be out of date. Reconnecting…`
        : "Cannot reach the kitchen yet. Retrying…";
    }
    tick();
  }

  // ---------------------------------------------------------------- data

  function onKitchen(data) {
    const at = Date.parse(data.at ?? "");
    state.lastEventAt = Date.now();
    if (Number.isFinite(at)) state.skew = at - state.lastEventAt;
    state.kitchen = {
      queue: data.queue ?? {},
      workers: Array.isArray(data.workers) ? data.workers : [],
      log: Array.isArray(data.log) ? data.log : [],
    };
    state.fingerprint = fingerprint(state.kitchen);
    el.lastUpdate.textContent = "Updated " + timeOf(state.lastEventAt);
    render();
  }

  /** The server's clock now, in ms. */
  const serverNow = () => Date.now() + state.skew;

  // ---------------------------------------------------------------- render

  function render() {
    const k = state.kitchen;
    renderQueue(k.queue, k.workers);
    renderLanes(k.workers);
    renderLog(k.log);
    state.drawn = true;
    tick();
    fitLanes();
  }

  /**
   * On a screen (not a phone, where the page scrolls) every lane is in
   * view: lanes shrink, then share the width in two or three columns,
   * until they all fit. Only past that does the list scroll.
   */
  function fitLanes() {
    const list = el.lanes;
    if (getComputedStyle(list).overflowY === "visible") {
      list.style.removeProperty("--s");
      list.style.removeProperty("--cols");
      return;
    }
    const fits = () => list.scrollHeight <= list.clientHeight + 1;
    for (const cols of [1, 2, 3]) {
      list.style.setProperty("--cols", String(cols));
      for (let s = 100; s >= 60; s -= 5) {
        list.style.setProperty("--s", String(s / 100));
        if (fits()) return;
      }
    }
  }

  function renderQueue(q, workers) {
    const durable = q.kind === "rabbitmq";
    el.queueKind.textContent = durable ? "RabbitMQ" : q.kind === "in-process" ? "in-process" : "–";
    el.queueWhere.textContent = durable ? "in RabbitMQ" : "in this server";

    const waiting = Number.isInteger(q.waiting) ? q.waiting : null;
    el.waiting.textContent = waiting === null ? "?" : String(waiting);
    el.waiting.title = waiting === null ? "The queue could not tell how many wait" : "";
    el.inFlight.textContent = Number.isInteger(q.in_flight) ? String(q.in_flight) : "–";

    const next = Array.isArray(q.next) ? q.next : [];
    const chips = next.map((n, i) => {
      const li = document.createElement("li");
      li.className = i === 0 ? "chip first" : "chip";
      li.dataset.order = String(n);
      li.textContent = String(n);
      if (i === 0) li.title = "Next to be handed to a worker";
      return li;
    });
    const more = waiting !== null ? waiting - next.length : 0;
    if (more > 0) {
      const li = document.createElement("li");
      li.className = "chip more";
      li.textContent = `+${more}`;
      li.setAttribute("aria-label", `and ${more} more`);
      chips.push(li);
    }
    el.next.replaceChildren(...chips);
    el.next.dataset.from = q.next_from ?? "";
    el.nextEmpty.hidden = next.length > 0;

    if (q.next_from === "store") {
      el.nextNote.textContent =
        "The store's view of the line: RabbitMQ's queue cannot be read " +
        "without taking the orders out of it.";
      el.nextNote.hidden = false;
    } else {
      el.nextNote.hidden = true;
    }

    const gone = workers.filter((w) => w.state === "gone").length;
    const alive = workers.length - gone;
    el.workerCount.textContent = gone > 0 ? `${alive} + ${gone} gone` : String(alive);
  }

  /** worker key -> its <li>, reused so nothing flickers. */
  const laneOf = new Map();

  function renderLanes(workers) {
    const keys = [];
    workers.forEach((w) => {
      const key = `${w.pid}/${w.name}`;
      keys.push(key);
      let li = laneOf.get(key);
      if (!li) {
        li = newLane(key);
        laneOf.set(key, li);
      }
      fillLane(li, w);
    });
    const wanted = new Set(keys);
    for (const [key, li] of laneOf) {
      if (!wanted.has(key)) {
        li.remove();
        laneOf.delete(key);
      }
    }
    keys.forEach((key, i) => {
      const li = laneOf.get(key);
      if (el.lanes.children[i] !== li) el.lanes.insertBefore(li, el.lanes.children[i] ?? null);
    });
    el.countWorkers.textContent = String(workers.length);
    el.emptyWorkers.hidden = workers.length > 0;
  }

  /** An empty lane: its parts are found by class and filled by fillLane. */
  function newLane(key) {
    const li = document.createElement("li");
    li.className = "lane";
    li.dataset.key = key;
    const part = (tag, cls, parent = li) => {
      const e = document.createElement(tag);
      e.className = cls;
      parent.append(e);
      return e;
    };
    const head = part("div", "lane-head");
    part("span", "lane-name", head);
    part("span", "lane-state", head);
    const body = part("div", "lane-body");
    part("span", "lane-order", body);
    const what = part("div", "lane-what", body);
    part("span", "lane-doing", what);
    part("span", "lane-delivery", what);
    part("p", "lane-stats");
    return li;
  }

  const STATE_WORDS = {
    preparing: "Preparing",
    finishing: "Recording READY",
    idle: "Idle",
    gone: "Stopped answering",
  };

  function fillLane(li, w) {
    const q = (cls) => li.querySelector("." + cls);
    const order = Number.isInteger(w.order) ? w.order : null;
    const since = Date.parse(w.since ?? "");
    li.dataset.state = w.state;
    li.dataset.name = w.name;
    li.dataset.pid = String(w.pid);
    li.dataset.process = w.process;
    li.dataset.order = order === null ? "" : String(order);
    li.dataset.delivery = String(w.delivery ?? 0);
    li.dataset.since = Number.isFinite(since) ? String(since) : "";

    // "worker 2 (pid 4121)", as the log says it, the pid a little lighter.
    const suffix = ` (pid ${w.pid})`;
    const name = q("lane-name");
    if (w.name.endsWith(suffix)) {
      const pid = document.createElement("span");
      pid.className = "lane-pid";
      pid.textContent = suffix;
      name.replaceChildren(w.name.slice(0, -suffix.length), pid);
    } else {
      name.textContent = w.name;
    }
    q("lane-state").textContent = STATE_WORDS[w.state] ?? w.state;

    const orderEl = q("lane-order");
    orderEl.textContent = order === null ? "" : String(order);
    orderEl.hidden = order === null;

    const delivery = q("lane-delivery");
    const again = order !== null && w.delivery > 1;
    delivery.hidden = !again;
    delivery.textContent = again ? `delivery ${w.delivery} · taken again` : "";

    const parts = [
      w.process === "server" ? "in the server process" : "in a worker process",
      `done ${w.done ?? 0}`,
      `gave back ${w.gave_back ?? 0}`,
    ];
    if (w.finishing > 0) parts.push(`recording ${w.finishing}`);
    q("lane-stats").textContent = parts.join(" · ");
    // The "for 3.4 s" part is the clock's: see tick().
  }

  /** moment key -> its <li>; a key is its time and text (and how many such came before). */
  const lineOf = new Map();
  let freshTimer = 0;

  function renderLog(log) {
    const seen = new Map();
    const keys = log.map((m) => {
      const base = `${m.at}|${m.text}`;
      const n = (seen.get(base) ?? 0) + 1;
      seen.set(base, n);
      return `${base}|${n}`;
    });
    const now = Date.now();
    const lines = [];
    for (let i = log.length - 1; i >= 0; i--) {
      let li = lineOf.get(keys[i]);
      if (!li) {
        li = document.createElement("li");
        li.className = "log-line " + toneOf(log[i].text);
        const time = document.createElement("time");
        const at = Date.parse(log[i].at ?? "");
        time.dateTime = log[i].at ?? "";
        time.textContent = Number.isFinite(at) ? timeOf(at) : "";
        const text = document.createElement("span");
        text.className = "log-text";
        text.textContent = log[i].text ?? "";
        li.append(time, text);
        if (state.drawn) {
          li.classList.add("fresh");
          li.dataset.freshUntil = String(now + FRESH_MS);
        }
        lineOf.set(keys[i], li);
      }
      lines.push(li);
    }
    const wanted = new Set(keys);
    for (const [key, li] of lineOf) {
      if (!wanted.has(key)) {
        li.remove();
        lineOf.delete(key);
      }
    }
    lines.forEach((li, i) => {
      if (el.log.children[i] !== li) el.log.insertBefore(li, el.log.children[i] ?? null);
    });
    el.emptyLog.hidden = log.length > 0;

    clearTimeout(freshTimer);
    freshTimer = setTimeout(unfresh, FRESH_MS + 50);
  }

  function unfresh() {
    const now = Date.now();
    for (const li of el.log.querySelectorAll(".fresh")) {
      if (Number(li.dataset.freshUntil) <= now) li.classList.remove("fresh");
    }
  }

  /** Colour only: what a line is about, from its words. */
  function toneOf(text) {
    const t = String(text).toLowerCase();
    if (/stopped answering|shut down|failed|cannot|lost/.test(t)) return "bad";
    if (/joined|answers again/.test(t)) return "good";
    if (/again|gave back|given back|goes back|went back/.test(t)) return "warn";
    return "";
  }

  // ---------------------------------------------------------------- clocks

  /** Moves the "for 3.4 s" of every working lane; frozen while the stream is down. */
  function tick() {
    const live = el.body.dataset.conn === "live";
    const now = serverNow();
    for (const li of el.lanes.children) {
      const doing = li.querySelector(".lane-doing");
      const since = Number(li.dataset.since || NaN);
      let words;
      switch (li.dataset.state) {
        case "preparing":
          words = Number.isFinite(since) ? `for ${formatDuration(Math.max(0, now - since))}` : "";
          if (!live && Number.isFinite(since)) words = `${words} (as of ${timeOf(state.lastEventAt)})`;
          break;
        case "finishing":
          words = "cooked; recording it READY";
          break;
        case "gone":
          words = li.dataset.order ? "had this order when it went silent" : "went silent";
          break;
        default:
          words = "waiting for an order";
      }
      if (doing.textContent !== words) doing.textContent = words;
    }
  }

  // ---------------------------------------------------------------- helpers

  function timeOf(ms) {
    return new Date(ms).toLocaleTimeString([], {
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
  }

  /** 3.4 s, 2 min 05 s, 1 h 02 min. */
  function formatDuration(ms) {
    if (ms < 60000) return `${(Math.floor(ms / 100) / 10).toFixed(1)} s`;
    const s = Math.floor(ms / 1000);
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
    return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
  }

  function clock() {
    el.clock.textContent = new Date().toLocaleTimeString([], {
      hour: "2-digit",
      minute: "2-digit",
    });
  }

  // ---------------------------------------------------------------- start

  let resizeFrame = 0;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(fitLanes);
  });

  clock();
  setInterval(clock, 1000);
  setInterval(() => {
    if (el.body.dataset.conn === "live") tick();
  }, TICK_MS);
  setInterval(watchdog, WATCHDOG_MS / 2);
  updates = Fastfood.stream("/kitchen/updates", { onData: onKitchen, onLink: setConn });
})();
