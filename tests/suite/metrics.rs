//! `GET /metrics` and `fastfood worker --metrics`, read with a real
//! Prometheus text-format parser (`prom_text_format_parser`, which reads
//! quoted label values such as `route="/orders/{ticket}"` as the format says)
//! and checked against what the test made happen. Every restaurant here is
//! its own process (the real binary), since a process's metrics are the
//! whole process's: in-process apps of other tests would move the figures.

use prom_text_format_parser::{Metric, Sample, Scrape, Type, ValueType};

use crate::support::rabbit::Rabbit;
use crate::support::{
    Api, DEADLINE, ServerProcess, WorkerProcess, expect_error, http_client, place_orders,
    placed_orders, wait_for, wait_until,
};
use fastfood::metrics::{
    BOARDS, GIVEN_BACK, HTTP_DURATION, ORDERS, QUEUE_DEPTH, REDELIVERED, STATUS_CHANGES,
    STORE_BATCH, STORE_COMMIT, TICKET_TO_READY,
};

/// One scrape, parsed.
struct Metrics {
    metrics: Vec<Metric>,
}

/// Whether `sample` has every one of `labels`.
fn labelled(sample: &Sample, labels: &[(&str, &str)]) -> bool {
    labels
        .iter()
        .all(|(k, v)| sample.labels.iter().any(|l| l.key == *k && l.value == *v))
}

fn label<'a>(sample: &'a Sample, key: &str) -> Option<&'a str> {
    sample
        .labels
        .iter()
        .find(|l| l.key == key)
        .map(|l| l.value.as_str())
}

