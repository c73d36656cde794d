//! The summary of a rush: figures computed from what [`Stats`] recorded,
//! printed for a person (what a manager asks, in the terms a student knows)
//! or as JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::stats::{BUCKET, Bucket, Recorder};
use super::watch::Seen;

/// Percentiles of one latency, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// From a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// `count` events over `elapsed`, per second (0 over no time at all).
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        count as f64 / secs
    }
}

/// The figures of one rush. A figure this rush could not measure is `None`
/// (`null` in JSON, "not measured" in the text), never 0.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `open` (customers arrive at a rate) or `closed` (N connections back to back).
    pub mode: String,
    pub target: String,
    /// Customers per second asked for (open loop).
    pub rate: Option<f64>,
    pub connections: Option<usize>,
    /// How long customers kept arriving, in seconds: --duration, unless the
    /// rush stopped early (`stopped_early` says why).
    pub arrivals_s: f64,
    /// Why the arrivals ended before --duration (Ctrl-C, --customers), if they did.
    pub stopped_early: Option<String>,
    /// The whole rush, arrivals and the wait for the last orders, in seconds.
    pub elapsed_s: f64,
    /// Every customer who came: turned away + refused + served + unserved.
    pub arrived: u64,
    pub turned_away: u64,
    pub ordered: u64,
    /// Customers whose `/order` failed (each counted once in `order_errors`).
    pub refused: u64,
    /// Customers whose food was READY (null with --no-board: not watched).
    pub ready: Option<u64>,
    /// Orders collected (null with --no-collect).
    pub collected: Option<u64>,
    /// Customers whose food was not READY when the rush ended, with a ticket
    /// or still in line for one (null with --no-board).
    pub unserved: Option<u64>,
    /// Customers still waiting for a ticket (their `/order` unanswered) when
    /// the rush ended.
    pub unserved_without_ticket: u64,
    pub order_errors: BTreeMap<String, u64>,
    pub take_errors: BTreeMap<String, u64>,
    /// Customers who arrived per second, measured, while they arrived.
    pub arrivals_per_s: f64,
    /// Tickets handed out per second while customers arrived.
    pub orders_per_s: f64,
    /// Orders that became READY per second, from the start to the last READY.
    pub ready_per_s: Option<f64>,
    /// The kitchen's capacity: orders READY per second over the time it had
    /// orders waiting for it (`busy_s`), up to the last READY in that time.
    /// Null when fewer than [`MIN_READY_FOR_CAPACITY`] were READY then: too
    /// few orders to tell.
    pub capacity_per_s: Option<f64>,
    /// Orders READY while orders were waiting for the kitchen (what
    /// `capacity_per_s` is made of).
    pub busy_ready: Option<u64>,
    /// True when the kitchen kept up: it was never pushed to its limit, so
    /// its capacity is at least `capacity_per_s`, not exactly that.
    pub capacity_is_lower_bound: Option<bool>,
    /// Seconds of the rush during which orders were waiting for the
    /// kitchen, up to the last order READY then.
    pub busy_s: Option<f64>,
    /// Orders waiting (in line for a ticket, or cooking; with --no-board in
    /// line for a ticket only): at the end of the first slice (100 ms), the
    /// mean over the first quarter of the arrivals, and as they ended.
    pub waiting_at_start: u64,
    pub waiting_early: f64,
    pub waiting_at_end: u64,
    /// The trend of orders waiting while customers arrived (least squares),
    /// in orders per second, and whether the line grew without bound (it
    /// gained at least max(5, a tenth of the arrivals) over the arrivals).
    pub waiting_growth_per_s: f64,
    pub line_grew: bool,
    /// Kitchen workers of the restaurant, when known (embedded, or --workers).
    pub workers: Option<usize>,
    /// `capacity_per_s / workers`.
    pub per_worker_per_s: Option<f64>,
    /// Workers that would have kept up with the arrivals, when the kitchen did
    /// not: `ceil(arrivals_per_s / per_worker_per_s)`, assuming each worker
    /// adds as much (true while preparing, not the store, is the limit).
    pub workers_needed: Option<u64>,
    /// Scheduled arrival → `201` (open loop), or send → `201` (closed loop).
    pub order_latency: Latency,
    pub collect_latency: Option<Latency>,
    /// Ticket in hand → READY on the board, for every customer with a
    /// ticket: the unserved count with the time since their ticket.
    pub ticket_to_ready: Option<Latency>,
    /// Arrival → READY: how long each customer waited for food, every
    /// customer who got in line: the unserved count with the time they had
    /// waited when the rush ended (so, for them, at least that).
    pub wait: Option<Latency>,
    /// The longest wait, served or not: the order (null for a customer who
    /// never got a ticket), how long, and whether their food came.
    pub longest_wait_order: Option<u32>,
    pub longest_wait_ms: Option<f64>,
    pub longest_wait_served: Option<bool>,
    /// Most orders waiting (in line for a ticket, or cooking) at once, and when.
    pub peak_waiting: Option<u64>,
    pub peak_waiting_at_s: Option<f64>,
    pub board_events: u64,
    pub board_resyncs: u64,
    pub board_reconnects: u64,
    pub chart: Option<String>,
    /// Why the figures that are null were not measured.
    pub not_measured: Vec<String>,
}

