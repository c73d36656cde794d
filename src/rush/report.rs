//! The summary of a rush: figures computed from what [`Stats`] recorded,
//! printed for a person (what a manager asks, in the terms a student knows)
//! or as JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::stats::{BUCKET, Recorder};
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

/// The figures of one rush.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `open` (customers arrive at a rate) or `closed` (N connections back to back).
    pub mode: String,
    pub target: String,
    /// Customers per second asked for (open loop).
    pub rate: Option<f64>,
    pub connections: Option<usize>,
    /// How long customers kept arriving, in seconds.
    pub arrivals_s: f64,
    /// The whole rush, arrivals and the wait for the last orders, in seconds.
    pub elapsed_s: f64,
    pub arrived: u64,
    pub turned_away: u64,
    pub ordered: u64,
    pub ready: u64,
    pub collected: u64,
    /// Tickets still not READY (or not collected) when the rush ended.
    pub unfinished: u64,
    pub order_errors: BTreeMap<String, u64>,
    pub take_errors: BTreeMap<String, u64>,
    /// Tickets handed out per second while customers arrived.
    pub orders_per_s: f64,
    /// Orders that became READY per second, from the start to the last READY.
    pub ready_per_s: f64,
    /// Scheduled arrival → `201` (open loop), or send → `201` (closed loop).
    pub order_latency: Latency,
    pub take_latency: Latency,
    /// Ticket in hand → READY on the board.
    pub ticket_to_ready: Latency,
    /// Arrival → READY: how long a customer waited for food.
    pub wait: Latency,
    pub longest_wait_order: Option<u32>,
    pub longest_wait_ms: f64,
    /// Most orders waiting (in line for a ticket, or cooking) at once, and when.
    pub peak_waiting: u64,
    pub peak_waiting_at_s: f64,
    pub board_events: u64,
    pub board_resyncs: u64,
    pub board_reconnects: u64,
    pub chart: Option<String>,
}

/// What the rush knew besides the recorder.
pub struct Context {
    pub mode: String,
    pub target: String,
    pub rate: Option<f64>,
    pub connections: Option<usize>,
    pub arrivals: Duration,
    pub elapsed: Duration,
    pub unfinished: u64,
    pub seen: Seen,
    pub chart: Option<String>,
}

impl Summary {
    pub fn new(r: &Recorder, c: Context) -> Summary {
        let (peak_waiting, peak_at) = r
            .timeline
            .iter()
            .enumerate()
            .map(|(i, b)| (b.in_line + b.cooking, i))
            .max_by_key(|(waiting, i)| (*waiting, std::cmp::Reverse(*i)))
            .unwrap_or((0, 0));
        Summary {
            mode: c.mode,
            target: c.target,
            rate: c.rate,
            connections: c.connections,
            arrivals_s: c.arrivals.as_secs_f64(),
            elapsed_s: c.elapsed.as_secs_f64(),
            arrived: r.arrived,
            turned_away: r.turned_away,
            ordered: r.ordered,
            ready: r.ready,
            collected: r.collected,
            unfinished: c.unfinished,
            order_errors: r.order_errors.clone(),
            take_errors: r.take_errors.clone(),
            orders_per_s: per_second(r.ordered, c.arrivals),
            ready_per_s: per_second(r.ready, r.last_ready),
            order_latency: Latency::of(&r.order_latency),
            take_latency: Latency::of(&r.take_latency),
            ticket_to_ready: Latency::of(&r.ticket_to_ready),
            wait: Latency::of(&r.wait),
            longest_wait_order: r.longest.map(|(t, _)| t),
            longest_wait_ms: r.longest.map_or(0.0, |(_, us)| us as f64 / 1000.0),
            peak_waiting,
            peak_waiting_at_s: (BUCKET * (peak_at as u32 + 1)).as_secs_f64(),
            board_events: c.seen.events,
            board_resyncs: c.seen.resyncs,
            board_reconnects: c.seen.reconnects,
            chart: c.chart,
        }
    }

