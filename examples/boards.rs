//! N lobby boards on one restaurant: does every board get every change, how
//! soon, and what does it cost the server? (`bench/run.sh` uses it.)
//!
//! `cargo run --release --example boards -- --target http://127.0.0.1:7777 --boards 1000`
//!
//! It connects --boards `/updates` streams, then places --rate orders per
//! second for --duration and collects each as soon as it is READY (so the
//! board stays small and every order makes four changes). With --live N,
//! N orders are placed first and never collected (READY at --prep-time 0),
//! so every board holds N orders: a change still costs one order's bytes,
//! and only the first event (the whole board) grows with N. Each board counts
//! the changes it got and checks that none was skipped (versions one by one,
//! no full board after the first). Every --sample-th board also parses each
//! event and measures publish → receive: its arrival time minus the time the
//! change was stamped (`taken_at`, `preparing_at`, `ready_at`; stamped just
//! before the store's fsync, in whole milliseconds, so the figure includes
//! the fsync and may read up to 1 ms high). Raise `ulimit -n` first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use clap::Parser;
use fastfood::order::{Status, Timestamp};
use fastfood::rush::Latency;
use fastfood::rush::sse;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;

#[derive(Parser)]
#[command(
    name = "boards",
    about = "Connect many lobby boards and measure how every change reaches them."
)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:7777")]
    target: String,
    #[arg(long, default_value_t = 1000)]
    boards: usize,
    /// Orders per second (each makes four changes: TAKEN, PREPARING, READY, COLLECTED).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Measure latency on every SAMPLE-th board (1: all).
    #[arg(long, default_value_t = 10)]
    sample: usize,
    /// Orders placed before the boards connect and never collected: the
    /// restaurant every board holds (at most the server's --max-orders).
    #[arg(long, default_value_t = 0)]
    live: usize,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 256)]
    connect_burst: usize,
}

/// A change event: the changed order as it is now (once collected, only
/// its number and status).
#[derive(Deserialize)]
struct Event {
    version: u64,
    change: Option<Change>,
}

#[derive(Deserialize)]
struct Change {
    status: Status,
    taken_at: Option<Timestamp>,
    preparing_at: Option<Timestamp>,
    ready_at: Option<Timestamp>,
}

#[derive(Default)]
struct Tally {
    /// Change events after the first board.
    changes: u64,
    /// Versions skipped, and full boards after the first (fell behind).
    skipped: u64,
    resyncs: u64,
    first_version: u64,
    last_version: u64,
    ended: bool,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let base = args.target.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(0)
        .build()?;
    let tallies: Vec<Arc<Mutex<Tally>>> = (0..args.boards).map(|_| Arc::default()).collect();
    let latency = Arc::new(Mutex::new(histogram()));
    let connected = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let burst = Arc::new(Semaphore::new(args.connect_burst));

    // The standing orders, placed before any board connects.
    for _ in 0..args.live {
        let response = client
            .post(format!("{base}/order"))
            .body("a standing order, never collected")
            .send()
            .await?;
        if response.status() != reqwest::StatusCode::CREATED {
            bail!("/order answered {} for a standing order", response.status());
        }
    }