impl Metrics {
    /// `GET url` (a server's `/metrics` or a worker's), checked and parsed.
    async fn scrape(url: &str) -> Metrics {
        let response = http_client()
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(response.status(), 200, "GET {url}");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "the Prometheus text format: {content_type}"
        );
        let text = response.text().await.expect("a body");
        let scrape = Scrape::parse(&text).unwrap_or_else(|e| panic!("{e:?} in:\n{text}"));
        let metrics = Metrics {
            metrics: scrape.metrics,
        };
        for (name, kind) in [
            (ORDERS, Type::Gauge),
            (QUEUE_DEPTH, Type::Gauge),
            (BOARDS, Type::Gauge),
            (STATUS_CHANGES, Type::Counter),
            (GIVEN_BACK, Type::Counter),
            (REDELIVERED, Type::Counter),
            (TICKET_TO_READY, Type::Histogram),
            (STORE_COMMIT, Type::Histogram),
            (STORE_BATCH, Type::Histogram),
        ] {
            let metric = metrics
                .metric(name)
                .unwrap_or_else(|| panic!("no {name} in:\n{text}"));
            assert_eq!(metric.kind, kind, "{name}");
            assert!(metric.help_desc.is_some(), "{name} has a help text");
        }
        metrics
    }

    async fn of(api: &Api) -> Metrics {
        Metrics::scrape(&api.url("/metrics")).await
    }

    fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// The samples of `name` whose labels include `labels`.
    fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> {
        self.metric(name)
            .into_iter()
            .flat_map(|m| &m.samples)
            .filter(move |s| labelled(s, labels))
    }

    /// A counter's or gauge's value; 0 when it has no sample with `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        if let Some(metric) = self.metric(name) {
            assert!(
                matches!(metric.kind, Type::Counter | Type::Gauge),
                "{name} is a counter or a gauge"
            );
        }
        let values: Vec<f64> = self
            .find(name, labels)
            .map(|s| s.value.value.as_f64())
            .collect();
        assert!(values.len() <= 1, "{name} {labels:?} is one series");
        values.first().copied().unwrap_or(0.0)
    }

    /// A histogram's observations over its series with `labels` (their
    /// `_count`, checked against their `+Inf` bucket); 0 when it has none.
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        if let Some(metric) = self.metric(name) {
            assert_eq!(metric.kind, Type::Histogram, "{name}");
        }
        let of = |kind: ValueType| -> f64 {
            self.find(name, labels)
                .filter(|s| s.value.value_type == kind)
                .filter(|s| kind != ValueType::Sample || label(s, "le") == Some("+Inf"))
                .map(|s| s.value.value.as_f64())
                .sum()
        };
        let count = of(ValueType::Count);
        assert_eq!(
            count,
            of(ValueType::Sample),
            "{name}: _count is the +Inf bucket"
        );
        count as u64
    }

    /// A histogram's `_sum` over all its series.
    fn sum(&self, name: &str) -> f64 {
        self.find(name, &[])
            .filter(|s| s.value.value_type == ValueType::Sum)
            .map(|s| s.value.value.as_f64())
            .sum()
    }

    fn changes(&self, status: &str) -> f64 {
        self.value(STATUS_CHANGES, &[("status", status)])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_orders_the_requests_and_the_boards() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(dir.path(), &["--prep-time", "0"]).await;
    let before = Metrics::of(&server).await;
    assert_eq!(before.count(TICKET_TO_READY, &[]), 0);
    assert_eq!(before.value(BOARDS, &[]), 0.0);

    let placed = placed_orders(&[&server.base], 3, 3).await;
    let tickets: Vec<u32> = placed.iter().map(|p| p.ticket).collect();
    server.wait_all_ready(&tickets).await;
    let ready = Metrics::of(&server).await;
    assert_eq!(ready.value(ORDERS, &[("status", "READY")]), 3.0);
    assert_eq!(ready.value(ORDERS, &[("status", "TAKEN")]), 0.0);
    assert_eq!(ready.value(QUEUE_DEPTH, &[]), 0.0);
    for order in &placed {
        assert_eq!(server.take(order.ticket, &order.code).await.status(), 200);
    }
    assert_eq!(server.get_order(tickets[0]).await.status(), 200);

    let after = Metrics::of(&server).await;
    assert_eq!(
        after.count(TICKET_TO_READY, &[]) - before.count(TICKET_TO_READY, &[]),
        3,
        "three orders became READY"
    );
    assert_eq!(
        after.count(HTTP_DURATION, &[("route", "/order"), ("status", "201")]),
        3
    );
    assert_eq!(
        after.count(HTTP_DURATION, &[("route", "/take"), ("status", "200")]),
        3
    );
    assert_eq!(
        after.count(
            HTTP_DURATION,
            &[("route", "/orders/{ticket}"), ("status", "200")]
        ),
        1,
        "by the route's template"
    );
    assert!(
        after
            .find(HTTP_DURATION, &[])
            .all(|s| !label(s, "route").unwrap().contains(&tickets[0].to_string())),
        "a raw path is never a label"
    );
    for status in ["TAKEN", "PREPARING", "READY", "COLLECTED"] {
        assert_eq!(after.changes(status), 3.0, "{status}");
    }
    assert_eq!(after.changes("CANCELLED"), 0.0);
    for status in ["TAKEN", "PREPARING", "READY"] {
        assert_eq!(after.value(ORDERS, &[("status", status)]), 0.0, "{status}");
    }
    // Every request the store decided, in some batch: 3 orders recorded,
    // claimed, made READY and collected.
    assert_eq!(after.sum(STORE_BATCH), 12.0);
    let cycles = after.count(STORE_COMMIT, &[]);
    assert!((1..=12).contains(&cycles), "{cycles} write cycles");
    assert_eq!(
        after.count(STORE_BATCH, &[]),
        cycles,
        "one of each per cycle"
    );
    assert_eq!(after.value(GIVEN_BACK, &[]), 0.0);
    assert_eq!(after.value(REDELIVERED, &[]), 0.0);

    let board = server.updates().await;
    wait_until(DEADLINE, "the board is counted", || async {
        Metrics::of(&server).await.value(BOARDS, &[]) == 1.0
    })
    .await;
    drop(board);
    wait_until(DEADLINE, "the board that left is not counted", || async {
        Metrics::of(&server).await.value(BOARDS, &[]) == 0.0
    })
    .await;
}

