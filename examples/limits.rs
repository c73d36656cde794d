//! The limits of this machine, to hold the product's figures against
//! (`bench/run.sh` uses it):
//!
//! - `limits axum --listen 127.0.0.1:7790`: an empty axum handler on every
//!   path; load it with wrk (or `limits load`) like `/order`.
//! - `limits fsync --dir DIR`: one store write cycle, as the order store does
//!   it: exclusive lock, append a line, fdatasync, unlock.
//! - `limits amqp --url amqp://… [--quorum]`: RabbitMQ's pipelined, confirmed publish
//!   rate of persistent messages to a durable queue, with lapin.
//! - `limits load --url URL`: a closed-loop HTTP load generator, for when
//!   wrk is not installed. Only answers with the `--expect`ed status count
//!   towards its rate; the others are counted apart, by status, so a fast
//!   refusal never reads as throughput.
//!
//! Each prints one line of JSON.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use fastfood::rush::Latency;
use hdrhistogram::Histogram;
use serde_json::json;

#[derive(Parser)]
#[command(name = "limits", about = "Measure what this machine can do at best.")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve an empty handler (200, empty body) on every path and method.
    Axum {
        #[arg(long, default_value = "127.0.0.1:7790")]
        listen: String,
    },
    /// Time fsynced store write cycles in DIR.
    Fsync {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Publish persistent messages with publisher confirms, WINDOW at a time.
    Amqp {
        #[arg(
            long,
            env = "AMQP_URL",
            default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
        )]
        url: String,
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 1000)]
        window: usize,
        /// Publish to a quorum queue (replicated over a cluster's nodes).
        #[arg(long)]
        quorum: bool,
    },
    /// Closed-loop HTTP load: CONNECTIONS requests at a time for DURATION.
    Load {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// POST this body (GET when not given).
        #[arg(long)]
        body: Option<String>,
        /// The status that counts (201 for /order); any 2xx when not given.
        #[arg(long)]
        expect: Option<u16>,
    },
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Axum { listen } => axum_empty(&listen).await,
        Command::Fsync { dir, duration } => fsync(dir, duration),
        Command::Amqp {
            url,
            duration,
            window,
            quorum,
        } => amqp(&url, duration, window, quorum).await,
        Command::Load {
            url,
            connections,
            duration,
            body,
            expect,
        } => load(url, connections, duration, body, expect).await,
    }
}

async fn axum_empty(listen: &str) -> anyhow::Result<()> {
    let app = axum::Router::new().fallback(|| async {});
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

fn fsync(dir: PathBuf, duration: Duration) -> anyhow::Result<()> {
    std::fs::create_dir_all(&dir)?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("limits.lock"))?;
    let path = dir.join("limits.log");
    let mut log = OpenOptions::new().create(true).append(true).open(&path)?;
    let line = format!(
        "{{\"version\":1,\"order\":{{\"order\":1,\"status\":\"READY\",\"content\":\"{}\"}}}}\n",
        "x".repeat(120)
    );
    let mut h = histogram();
    let start = Instant::now();
    while start.elapsed() < duration {
        let t = Instant::now();
        fs2::FileExt::lock_exclusive(&lock)?;
        log.write_all(line.as_bytes())?;
        log.sync_data()?;
        fs2::FileExt::unlock(&lock)?;
        h.saturating_record(t.elapsed().as_micros() as u64);
    }
    let elapsed = start.elapsed();
    std::fs::remove_file(&path)?;
    std::fs::remove_file(dir.join("limits.lock"))?;
    let latency = Latency::of(&h);
    println!(
        "{}",
        json!({ "cycles_per_s": h.len() as f64 / elapsed.as_secs_f64(), "latency": latency })
    );
    Ok(())
}

async fn amqp(url: &str, duration: Duration, window: usize, quorum: bool) -> anyhow::Result<()> {
    use lapin::options::{
        BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    };
    use lapin::types::{AMQPValue, FieldTable};
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    const QUEUE: &str = "fastfood-limits";
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let channel = connection.create_channel().await?;
    let mut arguments = FieldTable::default();
    if quorum {
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    channel
        .queue_declare(
            QUEUE.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let payload = br#"{"order":123456}"#;
    let mut pending = std::collections::VecDeque::with_capacity(window);
    let mut confirmed = 0u64;
    let mut h = histogram();
    let start = Instant::now();
    while start.elapsed() < duration {
        while pending.len() < window {
            let sent = Instant::now();
            let confirm = channel
                .basic_publish(
                    "".into(),
                    QUEUE.into(),
                    BasicPublishOptions::default(),
                    payload,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await?;
            pending.push_back((sent, confirm));
        }
        let (sent, confirm) = pending.pop_front().expect("a pending publish");
        anyhow::ensure!(confirm.await?.is_ack(), "the broker refused a message");
        h.saturating_record(sent.elapsed().as_micros() as u64);
        confirmed += 1;
    }
    let elapsed = start.elapsed();
    for (_, confirm) in pending {
        let _ = confirm.await;
    }
    channel
        .queue_delete(QUEUE.into(), QueueDeleteOptions::default())
        .await?;
    let _ = connection.close(200, "done".into()).await;
    let latency = Latency::of(&h);
    println!(
        "{}",
        json!({ "confirmed_per_s": confirmed as f64 / elapsed.as_secs_f64(), "window": window, "latency": latency })
    );
    Ok(())
}

async fn load(
    url: String,
    connections: usize,
    duration: Duration,
    body: Option<String>,
    expect: Option<u16>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(connections)
        .build()?;
    let done = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url, body, done, refused) = (
            client.clone(),
            url.clone(),
            body.clone(),
            done.clone(),
            refused.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            while start.elapsed() < duration {
                let t = Instant::now();
                let request = match &body {
                    Some(body) => client.post(&url).body(body.clone()),
                    None => client.get(&url),
                };
                let counted = match request.send().await {
                    Ok(r) => {
                        let status = r.status();
                        let _ = r.bytes().await;
                        h.saturating_record(t.elapsed().as_micros() as u64);
                        match expect {
                            Some(code) if status.as_u16() == code => Ok(()),
                            None if status.is_success() => Ok(()),
                            _ => Err(status.as_u16().to_string()),
                        }
                    }
                    Err(_) => Err("socket".to_owned()),
                };
                match counted {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(reason) => {
                        *refused.lock().unwrap().entry(reason).or_default() += 1;
                    }
                }
            }
            h
        }));
    }
    let mut all = histogram();
    for task in tasks {
        all.add(task.await?)?;
    }
    let elapsed = start.elapsed();
    println!(
        "{}",
        json!({
            "requests_per_s": done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
            "refused": *refused.lock().unwrap(),
            "latency": Latency::of(&all),
        })
    );
    Ok(())
}