    let started = Instant::now();
    let mut boards = Vec::new();
    for (i, tally) in tallies.iter().enumerate() {
        let (client, url, tally, latency, connected, stop, burst) = (
            client.clone(),
            format!("{base}/updates"),
            tally.clone(),
            latency.clone(),
            connected.clone(),
            stop.clone(),
            burst.clone(),
        );
        let sampled = i % args.sample.max(1) == 0;
        boards.push(tokio::spawn(async move {
            let mut permit = Some(burst.acquire_owned().await.expect("open semaphore"));
            let response = client
                .get(&url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .with_context(|| format!("board {i}"))?;
            let mut events = Box::pin(sse::events(response.bytes_stream(), 64 << 20));
            let mut first = true;
            let mut h = histogram();
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => break,
                    event = events.next() => event,
                };
                let event = match event {
                    Some(Ok(event)) => event,
                    None | Some(Err(sse::Error::Transport(_))) => {
                        tally.lock().unwrap().ended = true;
                        break;
                    }
                    Some(Err(e)) => return Err(e).with_context(|| format!("board {i}")),
                };
                let now = SystemTime::now();
                let data = event.data.as_bytes();
                let mut t = tally.lock().unwrap();
                let version = version_of(data);
                if first {
                    first = false;
                    t.first_version = version;
                    t.last_version = version;
                    connected.fetch_add(1, Ordering::Relaxed);
                    // Connected: let the next board connect.
                    permit = None;
                    continue;
                }
                if data_is_full_board(data) {
                    t.resyncs += 1;
                } else {
                    t.changes += 1;
                    t.skipped += version.saturating_sub(t.last_version + 1);
                }
                t.last_version = t.last_version.max(version);
                drop(t);
                if sampled && let Ok(event) = serde_json::from_slice::<Event>(data) {
                    let stamped = event.change.and_then(|c| match c.status {
                        Status::Taken => c.taken_at,
                        Status::Preparing => c.preparing_at,
                        Status::Ready => c.ready_at,
                        _ => None,
                    });
                    if let Some(at) = stamped {
                        let us = now.duration_since(at.0).unwrap_or_default().as_micros() as u64;
                        h.saturating_record(us.max(1));
                    }
                    let _ = event.version;
                }
            }
            drop(permit);
            latency.lock().unwrap().add(h)?;
            anyhow::Ok(())
        }));
    }
    // Every board has its first event before any order is placed.
    while (connected.load(Ordering::Relaxed) as usize) < args.boards {
        if started.elapsed() > Duration::from_secs(120) {
            bail!(
                "only {} of {} boards connected within 120 s",
                connected.load(Ordering::Relaxed),
                args.boards
            );
        }
        if let Some(done) = boards.iter().position(|b| b.is_finished()) {
            let failed = boards.swap_remove(done).await?;
            failed?;
            bail!("a board ended before the rush");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_time = started.elapsed();

    // The driver: orders at --rate, each collected as soon as it is READY.
    let driver = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let placed = Arc::new(AtomicU64::new(0));
    let collected = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut customers = Vec::new();
    let mut n = 0u64;
    loop {
        let due = start + Duration::from_secs_f64(n as f64 / args.rate);
        if due >= start + args.duration {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let (driver, base, placed, collected) = (
            driver.clone(),
            base.clone(),
            placed.clone(),
            collected.clone(),
        );
        customers.push(tokio::spawn(async move {
            let response = driver
                .post(format!("{base}/order"))
                .body("board test")
                .send()
                .await?;
            if response.status() != reqwest::StatusCode::CREATED {
                bail!("/order answered {}", response.status());
            }
            let ticket: serde_json::Value = response.json().await?;
            placed.fetch_add(1, Ordering::Relaxed);
            let url = format!(
                "{base}/take?order={}&code={}",
                ticket["order"],
                ticket["pickup_code"].as_str().unwrap_or_default()
            );
            for _ in 0..500 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if driver.post(&url).send().await?.status().is_success() {
                    collected.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            }
            bail!("order {} was not READY within 5 s", ticket["order"])
        }));
        n += 1;
    }
    for customer in customers {
        customer.await??;
    }
    // Let the last changes reach every board.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    for board in boards {
        board.await??;
    }

    let changes: Vec<u64> = tallies.iter().map(|t| t.lock().unwrap().changes).collect();
    let expected = tallies.iter().map(|t| {
        let t = t.lock().unwrap();
        t.last_version - t.first_version
    });
    let expected = expected.max().unwrap_or(0);
    let skipped: u64 = tallies.iter().map(|t| t.lock().unwrap().skipped).sum();
    let resyncs: u64 = tallies.iter().map(|t| t.lock().unwrap().resyncs).sum();
    let ended = tallies.iter().filter(|t| t.lock().unwrap().ended).count();
    let complete = changes.iter().filter(|c| **c == expected).count();
    let latency = Latency::of(&latency.lock().unwrap());
    println!(
        "{}",
        json!({
            "boards": args.boards,
            "live_orders": args.live,
            "connect_s": connect_time.as_secs_f64(),
            "orders": placed.load(Ordering::Relaxed),
            "collected": collected.load(Ordering::Relaxed),
            "changes_per_s": expected as f64 / args.duration.as_secs_f64(),
            "changes": expected,
            "boards_with_every_change": complete,
            "fewest_changes_on_a_board": changes.iter().min(),
            "skipped": skipped,
            "resyncs": resyncs,
            "boards_ended_early": ended,
            "deliveries": changes.iter().sum::<u64>(),
            "sampled_boards": args.boards.div_ceil(args.sample.max(1)),
            "publish_to_receive": latency,
        })
    );
    Ok(())
}

/// The `version` at the start of an event, without parsing the board.
fn version_of(data: &[u8]) -> u64 {
    let digits = data.strip_prefix(b"{\"version\":").unwrap_or_default();
    digits
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0, |v, b| v * 10 + u64::from(b - b'0'))
}

fn data_is_full_board(data: &[u8]) -> bool {
    data.windows(14).take(64).any(|w| w == b"\"change\":null,")
}
