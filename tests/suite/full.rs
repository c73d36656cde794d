//! A restaurant that can be full: past `--max-orders` orders in the
//! restaurant, `/order` answers `503 restaurant_full` with `Retry-After`,
//! and takes orders again once one leaves; two servers sharing one store
//! hold the bound together.

use crate::support::rabbit::Rabbit;
use crate::support::{ServerProcess, TestApp, expect_error, header, http_client};

#[tokio::test]
async fn past_max_orders_an_order_is_refused_until_one_leaves() {
    let app = TestApp::spawn(&["--max-orders", "3", "--prep-time", "1h"]).await;
    let mut placed = Vec::new();
    for i in 0..3 {
        placed.push(app.place_coded(&format!("burger {i}")).await);
    }
    let refused = app.order("one burger too many").await;
    assert_eq!(header(&refused, "retry-after"), "10");
    let body = expect_error(refused, 503, "restaurant_full").await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("holds 3 orders"), "{message}");
    // The refusal cost no ticket: the next order gets the next number.
    let board = app.board().await;
    assert_eq!(board.statuses().len(), 3, "no ghost on the board");

    // The two workers hold orders 1 and 2; order 3 waits, and is cancelled.
    let last = &placed[2];
    let cancelled = app.cancel(last.ticket, &last.code).await;
    assert_eq!(cancelled.status(), 200);
    let next = app.place_coded("now there is room").await;
    assert_eq!(next.ticket, 4, "tickets stay consecutive");
    expect_error(app.order("and full again").await, 503, "restaurant_full").await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_sharing_a_store_hold_the_bound_together() {
    let Some(rabbit) = Rabbit::vhost("max-orders").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--workers",
        "0",
        "--broker",
        &rabbit.url,
        "--max-orders",
        "10",
    ];
    let servers = [
        ServerProcess::spawn(dir.path(), &args).await,
        ServerProcess::spawn(dir.path(), &args).await,
    ];
    // Forty orders at once, twenty to each server, nobody cooking.
    let client = http_client();
    let tries = (0..40).map(|i| {
        let url = format!("{}/order", servers[i % 2].base);
        let client = client.clone();
        async move {
            let response = client.post(url).body(format!("fries {i}")).send().await;
            response.expect("an answer")
        }
    });
    let answers = futures_util::future::join_all(tries).await;
    let mut taken = 0;
    for answer in answers {
        match answer.status().as_u16() {
            201 => taken += 1,
            _ => {
                expect_error(answer, 503, "restaurant_full").await;
            }
        }
    }
    assert_eq!(taken, 10, "exactly --max-orders taken across both servers");
    for server in &servers {
        let board: serde_json::Value = client
            .get(format!("{}/orders", server.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let live = board["orders"].as_array().unwrap().len();
        assert!(live <= 10, "{live} orders on a board of a full restaurant");
    }
}
