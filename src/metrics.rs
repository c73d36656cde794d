//! The restaurant's metrics, for Prometheus: this module owns every metric's
//! name, help text, buckets, and the recorder that holds them, and renders
//! them in the Prometheus text format (`GET /metrics`, and `fastfood worker
//! --metrics ADDR`). The rest of the program records with one call each
//! ([`committed`], [`store_cycle`], [`http_request`], [`given_back`],
//! [`redelivered`], [`set_aside`], [`lost_by_the_line`]); the figures that describe the restaurant *now* (orders by
//! status, queue depth, boards) are read when scraped and set with
//! [`Now::set`] just before [`render`].
//!
//! The recorder is `metrics-exporter-prometheus`'s, one per process and
//! private to this module (not installed as the `metrics` facade's global),
//! with every handle but the HTTP histogram's registered once, so recording
//! is an atomic add or a lock-free push, never a lookup by name on the hot
//! path. A process exports what *it* did: a status change is counted by the
//! process that committed it, a give-back by the process whose worker gave it
//! back, a redelivery by the process whose worker received it. So summing a
//! counter or histogram over every process of a restaurant counts each event
//! once. The gauges of shared things (the orders in the store, the RabbitMQ
//! queue) are the same in every process: take their `max`, not their sum.
//!
//! It depends on [`crate::order`] alone, so any module may record.

use std::sync::LazyLock;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::order::{Order, Status};

/// `fastfood_orders{status}`: orders in the restaurant now, by status.
pub const ORDERS: &str = "fastfood_orders";
/// `fastfood_status_changes_total{status}`: status changes this process committed.
pub const STATUS_CHANGES: &str = "fastfood_status_changes_total";
/// `fastfood_ticket_to_ready_seconds`: from the ticket to READY, per order.
pub const TICKET_TO_READY: &str = "fastfood_ticket_to_ready_seconds";
/// `fastfood_http_request_duration_seconds{route,status}`.
pub const HTTP_DURATION: &str = "fastfood_http_request_duration_seconds";
/// `fastfood_store_commit_seconds`: one write cycle of the store.
pub const STORE_COMMIT: &str = "fastfood_store_commit_seconds";
/// `fastfood_store_batch_size`: requests decided in one write cycle.
pub const STORE_BATCH: &str = "fastfood_store_batch_size";
/// `fastfood_queue_depth`: orders waiting for a worker.
pub const QUEUE_DEPTH: &str = "fastfood_queue_depth";
/// `fastfood_boards_connected`: screens reading `/updates`.
pub const BOARDS: &str = "fastfood_boards_connected";
/// `fastfood_given_back_total`: orders this process's workers gave back.
pub const GIVEN_BACK: &str = "fastfood_given_back_total";
/// `fastfood_redelivered_total`: orders this process's workers received again.
pub const REDELIVERED: &str = "fastfood_redelivered_total";
/// `fastfood_set_aside_total`: poison orders this process's workers set aside.
pub const SET_ASIDE: &str = "fastfood_set_aside_total";
/// `fastfood_lost_by_the_line_total`: confirmed orders this server found in
/// no queue and sent again.
pub const LOST_BY_THE_LINE: &str = "fastfood_lost_by_the_line_total";

/// A ticket waits from a fraction of a second (`--prep-time 0`) to minutes
/// (a long line at `--prep-time 10s`).
const TICKET_TO_READY_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0,
    180.0, 300.0, 600.0, 1800.0,
];
/// A request takes from a tenth of a millisecond (a board read) to seconds
/// (an order waiting on a slow disk or a broker's confirm, up to 3 s each).
const HTTP_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// A write cycle is an append and an fsync: tens of microseconds on a fast
/// disk, up to the 3 s lock wait when another process holds the lock.
const COMMIT_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];
/// A cycle decides 1 to 1024 requests (the committer's most).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// How often histogram samples are folded into their buckets when nobody
/// scrapes, so they never pile up.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static METADATA: Metadata<'static> = Metadata::new("fastfood", Level::INFO, Some(module_path!()));

const STATUSES: [Status; 5] = [
    Status::Taken,
    Status::Preparing,
    Status::Ready,
    Status::Collected,
    Status::Cancelled,
];
/// The statuses of orders still in the restaurant, as [`Now::orders`] counts them.
pub const LIVE: [Status; 3] = [Status::Taken, Status::Preparing, Status::Ready];

