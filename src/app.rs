//! Assembles a restaurant from its configuration, runs it until shutdown, and
//! stops it in order: stop taking requests, end the board streams, let
//! workers give back what they were preparing.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::board::Board;
use crate::cli::{Cli, Command, ServeConfig};
use crate::kitchen::Cook;
use crate::order::Status;
use crate::queue::Queue;
use crate::queue::memory::MemoryQueue;
use crate::store::Store;
use crate::ticket::{self, CounterFile, Tickets};
use crate::web::{self, AppState};

/// How long shutdown waits for open connections before it stops anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Runs the command until it fails or Ctrl-C / SIGTERM.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    match cli.command {
        Command::Serve(config) => {
            let listener = TcpListener::bind(&config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            let addr = listener.local_addr()?;
            // Tests and scripts read this line to find the port.
            println!("listening on http://{addr}");
            serve(config, listener, shutdown).await
        }
    }
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}

/// Serves the restaurant on `listener` until `shutdown` is cancelled.
pub async fn serve(config: ServeConfig, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    if config.workers == 0 {
        bail!("--workers 0 leaves nobody to cook: run `fastfood serve` with at least one worker");
    }
    let dir = &config.kitchen.data_dir;
    let board = Board::new();
    let store = Store::open(dir, vec![board.clone()]).context("cannot open the order store")?;
    let tickets = open_tickets(dir, &store)?;

    let memory = MemoryQueue::new(config.queue_capacity);
    let mut unfinished = store.unfinished();
    // Orders that were being prepared go first: they were at the front.
    unfinished.sort_by_key(|o| (o.status != Status::Preparing, o.order));
    if !unfinished.is_empty() {
        tracing::info!("{} unfinished orders go back to the kitchen", unfinished.len());
    }
    memory.restore(unfinished.iter().map(|o| o.order));
    let queue = Queue::Memory(memory);

    let tasks = TaskTracker::new();
    for n in 1..=config.workers {
        let cook = Cook {
            name: format!("worker {n}"),
            store: store.clone(),
            queue: queue.clone(),
            prep_time: config.kitchen.prep_time,
            fail_rate: config.kitchen.fail_rate,
        };
        tasks.spawn(cook.run(shutdown.clone()));
    }
    tasks.close();

    let state = AppState { store, tickets, queue, board, shutdown: shutdown.clone(), broker_connected: None };
    tracing::info!(
        "serving on http://{} with {} workers, prep time {:?}, data in {}",
        listener.local_addr()?,
        config.workers,
        config.kitchen.prep_time,
        dir.display()
    );
    let server = axum::serve(listener, web::router(state)).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tokio::select! {
        served = server => served.context("the HTTP server failed")?,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("some connections were still open after {SHUTDOWN_GRACE:?}; closing them");
        }
    }
    shutdown.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait()).await.is_err() {
        tracing::warn!("workers did not stop within {SHUTDOWN_GRACE:?}");
    }
    Ok(())
}

/// Opens the counter, refusing one that would hand out a number the store
/// already holds.
fn open_tickets(dir: &Path, store: &Store) -> anyhow::Result<Tickets> {
    let highest = store.highest_ticket();
    let path = dir.join(ticket::FILE_NAME);
    if highest > 0 && !path.exists() {
        bail!(
            "{} is missing, but the order store holds orders up to {highest}; restore it from a backup, \
             or write that number into it: printf '%08x' {highest} | xxd -r -p > {}",
            path.display(),
            path.display()
        );
    }
    let counter = CounterFile::open(dir, true)?;
    let last = counter.last()?;
    if last < highest {
        bail!(
            "{} says the last ticket was {last}, but the order store holds order {highest}: counting on \
             from there would repeat tickets. Restore it from a backup, or write the highest number into it: \
             printf '%08x' {highest} | xxd -r -p > {}",
            path.display(),
            path.display()
        );
    }
    Ok(Tickets::start(counter))
}
