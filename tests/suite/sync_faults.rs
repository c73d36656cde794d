//! Slow and failing fsyncs under a running restaurant, injected into the
//! real binary (`support::faults`): what the store answers before a batch
//! is durable, and what `/order` answers when a write or an fsync of the
//! counter fails, must never lose an order or cook one its customer was
//! told was refused.

use std::time::Duration;

use serde_json::Value;

use crate::support::faults::{EIO, SyncFaults};
use crate::support::{DEADLINE, ServerProcess, expect_error, wait_until};

/// An order's status on the board's answer to `GET /orders/N` (`None`: not
/// live, or not found).
async fn status(server: &ServerProcess, ticket: u32) -> Option<String> {
    let response = server.get_order(ticket).await;
    if response.status() != 200 {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    body["status"].as_str().map(str::to_owned)
}

/// A worker's claim decided on top of a cancel still being written finds the
/// order CANCELLED; if that write then fails, the cancel never happened, so
/// the worker must not have let go of the order meanwhile: the order is
/// still cooked, not left TAKEN with no queue holding it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_finds_a_cancel_in_flight_waits_for_it_and_a_failed_cancel_loses_nothing() {
    let Some(mut faults) = SyncFaults::new("a_claim_that_finds_a_cancel_in_flight") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = faults.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server =
        ServerProcess::spawn_with_env(dir.path(), &["--workers", "1", "--prep-time", "2s"], &env)
            .await;
    let cooking = server.place_coded("cooking").await;
    wait_until(DEADLINE, "the first order to be claimed", || async {
        status(&server, cooking.ticket).await.as_deref() == Some("PREPARING")
    })
    .await;
    let waiting = server.place_coded("waiting").await;

    // The next order's fsync is slow (the pipeline is held): the cancel
    // that comes meanwhile waits for it, and so do the cooked order's READY
    // and the claim of the waiting order, which the worker sends as soon as
    // the first order is cooked. Then the cancel is written and its fsync
    // fails, a moment later: the claim is decided on top of it.
    faults.arm("orders.log", 2500, 0);
    faults.arm("orders.log", 400, EIO);
    let slow = {
        let api = crate::support::Api::at(server.base.clone());
        tokio::spawn(async move { api.order("slow".to_owned()).await.status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancel = server.cancel(waiting.ticket, &waiting.code).await;
    expect_error(cancel, 503, "store_unavailable").await;
    assert_eq!(faults.used(), 2, "both faults were met");
    assert_eq!(slow.await.unwrap(), 201, "the slow order was only slow");

    // The cancel did not happen: the order is still the customer's, and the
    // kitchen cooks it.
    wait_until(
        Duration::from_secs(30),
        "the waiting order to be cooked",
        || async { status(&server, waiting.ticket).await.as_deref() == Some("READY") },
    )
    .await;
    let log = server.stderr();
    assert!(
        !log.contains(&format!(
            "order {} was cancelled while waiting",
            waiting.ticket
        )),
        "no worker skipped it as cancelled:\n{log}"
    );
}
