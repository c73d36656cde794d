//! Assembles a restaurant from its configuration, runs it until shutdown, and
//! stops it in order: stop taking requests, end the board streams, let
//! workers give back what they were preparing, and only then close the
//! broker connection (giving an order back needs it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::board::Board;
use crate::broker::{Broker, QueueType};
use crate::config::{KitchenConfig, ServeConfig, WorkerConfig};
use crate::front::Front;
use crate::kitchen::{Crew, Report, View, Worker};
use crate::order::Status;
use crate::queue::Queue;
use crate::queue::memory::MemoryQueue;
use crate::store::{Observer, Store};
use crate::ticket::{CounterFile, Tickets};
use crate::wait::Wait;
use crate::web::metrics::Scrape;
use crate::web::{self, AppState, Throttle};

/// How long shutdown waits for open connections and busy workers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How often a server with a broker asks how many workers consume orders.
const COUNT_WORKERS_EVERY: Duration = Duration::from_millis(500);

/// Serves the restaurant on `listener` until `shutdown` is cancelled.
pub async fn serve(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    Restaurant::open(config, shutdown)
        .await?
        .serve(listener)
        .await
}

/// A restaurant with its files checked and its kitchen at work, not yet
/// taking requests.
pub struct Restaurant {
    state: AppState,
    tasks: TaskTracker,
    reports: Reports,
    broker: Option<Broker>,
    /// `--allowed-hosts`, for the cross-origin guard once the address is known.
    allowed_hosts: Vec<String>,
    /// What it is, for the log line once it serves.
    summary: String,
}