/// The process's recorder and the handles registered once.
struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    orders: [Gauge; 3],
    changes: [Counter; 5],
    ticket_to_ready: Histogram,
    commit: Histogram,
    batch: Histogram,
    queue_depth: Gauge,
    boards: Gauge,
    given_back: Counter,
    redelivered: Counter,
    set_aside: Counter,
    lost_by_the_line: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let buckets = [
            (TICKET_TO_READY, TICKET_TO_READY_BUCKETS),
            (HTTP_DURATION, HTTP_BUCKETS),
            (STORE_COMMIT, COMMIT_BUCKETS),
            (STORE_BATCH, BATCH_BUCKETS),
        ];
        let mut builder = PrometheusBuilder::new();
        for (name, values) in buckets {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.to_owned()), values)
                .expect("the buckets are not empty");
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        describe(&recorder);

        let by_status = |name: &'static str, status: Status| {
            Key::from_parts(name, vec![Label::new("status", status.as_str())])
        };
        let gauge = |key: Key| recorder.register_gauge(&key, &METADATA);
        let counter = |key: Key| recorder.register_counter(&key, &METADATA);
        let histogram = |name| recorder.register_histogram(&Key::from_static_name(name), &METADATA);
        let metrics = Metrics {
            orders: LIVE.map(|s| gauge(by_status(ORDERS, s))),
            changes: STATUSES.map(|s| counter(by_status(STATUS_CHANGES, s))),
            ticket_to_ready: histogram(TICKET_TO_READY),
            commit: histogram(STORE_COMMIT),
            batch: histogram(STORE_BATCH),
            queue_depth: gauge(Key::from_static_name(QUEUE_DEPTH)),
            boards: gauge(Key::from_static_name(BOARDS)),
            given_back: counter(Key::from_static_name(GIVEN_BACK)),
            redelivered: counter(Key::from_static_name(REDELIVERED)),
            set_aside: counter(Key::from_static_name(SET_ASIDE)),
            lost_by_the_line: counter(Key::from_static_name(LOST_BY_THE_LINE)),
            handle: handle.clone(),
            recorder,
        };
        // Without a scraper, samples would wait in memory until the next render.
        let upkeep = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    handle.run_upkeep();
                }
            });
        if let Err(e) = upkeep {
            tracing::warn!("metrics: cannot start the upkeep thread: {e}");
        }
        metrics
    }
}

/// The help texts, in the words of `docs/api.md`.
fn describe(recorder: &PrometheusRecorder) {
    let help = |name: &'static str, unit: Option<Unit>, text: &'static str| {
        (KeyName::from_const_str(name), unit, text.into())
    };
    let gauges = [
        help(
            ORDERS,
            Some(Unit::Count),
            "Orders in the restaurant now, by status (the whole restaurant as this process's store sees it: the same in every process).",
        ),
        help(
            QUEUE_DEPTH,
            Some(Unit::Count),
            "Orders waiting for a worker: the in-process queue's length, or the RabbitMQ orders queue's message count (NaN when the broker cannot be asked).",
        ),
        help(
            BOARDS,
            Some(Unit::Count),
            "Screens connected to /updates on this server.",
        ),
    ];
    for (name, unit, text) in gauges {
        recorder.describe_gauge(name, unit, text);
    }
    let counters = [
        help(
            STATUS_CHANGES,
            Some(Unit::Count),
            "Status changes committed by this process, by the status reached.",
        ),
        help(
            GIVEN_BACK,
            Some(Unit::Count),
            "Orders this process's workers gave back to the front of the line (shutdown, store errors, --fail-rate).",
        ),
        help(
            REDELIVERED,
            Some(Unit::Count),
            "Orders this process's workers received again after an earlier delivery (found PREPARING or done already).",
        ),
        help(
            SET_ASIDE,
            Some(Unit::Count),
            "Poison orders this process's workers set aside (CANCELLED by the kitchen) after --max-deliveries deliveries.",
        ),
        help(
            LOST_BY_THE_LINE,
            Some(Unit::Count),
            "Orders the broker confirmed that this server then found in no queue (a RabbitMQ node died with them) and sent again.",
        ),
    ];
    for (name, unit, text) in counters {
        recorder.describe_counter(name, unit, text);
    }
    let histograms = [
        help(
            TICKET_TO_READY,
            Some(Unit::Seconds),
            "Seconds from the ticket to READY, per order, counted by the process that committed READY.",
        ),
        help(
            HTTP_DURATION,
            Some(Unit::Seconds),
            "Seconds from a request to its response's head, by route template and status.",
        ),
        help(
            STORE_COMMIT,
            Some(Unit::Seconds),
            "Seconds one store write cycle took: lock, catch up, append, fsync, unlock.",
        ),
        help(
            STORE_BATCH,
            Some(Unit::Count),
            "Requests decided in one store write cycle (group commit).",
        ),
    ];
    for (name, unit, text) in histograms {
        recorder.describe_histogram(name, unit, text);
    }
}