/// What the rush knew besides the recorder.
pub struct Context {
    pub mode: String,
    /// Why the arrivals ended before --duration, if they did.
    pub stopped_early: Option<String>,
    pub target: String,
    pub rate: Option<f64>,
    pub connections: Option<usize>,
    pub arrivals: Duration,
    pub elapsed: Duration,
    /// Whether customers watched the board (not --no-board) and collected.
    pub board: bool,
    pub collect: bool,
    /// Kitchen workers, when known.
    pub workers: Option<usize>,
    /// Most customers inside at once (closed loop: reached when the kitchen
    /// is the limit).
    pub max_inside: u64,
    pub seen: Seen,
    pub chart: Option<String>,
}

/// The fewest orders READY while the kitchen was busy that its capacity is
/// told from. Fewer say little: a kitchen that finishes orders in batches
/// (its workers all started together) reads at half or double its pace
/// depending on where the rush cut a batch.
pub const MIN_READY_FOR_CAPACITY: u64 = 10;

/// What the timeline says about the line and the kitchen.
struct Trend {
    waiting_at_start: u64,
    waiting_early: f64,
    waiting_at_end: u64,
    growth_per_s: f64,
    grew: bool,
    /// Orders READY, and seconds, in the slices that began with orders
    /// waiting for the kitchen, up to the last such slice with one READY:
    /// busy time after it holds work not finished, which no count shows.
    busy_ready: u64,
    busy_s: f64,
}

