//! RabbitMQ stopped and started again under a running restaurant
//! (`rabbitmqctl stop_app` / `start_app`). A test binary of its own, because
//! it stops the broker for everyone and `cargo test` runs test binaries one
//! at a time. Skips without a broker unless `FASTFOOD_REQUIRE_BROKER=1`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use support::rabbit::{Rabbit, WorkerProcess, rabbitmqctl};
use support::{DEADLINE, ServerProcess, expect_error, http_client, place_orders, wait_until};

/// Starts the broker again even if the test fails while it is stopped.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "start_app"])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_no_confirmed_order_and_everything_reconnects() {
    let Some(rabbit) = Rabbit::vhost("outage").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::spawn(dir.path(), &["--workers", "0", "--broker", &rabbit.url]).await;
    let _cook = WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "20ms"], &[]).await;
    let before = place_orders(std::slice::from_ref(&server.base), 10, 2).await;
    server.wait_all_ready(&before).await;

    // Customers keep ordering all through the outage.
    let stop = Arc::new(AtomicBool::new(false));
    let customers = tokio::spawn({
        let (stop, url, client) = (stop.clone(), server.url("/order"), http_client());
        async move {
            let mut confirmed = Vec::new();
            for i in 0..5000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let response = client
                    .post(&url)
                    .body(format!("order {i}"))
                    .send()
                    .await
                    .expect("the server answers");
                match response.status().as_u16() {
                    201 => confirmed.push(
                        response.json::<serde_json::Value>().await.unwrap()["order"]
                            .as_u64()
                            .unwrap() as u32,
                    ),
                    503 => {}
                    other => panic!("POST /order answered {other} during an outage"),
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            confirmed
        }
    });

    let _restart = Restart;
    rabbitmqctl(&["stop_app"]).await.expect("stop_app");
    wait_until(DEADLINE, "/order to answer 503", || async {
        server
            .client
            .post(server.url("/order"))
            .body("x")
            .send()
            .await
            .unwrap()
            .status()
            == 503
    })
    .await;
    let refused = server
        .client
        .post(server.url("/order"))
        .body("x")
        .send()
        .await
        .unwrap();
    expect_error(refused, 503, "queue_unavailable").await;
    // The board stays up, and customers can still collect.
    let statuses = server.board().await.statuses();
    assert!(
        before.iter().all(|t| statuses[t] == "READY"),
        "the board stays up: {statuses:?}"
    );
    let collected = server
        .client
        .post(server.url(&format!("/take?order={}", before[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(collected.status(), 200, "/take works without the broker");

    rabbitmqctl(&["start_app"]).await.expect("start_app");
    rabbitmqctl(&["await_startup"])
        .await
        .expect("await_startup");
    wait_until(DEADLINE, "orders to be accepted again", || async {
        server
            .client
            .post(server.url("/order"))
            .body("after")
            .send()
            .await
            .unwrap()
            .status()
            == 201
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let confirmed = customers.await.unwrap();

    // Every order that got a 201 is prepared: none was lost with the broker.
    wait_until(DEADLINE, "every confirmed order to be READY", || async {
        let statuses = server.board().await.statuses();
        confirmed
            .iter()
            .chain(&before[1..])
            .all(|t| statuses.get(t).map(String::as_str) == Some("READY"))
    })
    .await;
    rabbit.wait_drained("orders").await;
    let statuses = server.board().await.statuses();
    assert!(
        statuses.values().all(|s| s == "READY"),
        "nothing is stuck TAKEN or PREPARING: {statuses:?}"
    );
}