/// The store committed `orders` (each one record, after its change): counts
/// each status change, and the ticket→ready time of each READY. Called by the
/// committer for its own changes only, never for other processes'.
pub fn committed<'a>(orders: impl IntoIterator<Item = &'a Order>) {
    let m = &*METRICS;
    for order in orders {
        let Some(status) = reached(order) else {
            continue;
        };
        m.changes[status.rank() as usize].increment(1);
        if status == Status::Ready
            && let Some(ready) = order.ready_at
            && let Ok(waited) = ready.0.duration_since(order.taken_at.0)
        {
            m.ticket_to_ready.record(waited.as_secs_f64());
        }
    }
}

/// The status `order` reached in its record, or `None` when the record is
/// not a change of status: the broker's confirm rewrites a TAKEN order with
/// `queued`, and a claim again restates PREPARING with one more delivery.
fn reached(order: &Order) -> Option<Status> {
    let restated = match order.status {
        Status::Taken => order.queued,
        Status::Preparing => order.deliveries > 1,
        _ => false,
    };
    (!restated).then_some(order.status)
}

/// One store write cycle that decided `batch` requests took `took`.
pub fn store_cycle(batch: usize, took: Duration) {
    let m = &*METRICS;
    m.batch.record(batch as f64);
    m.commit.record(took.as_secs_f64());
}

/// An HTTP request to `route` (the router's template, `/orders/{ticket}`,
/// never the raw path) answered `status` after `took`.
pub fn http_request(route: &str, status: u16, took: Duration) {
    let key = Key::from_parts(
        HTTP_DURATION,
        vec![
            Label::new("route", route.to_owned()),
            Label::new("status", status.to_string()),
        ],
    );
    METRICS
        .recorder
        .register_histogram(&key, &METADATA)
        .record(took.as_secs_f64());
}

/// A worker of this process gave an order back to the front of the line.
pub fn given_back() {
    METRICS.given_back.increment(1);
}

/// A worker of this process set a poison order aside.
pub fn set_aside() {
    METRICS.set_aside.increment(1);
}

/// This server found a confirmed order in no queue and sends it again.
pub fn lost_by_the_line() {
    METRICS.lost_by_the_line.increment(1);
}

/// A worker of this process received an order that had been delivered before.
pub fn redelivered() {
    METRICS.redelivered.increment(1);
}

/// What the restaurant looks like now, read when scraped.
#[derive(Debug, Clone, Default)]
pub struct Now {
    /// Orders by status, in the order of [`LIVE`].
    pub orders: [usize; 3],
    /// Orders waiting for a worker; `None` when the queue cannot tell.
    pub queue_depth: Option<usize>,
    /// Screens on `/updates`; `None` for a process without a board.
    pub boards: Option<usize>,
}

impl Now {
    /// Sets the gauges to these figures.
    pub fn set(&self) {
        let m = &*METRICS;
        for (gauge, n) in m.orders.iter().zip(self.orders) {
            gauge.set(n as f64);
        }
        m.queue_depth
            .set(self.queue_depth.map_or(f64::NAN, |n| n as f64));
        m.boards.set(self.boards.unwrap_or(0) as f64);
    }
}

/// Every metric of this process in the Prometheus text format.
pub fn render() -> String {
    METRICS.handle.render()
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::Timestamp;

    #[test]
    fn every_name_is_rendered_with_its_type() {
        Now::default().set();
        let text = render();
        for (name, kind) in [
            (ORDERS, "gauge"),
            (QUEUE_DEPTH, "gauge"),
            (BOARDS, "gauge"),
            (STATUS_CHANGES, "counter"),
            (GIVEN_BACK, "counter"),
            (REDELIVERED, "counter"),
            (SET_ASIDE, "counter"),
            (LOST_BY_THE_LINE, "counter"),
            (TICKET_TO_READY, "histogram"),
            (STORE_COMMIT, "histogram"),
            (STORE_BATCH, "histogram"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} is a {kind} in:\n{text}"
            );
            assert!(text.contains(&format!("# HELP {name} ")), "{name} has help");
        }
    }

    #[test]
    fn a_queued_mark_is_not_a_status_change() {
        let taken = Order::new(1, "x".into(), Timestamp::now());
        let queued = Order {
            queued: true,
            ..taken.clone()
        };
        assert_eq!(reached(&taken), Some(Status::Taken));
        assert_eq!(reached(&queued), None);
        let ready = Order {
            status: Status::Ready,
            ..queued
        };
        assert_eq!(reached(&ready), Some(Status::Ready));
    }

    #[test]
    fn statuses_are_indexed_by_rank() {
        for (i, status) in STATUSES.iter().enumerate() {
            assert_eq!(status.rank() as usize, i);
        }
        for (i, status) in LIVE.iter().enumerate() {
            assert_eq!(status.rank() as usize, i);
        }
    }
}