fn trend(timeline: &[Bucket], arrivals: Duration, arrived: u64) -> Trend {
    let waiting = |b: &Bucket| b.in_line + b.cooking;
    let width = BUCKET.as_secs_f64();
    let slices = ((arrivals.as_secs_f64() / width).ceil() as usize)
        .max(1)
        .min(timeline.len());
    let during = &timeline[..slices];
    let quarter = &during[..during.len().div_ceil(4)];
    let waiting_early = match quarter.len() {
        0 => 0.0,
        n => quarter.iter().map(waiting).sum::<u64>() as f64 / n as f64,
    };
    let waiting_at_start = during.first().map_or(0, waiting);
    let waiting_at_end = during.last().map_or(0, waiting);
    // Least squares slope of orders waiting against time.
    let n = during.len() as f64;
    let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
    for (i, b) in during.iter().enumerate() {
        let (x, y) = ((i as f64 + 1.0) * width, waiting(b) as f64);
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    let denominator = n * sxx - sx * sx;
    let growth_per_s = if n >= 2.0 && denominator > 0.0 {
        (n * sxy - sx * sy) / denominator
    } else {
        0.0
    };
    let gained = growth_per_s * arrivals.as_secs_f64();
    let grew = gained >= (arrived as f64 / 10.0).max(5.0);
    let (mut busy_ready, mut busy, mut busy_until_ready) = (0, 0u32, 0u32);
    for pair in timeline.windows(2) {
        if pair[0].cooking > 0 {
            busy += 1;
            if pair[1].ready > 0 {
                busy_ready += pair[1].ready;
                busy_until_ready = busy;
            }
        }
    }
    Trend {
        waiting_at_start,
        waiting_early,
        waiting_at_end,
        growth_per_s,
        grew,
        busy_ready,
        busy_s: busy_until_ready as f64 * width,
    }
}

impl Summary {
    pub fn new(r: &Recorder, c: Context) -> Summary {
        let mut not_measured = Vec::new();
        if !c.board {
            not_measured.push(
                "food ready, waits, the kitchen and orders waiting in it: --no-board (nobody watched the board)".to_owned(),
            );
        }
        if !c.collect {
            not_measured.push("collection: --no-collect (nobody collected)".to_owned());
        }
        let (peak_waiting, peak_at) = r
            .timeline
            .iter()
            .enumerate()
            .map(|(i, b)| (b.in_line + b.cooking, i))
            .max_by_key(|(waiting, i)| (*waiting, std::cmp::Reverse(*i)))
            .unwrap_or((0, 0));
        let t = trend(&r.timeline, c.arrivals, r.arrived);
        let closed = c.mode == "closed";
        // Open loop: the kitchen was at its limit if the line grew. Closed
        // loop: the line cannot grow past --max-inside; the kitchen was the
        // limit if the customers waiting for it came close to that.
        let saturated = match closed {
            true => peak_waiting as f64 >= 0.9 * c.max_inside as f64,
            false => t.grew,
        };
        let capacity = (c.board && t.busy_s > 0.0 && t.busy_ready >= MIN_READY_FOR_CAPACITY)
            .then(|| t.busy_ready as f64 / t.busy_s);
        let arrivals_per_s = per_second(r.arrived, c.arrivals);
        let per_worker = capacity
            .zip(c.workers.filter(|w| *w > 0))
            .map(|(capacity, w)| capacity / w as f64);
        let workers_needed = match (closed, saturated, per_worker) {
            (false, true, Some(each)) if each > 0.0 => Some((arrivals_per_s / each).ceil() as u64),
            _ => None,
        };
        if c.board && c.workers.is_none() {
            not_measured.push(
                "the rate per worker and the workers needed: give the target's --workers N"
                    .to_owned(),
            );
        }
        let refused = r.order_errors.values().sum();
        Summary {
            mode: c.mode,
            stopped_early: c.stopped_early,
            target: c.target,
            rate: c.rate,
            connections: c.connections,
            arrivals_s: c.arrivals.as_secs_f64(),
            elapsed_s: c.elapsed.as_secs_f64(),
            arrived: r.arrived,
            turned_away: r.turned_away,
            ordered: r.ordered,
            refused,
            ready: c.board.then_some(r.ready),
            collected: (c.board && c.collect).then_some(r.collected),
            unserved: c.board.then_some(r.unserved),
            unserved_without_ticket: r.unserved_in_line,
            order_errors: r.order_errors.clone(),
            take_errors: r.take_errors.clone(),
            arrivals_per_s,
            orders_per_s: per_second(r.ordered, c.arrivals),
            ready_per_s: c.board.then_some(per_second(r.ready, r.last_ready)),
            capacity_per_s: capacity,
            busy_ready: c.board.then_some(t.busy_ready),
            capacity_is_lower_bound: capacity.map(|_| !saturated),
            busy_s: c.board.then_some(t.busy_s),
            waiting_at_start: t.waiting_at_start,
            waiting_early: t.waiting_early,
            waiting_at_end: t.waiting_at_end,
            waiting_growth_per_s: t.growth_per_s,
            line_grew: t.grew,
            workers: c.workers,
            per_worker_per_s: per_worker,
            workers_needed,
            order_latency: Latency::of(&r.order_latency),
            collect_latency: (c.board && c.collect).then(|| Latency::of(&r.collect_latency)),
            ticket_to_ready: c.board.then_some(Latency::of(&r.ticket_to_ready)),
            wait: c.board.then_some(Latency::of(&r.wait)),
            longest_wait_order: r.longest.filter(|_| c.board).and_then(|l| l.ticket),
            longest_wait_ms: r
                .longest
                .filter(|_| c.board)
                .map(|l| l.wait_us as f64 / 1000.0),
            longest_wait_served: r.longest.filter(|_| c.board).map(|l| l.served),
            peak_waiting: c.board.then_some(peak_waiting),
            peak_waiting_at_s: c
                .board
                .then_some((BUCKET * (peak_at as u32 + 1)).as_secs_f64()),
            board_events: c.seen.events,
            board_resyncs: c.seen.resyncs,
            board_reconnects: c.seen.reconnects,
            chart: c.chart,
            not_measured,
        }
    }

    /// The summary for a person.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let closed = self.mode == "closed";
        let how = match (self.rate, self.connections) {
            (Some(rate), _) => format!("{} customers arriving per second", number(rate)),
            (None, Some(n)) => format!("{n} counters ordering back to back (closed loop)"),
            _ => String::new(),
        };
        let early = self
            .stopped_early
            .as_ref()
            .map_or(String::new(), |why| format!(" (stopped early: {why})"));
        let _ = writeln!(
            out,
            "Lunch rush at {}: {how}, for {}{early}",
            self.target,
            seconds(self.arrivals_s)
        );
        let not_measured_board = "not measured: --no-board";
        let served = match (self.ready, self.unserved) {
            (Some(ready), Some(unserved)) => {
                let mut line = format!("{} had their food", count(ready));
                if unserved > 0 {
                    let _ = write!(
                        line,
                        ", {} of {} customers were still waiting when the rush ended",
                        count(unserved),
                        count(self.arrived)
                    );
                    if self.unserved_without_ticket > 0 {
                        let _ = write!(
                            line,
                            " ({} of them without a ticket yet)",
                            count(self.unserved_without_ticket)
                        );
                    }
                }
                line
            }
            _ => format!("food ready {not_measured_board}"),
        };
        let _ = writeln!(
            out,
            "  customers        {} arrived, {} got a ticket; {served}",
            count(self.arrived),
            count(self.ordered)
        );
        if self.ready.is_none() && self.unserved_without_ticket > 0 {
            let _ = writeln!(
                out,
                "                   {} were still waiting for a ticket when the rush ended",
                count(self.unserved_without_ticket)
            );
        }
        if self.turned_away > 0 {
            let _ = writeln!(
                out,
                "                   {} turned away: too many customers inside already",
                count(self.turned_away)
            );
        }
        if self.refused > 0 {
            let _ = writeln!(
                out,
                "                   {} refused by /order (below): they left without food",
                count(self.refused)
            );
        }
        match self.collected {
            Some(collected) => {
                let _ = writeln!(out, "  collected        {}", count(collected));
            }
            None if self.ready.is_some() => {
                let _ = writeln!(out, "  collected        none: --no-collect");
            }
            None => {}
        }
        for (what, errors) in [("/order", &self.order_errors), ("/take", &self.take_errors)] {
            if !errors.is_empty() {
                let list: Vec<String> = errors
                    .iter()
                    .map(|(k, v)| format!("{} × {k}", count(*v)))
                    .collect();
                let _ = writeln!(out, "  failed {what:<9} {}", list.join(", "));
            }
        }
        let arrivals = match (closed, self.rate) {
            (false, Some(rate)) => format!(
                "{}/s asked, {}/s came",
                number(rate),
                number(self.arrivals_per_s)
            ),
            _ => format!(
                "{}/s (as fast as the counters were answered)",
                number(self.arrivals_per_s)
            ),
        };
        let _ = writeln!(out, "  arrivals         {arrivals}");
        let ready = self
            .ready_per_s
            .map_or(format!("ready {not_measured_board}"), |r| {
                format!("{} orders/s ready", number(r))
            });
        let _ = writeln!(
            out,
            "  throughput       {} orders/s taken, {ready}",
            number(self.orders_per_s)
        );
        let kitchen = match (self.capacity_per_s, self.capacity_is_lower_bound) {
            (Some(c), Some(true)) => format!(
                "at least {} orders ready/s: it kept up, so its limit was not reached ({} with orders waiting for it)",
                number(c),
                seconds(self.busy_s.unwrap_or(0.0))
            ),
            (Some(c), _) => format!(
                "{} orders ready/s at its limit ({} with orders waiting for it)",
                number(c),
                seconds(self.busy_s.unwrap_or(0.0))
            ),
            (None, _) if self.ready.is_none() => not_measured_board.to_owned(),
            (None, _) if self.peak_waiting.unwrap_or(0) == 0 => {
                "no order was ever waiting for it".to_owned()
            }
            (None, _) => format!(
                "not measured: too few orders to tell ({} ready while orders waited for it; it takes {MIN_READY_FOR_CAPACITY})",
                count(self.busy_ready.unwrap_or(0))
            ),
        };
        let _ = writeln!(out, "  kitchen capacity {kitchen}");
        let what_waits = match self.ready {
            Some(_) => "orders waiting",
            None => "customers waiting for a ticket",
        };
        let line = if closed {
            format!(
                "closed loop: customers come only as fast as they are answered, so the line cannot grow past --max-inside (most {what_waits}: {})",
                self.peak_waiting
                    .map_or(not_measured_board.to_owned(), count)
            )
        } else if self.line_grew {
            format!(
                "grew from {} to {} {what_waits} while customers arrived (+{}/s): {} did not keep up",
                count(self.waiting_at_start),
                count(self.waiting_at_end),
                number(self.waiting_growth_per_s),
                match self.ready {
                    Some(_) => "the restaurant",
                    None => "the front counter",
                }
            )
        } else {
            format!(
                "stayed level: {} {what_waits} on average early on, {} as the arrivals ended; it kept up",
                number(self.waiting_early),
                count(self.waiting_at_end)
            )
        };
        let _ = writeln!(out, "  the line         {line}");
        let workers = match (self.workers, self.per_worker_per_s) {
            _ if self.ready.is_none() => not_measured_board.to_owned(),
            (None, _) => {
                "not measured: with --target, give its worker count as --workers N".to_owned()
            }
            (Some(w), None) if self.peak_waiting.unwrap_or(0) == 0 => {
                format!("{w}: no rate per worker (the kitchen was never busy)")
            }
            (Some(w), None) => format!(
                "{w}: not measured: too few orders ready to tell the rate per worker, or how many would have kept up"
            ),
            (Some(w), Some(each)) => {
                let at_least = match self.capacity_is_lower_bound {
                    Some(true) => "at least ",
                    _ => "",
                };
                let mut text = format!(
                    "{w} made {at_least}{} orders/s each (capacity / {w})",
                    number(each)
                );
                match self.workers_needed {
                    Some(needed) => {
                        let _ = write!(
                            text,
                            "; {needed} would have kept up with {}/s arriving ({}/s / {}/s per worker, rounded up; \
                             more if the store, not the workers, is the limit)",
                            number(self.arrivals_per_s),
                            number(self.arrivals_per_s),
                            number(each)
                        );
                    }
                    None if closed => {}
                    None if self.capacity_is_lower_bound == Some(true) => {
                        let _ = write!(text, "; they kept up");
                    }
                    None => {
                        let _ = write!(
                            text,
                            "; they did not keep up, and no order was ready to tell how many would have"
                        );
                    }
                }
                text
            }
        };
        let _ = writeln!(out, "  workers          {workers}");
        let unserved = self.unserved.unwrap_or(0);
        let _ = writeln!(
            out,
            "  latency (ms)       p50      p90      p99    p99.9      max"
        );
        let star = if unserved > 0 { " *" } else { "" };
        let rows = [
            (format!("ticket → ready{star}"), self.ticket_to_ready),
            (format!("arrival → ready{star}"), self.wait),
            ("POST /order".to_owned(), Some(self.order_latency)),
            ("POST /take".to_owned(), self.collect_latency),
        ];
        for (name, l) in rows {
            match l {
                Some(l) if l.count > 0 => {
                    let _ = writeln!(
                        out,
                        "  {name:<17}{:>7}{:>9}{:>9}{:>9}{:>9}",
                        ms(l.p50_ms),
                        ms(l.p90_ms),
                        ms(l.p99_ms),
                        ms(l.p999_ms),
                        ms(l.max_ms)
                    );
                }
                None if name.contains("ready") => {
                    let _ = writeln!(out, "  {name:<17}{not_measured_board}");
                }
                _ => {}
            }
        }
        if unserved > 0 {
            let _ = writeln!(
                out,
                "                   * counting the {} customers never served with the time they had waited when the rush ended",
                count(unserved)
            );
        }
        match (self.longest_wait_ms, self.longest_wait_served) {
            (Some(wait), Some(served)) => {
                let who = match self.longest_wait_order {
                    Some(order) => format!("order {order}"),
                    None => "a customer who never got a ticket".to_owned(),
                };
                let what = if served {
                    "from arrival to food ready"
                } else {
                    "and still waiting when the rush ended"
                };
                let _ = writeln!(
                    out,
                    "  longest wait     {who}: {} {what}",
                    seconds(wait / 1000.0)
                );
            }
            _ => {
                let _ = writeln!(out, "  longest wait     {not_measured_board}");
            }
        }
        match (self.peak_waiting, self.peak_waiting_at_s) {
            (Some(peak), Some(at)) => {
                let _ = writeln!(
                    out,
                    "  busiest moment   {} orders waiting at {}",
                    count(peak),
                    seconds(at)
                );
            }
            _ => {
                let _ = writeln!(out, "  busiest moment   {not_measured_board}");
            }
        }
        if self.board_resyncs > 0 || self.board_reconnects > 0 {
            let _ = writeln!(
                out,
                "  board            {} events; fell behind {} times, reconnected {} times",
                self.board_events, self.board_resyncs, self.board_reconnects
            );
        }
        if let Some(wait) = self.wait.filter(|w| w.count > 0) {
            let words = if unserved == 0 {
                format!(
                    "every customer who got in line had their food: half within {} of arriving, 99 in 100 within {}.",
                    seconds(wait.p50_ms / 1000.0),
                    seconds(wait.p99_ms / 1000.0)
                )
            } else {
                format!(
                    "{} of {} customers were still waiting when the rush ended. Counting them with the time \
                     they had waited so far, at least half the customers waited {} or more for their food, \
                     and at least 1 in 100 waited {} or more.",
                    count(unserved),
                    count(self.arrived),
                    seconds(wait.p50_ms / 1000.0),
                    seconds(wait.p99_ms / 1000.0)
                )
            };
            let _ = writeln!(out, "  In words: {words}");
        }
        if let Some(chart) = &self.chart {
            let _ = writeln!(out, "  chart            {chart}");
        }
        out
    }
}