/// The address a worker started with `--metrics 127.0.0.1:0` serves on, from
/// its log.
async fn metrics_url(worker: &WorkerProcess) -> String {
    wait_for(
        DEADLINE,
        "the worker says where its metrics are",
        || async {
            let log = worker.stderr();
            let at = log.find("metrics on http://")? + "metrics on ".len();
            let url = log[at..].split_whitespace().next()?;
            Some(url.to_owned())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_order_is_counted_by_the_process_that_sees_it() {
    let Some(rabbit) = Rabbit::vhost("metrics").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = ["--broker", rabbit.url.as_str()];
    let server =
        ServerProcess::spawn(dir.path(), &[&["--workers", "0"][..], &broker].concat()).await;
    let tickets = place_orders(&[&server.base], 2, 1).await;
    wait_until(DEADLINE, "both orders wait in RabbitMQ", || async {
        Metrics::of(&server).await.value(QUEUE_DEPTH, &[]) == 2.0
    })
    .await;

    let metrics = ["--metrics", "127.0.0.1:0"];
    let mut slow = WorkerProcess::spawn(
        dir.path(),
        &rabbit.url,
        &["--prep-time", "60s", metrics[0], metrics[1]],
        &[],
    )
    .await;
    let slow_url = metrics_url(&slow).await;
    wait_until(
        DEADLINE,
        "the slow worker prepares the first order",
        || async {
            server
                .board()
                .await
                .statuses()
                .get(&tickets[0])
                .map(String::as_str)
                == Some("PREPARING")
        },
    )
    .await;
    let slow_metrics = Metrics::scrape(&slow_url).await;
    assert_eq!(
        slow_metrics.changes("PREPARING"),
        1.0,
        "the worker's --metrics answers"
    );
    assert_eq!(slow_metrics.value(ORDERS, &[("status", "PREPARING")]), 1.0);
    // Anything else on that port answers as docs/api.md says: 405 for
    // another method on /metrics, 404 for another path.
    let client = http_client();
    let posted = client.post(&slow_url).send().await.unwrap();
    expect_error(posted, 405, "method_not_allowed").await;
    let elsewhere = slow_url.replace("/metrics", "/orders");
    expect_error(
        client.get(&elsewhere).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    slow.kill9().await;

    let quick = WorkerProcess::spawn(
        dir.path(),
        &rabbit.url,
        &["--prep-time", "0", metrics[0], metrics[1]],
        &[],
    )
    .await;
    let quick_url = metrics_url(&quick).await;
    server.wait_all_ready(&tickets).await;
    let quick_metrics = wait_for(DEADLINE, "the quick worker counted both orders", || async {
        let m = Metrics::scrape(&quick_url).await;
        (m.count(TICKET_TO_READY, &[]) == 2).then_some(m)
    })
    .await;
    assert_eq!(
        quick_metrics.value(REDELIVERED, &[]),
        1.0,
        "the order the killed worker held came again, found PREPARING"
    );
    assert_eq!(quick_metrics.changes("READY"), 2.0);
    assert_eq!(
        quick_metrics.changes("PREPARING"),
        1.0,
        "the redelivered order was already PREPARING"
    );
    assert_eq!(
        quick_metrics.value(GIVEN_BACK, &[]),
        0.0,
        "nobody gave one back"
    );

    // Counted once across the processes: the server committed no READY.
    let server_metrics = Metrics::of(&server).await;
    assert_eq!(server_metrics.count(TICKET_TO_READY, &[]), 0);
    assert_eq!(server_metrics.changes("READY"), 0.0);
    assert_eq!(server_metrics.changes("TAKEN"), 2.0);
    assert_eq!(server_metrics.value(ORDERS, &[("status", "READY")]), 2.0);
    assert_eq!(server_metrics.value(QUEUE_DEPTH, &[]), 0.0);
    assert_eq!(server_metrics.value(REDELIVERED, &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_that_drop_orders_count_give_backs_and_the_next_redeliveries() {
    let dir = tempfile::tempdir().unwrap();
    // At the highest fail rate (0.9) nearly every attempt is dropped: with
    // five orders, no give-back at all has odds of 1 in 100,000. Every
    // delivery counts toward --max-deliveries, give-backs too: at the
    // highest limit, an order dropped 100 times in a row (and set aside)
    // has odds of 1 in 7,000 among the five.
    let server = ServerProcess::spawn(
        dir.path(),
        &[
            "--prep-time",
            "0",
            "--fail-rate",
            "0.9",
            "--max-deliveries",
            "100",
        ],
    )
    .await;
    let mut tickets = Vec::new();
    for i in 0..5 {
        tickets.push(server.place(&format!("burger {i}")).await);
    }
    server.wait_all_ready(&tickets).await;
    let m = Metrics::of(&server).await;
    let given_back = m.value(GIVEN_BACK, &[]);
    assert!(given_back >= 1.0, "no order was given back");
    // Each given-back order came round again and was recognised as such.
    assert_eq!(m.value(REDELIVERED, &[]), given_back);
    assert_eq!(
        m.changes("PREPARING"),
        5.0,
        "each claimed once, found PREPARING when it came round again"
    );
    assert_eq!(m.changes("READY"), 5.0);
    assert_eq!(m.count(TICKET_TO_READY, &[]), 5);
}
