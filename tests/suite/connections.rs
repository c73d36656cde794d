//! The limits a public server keeps on its connections, with real sockets:
//! caps on open connections (in all and per client address), and timeouts
//! on a request's headers, its body and an idle connection, while the
//! boards' long-lived streams keep working.
//!
//! The attackers connect from other loopback addresses (127.0.0.2, …) than
//! the tests' own client (127.0.0.1), so each has an address of its own.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{DEADLINE, TestApp};

fn server_addr(app: &TestApp) -> SocketAddr {
    app.base.strip_prefix("http://").unwrap().parse().unwrap()
}

/// A TCP connection to `to` from the loopback address `127.0.0.<from>`.
async fn connect_from(from: u8, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, from)),
            0,
        ))
        .unwrap();
    socket.connect(to).await.expect("connect")
}

/// Whether the server closes `stream` within `within`: it reads an end (or a
/// reset), having read and dropped whatever came before.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// Sends a `GET /healthz` on `stream` and reads the answer's status line.
async fn healthz_on(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(DEADLINE, async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before answering");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("an answer to /healthz");
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_a_clients_cap_are_closed_and_others_are_still_served() {
    let app = TestApp::spawn(&[
        "--max-connections-per-client",
        "4",
        "--max-connections",
        "7",
    ])
    .await;
    let addr = server_addr(&app);

    // One client holds 10 idle connections: the 4 first stay open, the
    // rest are closed at once.
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(connect_from(2, addr).await);
    }
    let mut open = 0;
    for stream in &mut held {
        if !closed_within(stream, Duration::from_millis(500)).await {
            open += 1;
        }
    }
    assert_eq!(open, 4, "open connections of one client past its cap of 4");

    // Another client is served all the same, on a new connection.
    let mut other = connect_from(3, addr).await;
    assert_eq!(healthz_on(&mut other).await, "HTTP/1.1 200 OK");
    let mut third = connect_from(4, addr).await;
    assert_eq!(healthz_on(&mut third).await, "HTTP/1.1 200 OK");

    // 4 + 1 + 1 + the test's own client = 7, the cap in all: one more is
    // closed, whoever it comes from.
    let mut over = connect_from(5, addr).await;
    assert!(
        closed_within(&mut over, Duration::from_secs(2)).await,
        "a connection past --max-connections was kept open"
    );

    // The attacker lets go: there is room again, once the server has seen
    // its connections close.
    held.clear();
    crate::support::wait_until(DEADLINE, "a new client is served again", || async {
        let mut again = connect_from(5, addr).await;
        again
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .is_ok()
            && matches!(
                tokio::time::timeout(Duration::from_secs(2), again.read(&mut [0u8; 64])).await,
                Ok(Ok(n)) if n > 0
            )
    })
    .await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_headers_trickle_in_is_closed_after_the_header_timeout() {
    let app = TestApp::spawn(&["--header-timeout", "1s", "--idle-timeout", "30s"]).await;
    let addr = server_addr(&app);

    // Half a request line, then nothing.
    let mut half = connect_from(2, addr).await;
    half.write_all(b"GET /heal").await.unwrap();
    let start = Instant::now();
    assert!(closed_within(&mut half, Duration::from_secs(10)).await);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "closed after {took:?}, not about 1 s"
    );

    // One byte every 200 ms: the timeout counts from the first byte, so
    // trickling does not keep the connection.
    let mut trickle = connect_from(3, addr).await;
    let start = Instant::now();
    let mut closed = false;
    for byte in b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    {
        if trickle.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        if closed_within(&mut trickle, Duration::from_millis(200)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickling request was kept open");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        start.elapsed()
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_body_timeout_is_cut() {
    let app = TestApp::spawn(&["--body-timeout", "1s"]).await;
    let addr = server_addr(&app);
    let mut slow = connect_from(2, addr).await;
    slow.write_all(b"POST /order HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nburger")
        .await
        .unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer))
        .await
        .expect("the connection was not closed")
        .ok();
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "a slow body is answered 408: {text}"
    );
    assert!(text.contains("\"error\":\"body_timeout\""), "{text}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "cut after {took:?}, not about 1 s"
    );
    // Nothing was ordered.
    assert!(app.board().await.orders.is_empty());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_a_board_stream_is_not() {
    let app = TestApp::spawn(&[
        "--idle-timeout",
        "1s",
        "--header-timeout",
        "1s",
        "--prep-time",
        "0",
    ])
    .await;
    let addr = server_addr(&app);
    let mut board = app.updates().await;
    board.next_event().await;

    // A kept-alive connection with nothing more to ask is closed.
    let mut idle = connect_from(2, addr).await;
    assert_eq!(healthz_on(&mut idle).await, "HTTP/1.1 200 OK");
    let start = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(10)).await);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        start.elapsed()
    );

    // A board that only listens outlives both timeouts and sees every change.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ticket = app.place("fries").await;
    let mut seen = Vec::new();
    while !seen.contains(&"READY".to_owned()) {
        let event = board.next_event().await;
        if let Some((t, status)) = event.change()
            && t == ticket
        {
            seen.push(status);
        }
    }
    assert_eq!(seen.first().map(String::as_str), Some("TAKEN"), "{seen:?}");
    app.shutdown().await;
}