/// A count with thousands separated: 45,637.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate or a mean: whole from 100 up, two decimals below 1 (0.5/s is
/// not 0.0/s), one between.
pub(super) fn number(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 1.0 || x == 0.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.1} ms", s * 1000.0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rush::stats::{Recorder, histogram};

    /// An open-loop summary of `r`: 10 customers/s for 5 s, `board` or
    /// --no-board, with `workers` when known.
    pub(crate) fn summary_of(r: &Recorder, board: bool, workers: Option<usize>) -> Summary {
        Summary::new(
            r,
            Context {
                mode: "open".into(),
                stopped_early: None,
                target: "embedded".into(),
                rate: Some(10.0),
                connections: None,
                arrivals: Duration::from_secs(5),
                elapsed: Duration::from_secs(6),
                board,
                collect: board,
                workers,
                max_inside: 100_000,
                seen: Seen::default(),
                chart: None,
            },
        )
    }

    #[test]
    fn percentiles_come_from_the_histogram_in_milliseconds() {
        let mut h = histogram();
        for ms in 1..=1000u64 {
            h.record(ms * 1000).unwrap();
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        // Three significant digits: within 0.1 %.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(l.p50_ms, 500.0), "{l:?}");
        assert!(close(l.p90_ms, 900.0), "{l:?}");
        assert!(close(l.p99_ms, 990.0), "{l:?}");
        assert!(close(l.p999_ms, 999.0), "{l:?}");
        assert!(close(l.max_ms, 1000.0), "{l:?}");
        assert!(close(l.mean_ms, 500.5), "{l:?}");
        assert_eq!(Latency::of(&histogram()), Latency::default());
    }

    #[test]
    fn rates_are_per_second_and_zero_over_no_time() {
        assert_eq!(per_second(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(per_second(7, Duration::ZERO), 0.0);
    }

    #[test]
    fn the_summary_finds_the_longest_wait_and_the_busiest_moment() {
        let mut r = Recorder::default();
        let s = Duration::from_secs;
        r.arrived = 3;
        r.ordered(Duration::from_millis(10), Duration::from_millis(2));
        r.ordered(Duration::from_millis(20), Duration::from_millis(4));
        r.ordered(s(1), Duration::from_millis(6));
        r.ready(
            1,
            Duration::from_millis(500),
            Duration::from_millis(480),
            Duration::from_millis(490),
        );
        r.ready(3, s(2), s(1), Duration::from_millis(1001));
        r.ready(
            2,
            s(4),
            Duration::from_millis(3970),
            Duration::from_millis(3980),
        );
        r.bucket(s(1)).cooking = 5;
        r.bucket(s(2)).cooking = 9;
        r.bucket(s(3)).in_line = 4;
        r.bucket(s(3)).cooking = 5;
        let summary = Summary::new(
            &r,
            Context {
                mode: "open".into(),
                stopped_early: None,
                target: "embedded".into(),
                rate: Some(3.0),
                connections: None,
                arrivals: s(2),
                elapsed: s(4),
                board: true,
                collect: true,
                workers: Some(2),
                max_inside: 100_000,
                seen: Seen::default(),
                chart: None,
            },
        );
        assert_eq!(summary.orders_per_s, 1.5);
        // Three READY by 4 s after the start.
        assert_eq!(summary.ready_per_s, Some(0.75));
        assert_eq!(summary.longest_wait_order, Some(2));
        assert!((summary.longest_wait_ms.unwrap() - 3980.0).abs() < 4.0);
        assert_eq!(summary.longest_wait_served, Some(true));
        assert_eq!(summary.unserved, Some(0));
        // 9 and 4 + 5 tie: the earlier moment is the one named.
        assert_eq!(
            (summary.peak_waiting, summary.peak_waiting_at_s),
            (Some(9), Some(2.1))
        );
        assert_eq!(summary.order_latency.count, 3);
        assert!(
            summary.text().contains("order 2: 3.98 s"),
            "{}",
            summary.text()
        );
    }

    /// 50 customers, one every 100 ms for 5 s; the kitchen serves the first
    /// 5 (one a second) and the line grows by 9 a second.
    fn overloaded() -> Recorder {
        let mut r = Recorder::default();
        let ms = Duration::from_millis;
        for i in 0..50u64 {
            let at = ms(100 * i);
            r.arrived += 1;
            r.bucket(at).arrived += 1;
            r.ordered(at, ms(2));
            // Orders waiting at the end of each slice: all those ordered
            // but the ones served by then.
            r.bucket(at).cooking = i + 1 - (i / 10);
        }
        for i in 1..=5u32 {
            let at = Duration::from_secs(i.into());
            r.ready(
                i,
                at,
                at - ms(100 * u64::from(i - 1)),
                at - ms(100 * u64::from(i - 1)),
            );
        }
        // The 45 never served: waited from their arrival to the end at 6 s.
        for i in 5..50u64 {
            r.unserved(Some((i as u32 + 1, ms(6000 - 100 * i))), ms(6000 - 100 * i));
        }
        r
    }

    #[test]
    fn the_unserved_count_in_every_percentile_and_the_longest_wait() {
        let r = overloaded();
        let s = summary_of(&r, true, Some(1));
        assert_eq!((s.ready, s.unserved), (Some(5), Some(45)));
        let wait = s.wait.unwrap();
        assert_eq!(wait.count, 50, "every customer is counted");
        // Served waits are 1 s to 1.6 s; the unserved waited 1.1 s to 5.5 s.
        assert!(wait.p50_ms > 3000.0, "{wait:?}");
        assert!(wait.max_ms > 5400.0, "{wait:?}");
        // Order 6 arrived at 0.5 s and was still waiting at 6 s.
        assert!((s.longest_wait_ms.unwrap() - 5500.0).abs() < 10.0, "{s:?}");
        assert_eq!(s.longest_wait_order, Some(6));
        assert_eq!(s.longest_wait_served, Some(false));
        assert_eq!(s.ticket_to_ready.unwrap().count, 50);
        let text = s.text();
        for words in [
            "45 of 50 customers were still waiting when the rush ended",
            "and still waiting when the rush ended",
            "* counting the 45 customers never served",
            "at least half the customers waited",
        ] {
            assert!(text.contains(words), "{words:?} in\n{text}");
        }
    }

    /// 50 customers, one every 100 ms for 5 s; `workers` workers who all
    /// take `prep` per order, starting together, so orders are READY in
    /// batches of `workers` every `prep`; the rush ends at `end`, with the
    /// rest unserved.
    fn batches(workers: u64, prep: Duration, end: Duration) -> Recorder {
        let mut r = Recorder::default();
        let ms = Duration::from_millis;
        let mut ready_at = Vec::new();
        let mut t = prep;
        while ready_at.len() < 50 && t <= end {
            for _ in 0..workers {
                ready_at.push(t);
            }
            t += prep;
        }
        ready_at.truncate(50);
        let slices = (end.as_millis() / 100) as u64;
        for slice in 0..slices {
            let at = ms(100 * slice);
            if slice < 50 {
                r.arrived += 1;
                r.bucket(at).arrived += 1;
                r.ordered(at, ms(2));
            }
            let ordered = (slice + 1).min(50);
            let served = ready_at.iter().filter(|&&t| t <= at).count() as u64;
            r.bucket(at).cooking = ordered - served;
        }
        for (i, &at) in ready_at.iter().enumerate() {
            let arrival = ms(100 * i as u64);
            r.ready(i as u32 + 1, at, at - arrival, at - arrival);
        }
        for i in ready_at.len() as u64..50 {
            let waited = end - ms(100 * i);
            r.unserved(Some((i as u32 + 1, waited)), waited);
        }
        r
    }

    #[test]
    fn the_report_says_what_the_figures_mean_for_the_manager() {
        // One worker making 2 a second (READY every 500 ms): 12 by 6 s.
        let r = batches(1, Duration::from_millis(500), Duration::from_secs(6));
        let s = summary_of(&r, true, Some(1));
        assert!(s.line_grew, "{s:?}");
        assert!(s.waiting_growth_per_s > 5.0, "{s:?}");
        assert!(s.waiting_at_end > 30, "{s:?}");
        // The line started empty: its first slice held the first customer.
        assert_eq!(s.waiting_at_start, 1, "{s:?}");
        // Two ready per second, while orders waited.
        let capacity = s.capacity_per_s.unwrap();
        assert!((capacity - 2.0).abs() < 0.1, "{s:?}");
        assert_eq!(s.capacity_is_lower_bound, Some(false));
        // 10 arriving a second, one worker making 2 a second: 5 workers.
        assert_eq!(s.workers_needed, Some(5), "{s:?}");
        let text = s.text();
        for words in [
            "10.0/s asked, 10.0/s came",
            "at its limit",
            "grew from 1 to ",
            "did not keep up",
            "5 would have kept up",
        ] {
            assert!(text.contains(words), "{words:?} in\n{text}");
        }
        // Without the target's worker count, the estimate says it was not measured.
        let s = summary_of(&r, true, None);
        assert_eq!(s.workers_needed, None);
        assert!(
            s.text().contains("workers          not measured"),
            "{}",
            s.text()
        );
    }

    #[test]
    fn what_was_not_measured_says_so_instead_of_zero() {
        let mut r = Recorder::default();
        for i in 0..100 {
            r.arrived += 1;
            r.ordered(Duration::from_millis(10 * i), Duration::from_millis(1));
        }
        let s = summary_of(&r, false, Some(2));
        assert_eq!(
            (
                s.ready,
                s.unserved,
                s.collected,
                s.ready_per_s,
                s.peak_waiting
            ),
            (None, None, None, None, None)
        );
        assert!(s.wait.is_none() && s.capacity_per_s.is_none());
        let json = serde_json::to_value(&s).unwrap();
        assert!(
            json["ready"].is_null() && json["unserved"].is_null(),
            "{json}"
        );
        assert!(json["longest_wait_ms"].is_null(), "{json}");
        let text = s.text();
        assert!(text.contains("not measured: --no-board"), "{text}");
        assert!(!text.contains("0 food ready"), "{text}");
        assert!(!text.contains("0.0 orders/s ready"), "{text}");
        assert!(!text.contains("busiest moment   0"), "{text}");
    }

    #[test]
    fn a_kitchen_that_finishes_in_batches_is_measured_at_its_pace() {
        // Two workers, 2 s an order, starting together: 2 READY every 2 s,
        // a pace of 1 a second. The rush ends at 11.9 s, mid-batch: the
        // busy time after the last READY (at 10 s) holds work unfinished.
        let r = batches(2, Duration::from_secs(2), Duration::from_millis(11_900));
        let s = summary_of(&r, true, Some(2));
        assert_eq!(s.busy_ready, Some(10), "{s:?}");
        let capacity = s.capacity_per_s.unwrap();
        assert!((capacity - 1.0).abs() < 0.05, "{s:?}");
        // 10 arriving a second, 0.5 a second per worker: 20.
        assert_eq!(s.workers_needed, Some(20), "{s:?}");
    }

    #[test]
    fn too_few_orders_ready_tell_no_capacity_and_no_workers_needed() {
        // Two workers, 2 s an order: only 4 READY by 5 s.
        let r = batches(2, Duration::from_secs(2), Duration::from_secs(5));
        let s = summary_of(&r, true, Some(2));
        assert_eq!(s.ready, Some(4));
        assert_eq!(s.busy_ready, Some(4));
        assert_eq!(
            (
                s.capacity_per_s,
                s.capacity_is_lower_bound,
                s.workers_needed
            ),
            (None, None, None),
            "{s:?}"
        );
        let text = s.text();
        for words in [
            "kitchen capacity not measured: too few orders to tell (4 ready",
            "too few orders ready to tell the rate per worker",
        ] {
            assert!(text.contains(words), "{words:?} in\n{text}");
        }
        assert!(!text.contains("would have kept up with"), "{text}");
        assert!(!text.contains("orders ready/s"), "{text}");
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["capacity_per_s"].is_null(), "{json}");
    }

    #[test]
    fn a_kitchen_that_served_nobody_is_not_said_to_keep_up() {
        let mut r = Recorder::default();
        for i in 0..50u64 {
            let at = Duration::from_millis(100 * i);
            r.arrived += 1;
            r.ordered(at, Duration::from_millis(1));
            r.bucket(at).cooking = i + 1;
            r.unserved(
                Some((i as u32 + 1, Duration::from_secs(1))),
                Duration::from_secs(1),
            );
        }
        let s = summary_of(&r, true, Some(1));
        assert_eq!((s.ready, s.workers_needed), (Some(0), None));
        assert_eq!((s.capacity_per_s, s.capacity_is_lower_bound), (None, None));
        let text = s.text();
        assert!(!text.contains("kept up;"), "{text}");
        assert!(!text.contains("they kept up"), "{text}");
        assert!(!text.contains("0.0 orders ready/s"), "{text}");
        assert!(!text.contains("at its limit"), "{text}");
        assert!(
            text.contains("kitchen capacity not measured: too few orders to tell (0 ready"),
            "{text}"
        );
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(count(45_637), "45,637");
        assert_eq!(count(1_986), "1,986");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(number(0.5), "0.50");
    }
}