    /// The summary for a person.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let how = match (self.rate, self.connections) {
            (Some(rate), _) => format!("{} customers arriving per second", number(rate)),
            (None, Some(n)) => format!("{n} counters ordering back to back (closed loop)"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "Lunch rush at {}: {how}, for {}",
            self.target,
            seconds(self.arrivals_s)
        );
        let _ = writeln!(
            out,
            "  customers        {} arrived, {} got a ticket, {} food ready, {} collected",
            self.arrived, self.ordered, self.ready, self.collected
        );
        if self.turned_away > 0 {
            let _ = writeln!(
                out,
                "                   {} turned away: too many customers inside already",
                self.turned_away
            );
        }
        if self.unfinished > 0 {
            let _ = writeln!(
                out,
                "                   {} still waiting when the rush ended",
                self.unfinished
            );
        }
        for (what, errors) in [("/order", &self.order_errors), ("/take", &self.take_errors)] {
            if !errors.is_empty() {
                let list: Vec<String> = errors.iter().map(|(k, v)| format!("{v} × {k}")).collect();
                let _ = writeln!(out, "  failed {what:<9} {}", list.join(", "));
            }
        }
        let _ = writeln!(
            out,
            "  throughput       {} orders/s taken, {} orders/s ready",
            number(self.orders_per_s),
            number(self.ready_per_s)
        );
        let _ = writeln!(
            out,
            "  latency (ms)       p50      p90      p99    p99.9      max"
        );
        for (name, l) in [
            ("ticket → ready", &self.ticket_to_ready),
            ("arrival → ready", &self.wait),
            ("POST /order", &self.order_latency),
            ("POST /take", &self.take_latency),
        ] {
            if l.count > 0 {
                let _ = writeln!(
                    out,
                    "  {name:<16}{:>8}{:>9}{:>9}{:>9}{:>9}",
                    ms(l.p50_ms),
                    ms(l.p90_ms),
                    ms(l.p99_ms),
                    ms(l.p999_ms),
                    ms(l.max_ms)
                );
            }
        }
        if let Some(order) = self.longest_wait_order {
            let _ = writeln!(
                out,
                "  longest wait     order {order}: {} from arrival to food ready",
                seconds(self.longest_wait_ms / 1000.0)
            );
        }
        let _ = writeln!(
            out,
            "  busiest moment   {} orders waiting at {}",
            self.peak_waiting,
            seconds(self.peak_waiting_at_s)
        );
        if self.board_resyncs > 0 || self.board_reconnects > 0 {
            let _ = writeln!(
                out,
                "  board            {} events; fell behind {} times, reconnected {} times",
                self.board_events, self.board_resyncs, self.board_reconnects
            );
        }
        if self.ticket_to_ready.count > 0 {
            let _ = writeln!(
                out,
                "  In words: half the customers had their food within {} of getting their ticket, 99 in 100 within {}.",
                seconds(self.ticket_to_ready.p50_ms / 1000.0),
                seconds(self.ticket_to_ready.p99_ms / 1000.0)
            );
        }
        if let Some(chart) = &self.chart {
            let _ = writeln!(out, "  chart            {chart}");
        }
        out
    }
}

fn number(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
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
mod tests {
    use super::*;
    use crate::rush::stats::{Recorder, histogram};

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
                target: "embedded".into(),
                rate: Some(3.0),
                connections: None,
                arrivals: s(2),
                elapsed: s(4),
                unfinished: 0,
                seen: Seen::default(),
                chart: None,
            },
        );
        assert_eq!(summary.orders_per_s, 1.5);
        // Three READY by 4 s after the start.
        assert_eq!(summary.ready_per_s, 0.75);
        assert_eq!(summary.longest_wait_order, Some(2));
        assert!((summary.longest_wait_ms - 3980.0).abs() < 4.0);
        // 9 and 4 + 5 tie: the earlier moment is the one named.
        assert_eq!((summary.peak_waiting, summary.peak_waiting_at_s), (9, 2.1));
        assert_eq!(summary.order_latency.count, 3);
        assert!(
            summary.text().contains("order 2: 3.98 s"),
            "{}",
            summary.text()
        );
    }
}