impl Restaurant {
    /// Opens the store and the counter (refusing damaged ones), connects to the
    /// broker if there is one, and starts the kitchen.
    pub async fn open(
        config: ServeConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Restaurant> {
        let kitchen = &config.kitchen;
        if config.workers == 0 && kitchen.broker.is_none() {
            bail!(
                "--workers 0 leaves nobody to cook in this process; that is complex mode, which needs a broker: \
             add --broker amqp://guest:guest@127.0.0.1:5672 and start `fastfood worker --broker …` processes \
             (or drop --workers 0 to cook here)"
            );
        }
        let dir = &kitchen.data_dir;
        if kitchen.broker.is_none() && kitchen.queue_type != QueueType::Classic {
            bail!(
                "--queue-type {} is a kind of RabbitMQ queue, and this restaurant has no broker: add --broker \
             amqp://guest:guest@127.0.0.1:5672 (or a cluster's URLs, comma-separated), or drop --queue-type",
                kitchen.queue_type
            );
        }
        let broker = match &kitchen.broker {
            Some(url) => Some(
                Broker::start(
                    url,
                    &format!("fastfood server {}", std::process::id()),
                    kitchen.queue_type,
                )
                .await?,
            ),
            None => None,
        };
        let board = Board::new();
        let wait = Arc::new(Wait::new(config.workers, kitchen.prep_time));
        let mut observers: Vec<Arc<dyn Observer>> = vec![board.clone(), wait.clone()];
        observers.extend(broker.as_ref().map(Broker::change_publisher));
        let store = open_store(dir, observers).await?;
        let tickets = open_tickets(dir, &store).await?;

        let queue = match &broker {
            Some(broker) => {
                let follower = store.clone();
                broker.on_changes(move || follower.follow_now(), shutdown.clone());
                Queue::new(broker.clone())
            }
            None => {
                let memory = MemoryQueue::new(config.queue_capacity);
                let mut unfinished = store.unfinished();
                // Orders that were being prepared go first: they were at the front.
                unfinished.sort_by_key(|o| (o.status != Status::Preparing, o.ticket));
                if !unfinished.is_empty() {
                    tracing::info!(
                        "{} unfinished orders go back to the kitchen",
                        unfinished.len()
                    );
                }
                memory.restore(unfinished.iter().map(|o| o.ticket));
                Queue::new(memory)
            }
        };
        let front = Front {
            tickets,
            store: store.clone(),
            queue: queue.clone(),
        };

        let crew = Crew::new("server");
        let kitchen_view = View::new(queue.clone(), store.clone(), crew.instance());
        if let Some(broker) = &broker {
            let view = kitchen_view.clone();
            broker.on_kitchen_reports(
                move |body| match serde_json::from_slice::<Report>(body) {
                    Ok(report) => view.heard(report),
                    Err(e) => tracing::debug!("a kitchen report that does not parse: {e}"),
                },
                shutdown.clone(),
            );
        }
        let reports = Reports::start(&crew, Some(kitchen_view.clone()), broker.clone());

        let tasks = TaskTracker::new();
        tasks.spawn(kitchen_view.clone().watch(shutdown.clone()));
        if queue.is_durable() {
            tasks.spawn(front.clone().requeue_unconfirmed(shutdown.clone()));
        }
        if let Some(broker) = &broker {
            // Worker processes are not configured here: RabbitMQ knows them.
            tasks.spawn(count_workers(
                broker.clone(),
                wait.clone(),
                shutdown.clone(),
            ));
        }
        start_workers(
            &tasks,
            &crew,
            config.workers,
            &store,
            &queue,
            kitchen,
            &shutdown,
        );
        tasks.close();

        let summary = format!(
            "{}, prep time {:?}, {}, data dir {}",
            workers(config.workers),
            kitchen.prep_time,
            if broker.is_some() {
                "orders queued in RabbitMQ"
            } else {
                "orders queued in this process"
            },
            shown(dir).display()
        );
        let state = AppState {
            front,
            board,
            wait,
            kitchen: kitchen_view,
            throttle: Arc::new(Throttle::from_env()),
            shutdown,
        };
        Ok(Restaurant {
            state,
            tasks,
            reports,
            broker,
            allowed_hosts: config.allowed_hosts,
            summary,
        })
    }

    /// Serves on `listener` until shutdown, then stops everything in order.
    pub async fn serve(self, listener: TcpListener) -> anyhow::Result<()> {
        let Restaurant {
            state,
            tasks,
            reports,
            broker,
            allowed_hosts,
            summary,
        } = self;
        let shutdown = state.shutdown.clone();
        let addr = listener.local_addr()?;
        tracing::info!("serving on http://{addr} with {summary}");
        let hosts = web::Hosts::new(addr, &allowed_hosts);
        // As a make-service: each connection clones the router (one
        // reference count). Served as a plain router, axum rebuilds its
        // route table for every connection, ~10 KB per open board.
        let router = web::router(state, hosts).into_make_service();
        let server = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        tokio::select! {
            served = server => served.context("the HTTP server failed")?,
            _ = async { shutdown.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                tracing::warn!("some connections were still open after {SHUTDOWN_GRACE:?}; closing them");
            }
        }
        shutdown.cancel();
        stop(tasks).await;
        reports.stop().await;
        if let Some(broker) = broker {
            broker.close().await;
        }
        Ok(())
    }
}

/// Runs kitchen workers without a server, for complex mode.
pub async fn work(config: WorkerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let kitchen = &config.kitchen;
    let Some(url) = &kitchen.broker else {
        bail!(crate::config::WORKER_NEEDS_BROKER);
    };
    if config.workers == 0 {
        bail!("--workers 0 would start a worker process with nobody in it: give at least 1");
    }
    let broker = Broker::start(
        url,
        &format!("fastfood worker {}", std::process::id()),
        kitchen.queue_type,
    )
    .await?;
    let store = open_store(&kitchen.data_dir, vec![broker.change_publisher()]).await?;
    let queue = Queue::new(broker.clone());
    if let Some(addr) = &config.metrics {
        serve_metrics(addr, Scrape::worker(&store, &queue), &shutdown).await?;
    }
    let crew = Crew::new("worker");
    let reports = Reports::start(&crew, None, Some(broker.clone()));
    let tasks = TaskTracker::new();
    start_workers(
        &tasks,
        &crew,
        config.workers,
        &store,
        &queue,
        kitchen,
        &shutdown,
    );
    tasks.close();
    tracing::info!(
        "{}, prep time {:?}, data dir {}",
        workers(config.workers),
        kitchen.prep_time,
        shown(&kitchen.data_dir).display()
    );
    shutdown.cancelled().await;
    stop(tasks).await;
    reports.stop().await;
    broker.close().await;
    Ok(())
}

/// The sending of a crew's reports: to this server's kitchen view, and on
/// the broker for every other server.
struct Reports {
    /// Cancelled once the workers have stopped: the last report goes then,
    /// with what they did on the way out.
    done: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Reports {
    fn start(crew: &Crew, view: Option<Arc<View>>, broker: Option<Broker>) -> Reports {
        let done = CancellationToken::new();
        let (crew, until) = (crew.clone(), done.clone());
        let task = tokio::spawn(async move {
            let publish = broker.as_ref().map(Broker::kitchen_publisher);
            let send = |report: Report| {
                if let Some(publish) = &publish {
                    publish(serde_json::to_vec(&report).expect("a report serialises"));
                }
                if let Some(view) = &view {
                    view.heard_here(report);
                }
            };
            let last = crew.send_reports(send, until).await;
            if let Some(broker) = &broker {
                let body = serde_json::to_vec(&last).expect("a report serialises");
                broker.publish_kitchen_report(&body).await;
            }
            if let Some(view) = &view {
                view.heard_here(last);
            }
        });
        Reports { done, task }
    }

    /// Sends the last report and waits until it has gone.
    async fn stop(self) {
        self.done.cancel();
        let _ = self.task.await;
    }
}

/// Keeps the wait's worker count at the number of consumers of the broker's
/// `orders` queue, whichever processes they are in, until `shutdown`.
async fn count_workers(broker: Broker, wait: Arc<Wait>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(COUNT_WORKERS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Some(workers) = broker.workers_at_work().await
            && workers != wait.workers()
        {
            tracing::debug!("{} at work", self::workers(workers));
            wait.set_workers(workers);
        }
    }
}

/// Serves a worker process's `GET /metrics` on `addr` until shutdown.
async fn serve_metrics(
    addr: &str,
    scrape: Scrape,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for --metrics"))?;
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    let server = axum::serve(listener, web::metrics::router(scrape))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::warn!("the metrics server stopped: {e}");
        }
    });
    Ok(())
}

