//! The pickup-code throttle through the real server, with clients on two
//! loopback addresses (127.0.0.1, the owner, and 127.0.0.2, a stranger):
//! a stranger's wrong codes close an order to the stranger, not to its owner,
//! and one address cannot try codes on every order.

use std::net::IpAddr;

use crate::support::{Api, TestApp, expect_error, header};

/// The server at `base`, as a client on `ip`.
fn from(base: &str, ip: [u8; 4]) -> Api {
    let mut api = Api::at(base.to_owned());
    api.client = reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::from(ip))
        .build()
        .expect("an HTTP client");
    api
}

#[tokio::test]
async fn a_stranger_neither_locks_out_the_owner_nor_tries_every_order() {
    let app = TestApp::spawn(&["--prep-time", "0"]).await;
    let mut placed = Vec::new();
    for i in 1..=5 {
        placed.push(app.place_coded(&format!("menu {i}")).await);
    }
    let tickets: Vec<u32> = placed.iter().map(|p| p.ticket).collect();
    app.wait_all_ready(&tickets).await;
    let stranger = from(&app.base, [127, 0, 0, 2]);
    let owner = from(&app.base, [127, 0, 0, 1]);
    let wrong = |code: &str| {
        let n: u32 = code.parse().unwrap();
        format!("{:06}", (n + 1) % 1_000_000)
    };

    // Five wrong codes on order 1: closed to the stranger, with Retry-After.
    let first = &placed[0];
    for _ in 0..5 {
        let answer = stranger.take(first.ticket, &wrong(&first.code)).await;
        expect_error(answer, 403, "wrong_code").await;
    }
    let closed = stranger.take(first.ticket, &first.code).await;
    assert!(header(&closed, "retry-after").parse::<u64>().unwrap() >= 1);
    expect_error(closed, 429, "too_many_attempts").await;
    // Its owner, elsewhere, collects it with the right code.
    let collected = owner.take(first.ticket, &first.code).await;
    assert_eq!(collected.status(), 200, "the owner is not locked out");

    // Fifteen more wrong codes, spread so no order gets five: the
    // stranger's twenty per minute are spent, on any order.
    for (i, p) in placed[1..].iter().enumerate() {
        let tries = if i < 3 { 4 } else { 3 };
        for _ in 0..tries {
            let answer = stranger.take(p.ticket, &wrong(&p.code)).await;
            expect_error(answer, 403, "wrong_code").await;
        }
    }
    let last = &placed[4];
    expect_error(
        stranger.take(last.ticket, &wrong(&last.code)).await,
        429,
        "too_many_attempts",
    )
    .await;
    // Everyone else is untouched: the owner collects every other order.
    for p in &placed[1..] {
        let collected = owner.take(p.ticket, &p.code).await;
        assert_eq!(collected.status(), 200, "order {}", p.ticket);
    }
    app.shutdown().await;
}
