//! `fastfood rush` as a manager runs it, through the real binary against a
//! real restaurant ([`TestApp`]): a kitchen slower than the arrivals must be
//! reported as such (every unserved customer named and counted in the
//! percentiles, the line seen growing, the workers that would have kept up),
//! and what a rush does not watch is "not measured", never 0.

use serde_json::Value;

use crate::support::TestApp;
use crate::support::process::fastfood;

/// `fastfood rush --target URL ARGS`, to the end: its stdout.
async fn rush(url: &str, args: &[&str]) -> String {
    let output = fastfood(
        ["rush", "--target", url, "--no-chart"].iter().chain(args),
        &[],
    )
    .output()
    .await
    .expect("run fastfood rush");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    stdout
}

/// One worker, 2 s per order: 0.5 orders a second, against 20 arriving a
/// second for 3 s; the rush waits 1 s more, then ends with most unserved.
const OVERLOADED: &[&str] = &[
    "--rate",
    "20",
    "--duration",
    "3s",
    "--drain",
    "1s",
    "--workers",
    "1",
];

#[tokio::test]
async fn an_overloaded_kitchen_is_reported_with_every_unserved_customer() {
    let app = TestApp::spawn(&["--workers", "1", "--prep-time", "2s"]).await;
    let json: Value =
        serde_json::from_str(&rush(&app.base, &[OVERLOADED, &["--json"]].concat()).await)
            .expect("--json prints JSON");
    let count = |key: &str| {
        json[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} is a count: {json:#}"))
    };
    let (arrived, ready, unserved) = (count("arrived"), count("ready"), count("unserved"));
    assert!(arrived >= 50, "{json:#}");
    // At most one order every 2 s in 4 s (and a few ms).
    assert!(ready <= 3, "{json:#}");
    assert_eq!(
        ready + unserved + count("refused") + count("turned_away"),
        arrived,
        "every customer is served, unserved, refused or turned away: {json:#}"
    );
    assert!(unserved >= arrived - 3 - count("refused"), "{json:#}");
    // The percentiles count every customer in line, the unserved with the
    // time they had waited (customers came for 3 s, the rush ended at ~4 s).
    let wait = &json["wait"];
    assert_eq!(wait["count"].as_u64(), Some(ready + unserved), "{json:#}");
    assert!(wait["p50_ms"].as_f64().unwrap() >= 1000.0, "{json:#}");
    assert!(wait["max_ms"].as_f64().unwrap() >= 3000.0, "{json:#}");
    assert!(
        json["longest_wait_ms"].as_f64().unwrap() >= 3000.0,
        "{json:#}"
    );
    assert_eq!(json["longest_wait_served"], false, "{json:#}");
    // What it means for the manager: the line grew from nothing, and the
    // two or so orders READY are too few to tell the kitchen's pace.
    assert_eq!(json["line_grew"], true, "{json:#}");
    assert!(json["waiting_at_start"].as_u64().unwrap() <= 3, "{json:#}");
    for key in [
        "capacity_per_s",
        "capacity_is_lower_bound",
        "per_worker_per_s",
        "workers_needed",
    ] {
        assert!(json[key].is_null(), "{key}: too few to tell: {json:#}");
    }
    // --duration 3s is 3 s of arrivals, and the rate is counted over them.
    assert_eq!(json["arrivals_s"].as_f64(), Some(3.0), "{json:#}");
    assert!(json["stopped_early"].is_null(), "{json:#}");

    // A fresh restaurant: this one's kitchen has the first rush's orders to cook.
    let app = TestApp::spawn(&["--workers", "1", "--prep-time", "2s"]).await;
    let text = rush(&app.base, OVERLOADED).await;
    let still = text
        .lines()
        .find(|l| l.contains("customers were still waiting when the rush ended"))
        .unwrap_or_else(|| panic!("the summary names the unserved:\n{text}"));
    assert!(still.contains(" of "), "{text}");
    for words in [
        "* counting the ",
        "customers never served with the time they had waited",
        "and still waiting when the rush ended",
        "did not keep up",
        "for 3.00 s",
        "kitchen capacity not measured: too few orders to tell",
        "at least half the customers waited",
    ] {
        assert!(text.contains(words), "{words:?} in\n{text}");
    }
    assert!(
        !text.contains("half the customers had their food within"),
        "{text}"
    );
    assert!(!text.contains("would have kept up with"), "{text}");
}

#[tokio::test]
async fn a_kitchen_measured_over_enough_orders_tells_the_workers_needed() {
    // One worker at 100 ms an order (at most 10 a second) against 40
    // arriving a second: some 35 READY in 4 s.
    let app = TestApp::spawn(&["--workers", "1", "--prep-time", "100ms"]).await;
    let args = [
        "--rate",
        "40",
        "--duration",
        "3s",
        "--drain",
        "1s",
        "--workers",
        "1",
        "--json",
    ];
    let json: Value =
        serde_json::from_str(&rush(&app.base, &args).await).expect("--json prints JSON");
    assert!(json["busy_ready"].as_u64().unwrap() >= 10, "{json:#}");
    let capacity = json["capacity_per_s"].as_f64().unwrap();
    assert!(
        (5.0..=10.5).contains(&capacity),
        "one worker at 100 ms: {json:#}"
    );
    // 40 a second at about 10 each: 4, or a few more on a busy machine.
    let needed = json["workers_needed"].as_u64().unwrap();
    assert!((4..=8).contains(&needed), "{json:#}");
    let expected = (json["arrivals_per_s"].as_f64().unwrap() / capacity).ceil() as u64;
    assert_eq!(needed, expected, "{json:#}");
    assert_eq!(json["arrivals_s"].as_f64(), Some(3.0), "{json:#}");
}

#[tokio::test]
async fn a_rush_that_does_not_watch_the_board_says_not_measured() {
    let app = TestApp::spawn(&["--workers", "1", "--prep-time", "0"]).await;
    let args = [
        "--rate",
        "50",
        "--duration",
        "1s",
        "--no-collect",
        "--no-board",
    ];
    let text = rush(&app.base, &args).await;
    for words in [
        "food ready not measured: --no-board",
        "ready not measured: --no-board",
        "busiest moment   not measured: --no-board",
        "longest wait     not measured: --no-board",
    ] {
        assert!(text.contains(words), "{words:?} in\n{text}");
    }
    for zero in ["0 food ready", "0.0 orders/s ready", "busiest moment   0"] {
        assert!(!text.contains(zero), "{zero:?} in\n{text}");
    }
    let json: Value =
        serde_json::from_str(&rush(&app.base, &[&args[..], &["--json"]].concat()).await)
            .expect("--json prints JSON");
    for key in [
        "ready",
        "unserved",
        "collected",
        "ready_per_s",
        "wait",
        "capacity_per_s",
        "longest_wait_ms",
        "peak_waiting",
    ] {
        assert!(json[key].is_null(), "{key} is null, not 0: {json:#}");
    }
    assert!(json["ordered"].as_u64().unwrap() >= 40, "{json:#}");
    assert!(
        json["not_measured"][0]
            .as_str()
            .is_some_and(|why| why.contains("--no-board")),
        "{json:#}"
    );
}