fn start_workers(
    tasks: &TaskTracker,
    crew: &Crew,
    workers: usize,
    store: &Store,
    queue: &Queue,
    kitchen: &KitchenConfig,
    shutdown: &CancellationToken,
) {
    for n in 1..=workers {
        let hand = crew.hire(n);
        let orders = queue.consumer(hand.name(), kitchen.prefetch);
        let worker = Worker::new(
            hand,
            store.clone(),
            orders,
            kitchen.prep_time,
            kitchen.fail_rate,
            tasks.clone(),
        );
        tasks.spawn(worker.run(shutdown.clone()));
    }
}

/// "1 worker", "2 workers", for the summary line.
pub fn workers(n: usize) -> String {
    match n {
        1 => "1 worker".to_owned(),
        n => format!("{n} workers"),
    }
}

/// A directory as a person would type it: `./data` rather than `data`.
fn shown(dir: &Path) -> std::borrow::Cow<'_, Path> {
    if dir.is_absolute() || dir.starts_with(".") || dir.starts_with("..") {
        dir.into()
    } else {
        Path::new(".").join(dir).into()
    }
}

async fn stop(tasks: TaskTracker) {
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("workers did not stop within {SHUTDOWN_GRACE:?}");
    }
}

/// Opens the order store off the async threads: it waits for the store's
/// file lock with a sleeping poll.
async fn open_store(dir: &Path, observers: Vec<Arc<dyn Observer>>) -> anyhow::Result<Store> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || Store::open(&dir, observers))
        .await
        .context("the task opening the order store failed")?
        .context("cannot open the order store")
}

/// Opens the counter (off the async threads, like the store), refusing one
/// that would hand out a number the store already holds.
async fn open_tickets(dir: &Path, store: &Store) -> anyhow::Result<Tickets> {
    let highest = store.highest_ticket();
    let dir: PathBuf = dir.to_owned();
    let counter = tokio::task::spawn_blocking(move || CounterFile::open_after(&dir, highest))
        .await
        .context("the task opening the ticket counter failed")??;
    Ok(Tickets::start(counter))
}
