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
use crate::config::{ImportConfig, KitchenConfig, ServeConfig, WorkerConfig};
use crate::front::Front;
use crate::kitchen::{Cooking, Crew, Halt, Report, View, Worker};
use crate::order::Status;
use crate::queue::Queue;
use crate::queue::memory::MemoryQueue;
use crate::store::postgres::Sharing;
use crate::store::{Lease, Observer, Opening, Queueing, Store};
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
    /// What each connection may take.
    limits: web::server::Limits,
    /// What it is, for the log line once it serves.
    summary: String,
    /// Why a worker stopped the process, if one did.
    halt: Halt,
    /// Its place among the restaurant's processes, held until it stops.
    lease: Lease,
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
        if kitchen.broker.is_none() && kitchen.queue_type != QueueType::Classic {
            bail!(
                "--queue-type {} is a kind of RabbitMQ queue, and this restaurant has no broker: add --broker \
             amqp://guest:guest@127.0.0.1:5672 (or a cluster's URLs, comma-separated), or drop --queue-type",
                kitchen.queue_type
            );
        }
        let broker = match &kitchen.broker {
            Some(url) => {
                let name = format!("fastfood server {}", std::process::id());
                Some(Broker::start(url, &name, kitchen.heartbeat, kitchen.queue_type).await?)
            }
            None => None,
        };
        let board = Board::new();
        let wait = Arc::new(Wait::new(config.workers, kitchen.prep_time));
        let mut observers: Vec<Arc<dyn Observer>> = vec![board.clone(), wait.clone()];
        observers.extend(broker.as_ref().map(Broker::change_publisher));
        let sharing = match &broker {
            Some(_) => Sharing::WithBroker,
            None => Sharing::Alone,
        };
        let (store, tickets) =
            open_store_and_tickets(kitchen, Opening::Create, observers, sharing).await?;
        store.set_max_orders(config.max_orders);
        if let Some(broker) = &broker {
            broker.serve_restaurant(store.restaurant().clone());
        }
        let lease = store.lease(if broker.is_some() {
            Queueing::Broker
        } else {
            Queueing::InProcess
        })?;
        let halt = Halt::new(shutdown.clone());

        let queue = match &broker {
            Some(broker) => {
                let follower = store.clone();
                broker.on_changes(move || follower.follow_now(), shutdown.clone());
                Queue::new(broker.clone())
            }
            None => {
                let memory = MemoryQueue::new(config.queue_capacity);
                // This process is alone on the store (its lease): no other
                // process holds any of these orders, so each goes back,
                // those that were being prepared first (at the front).
                let unfinished = {
                    let store = store.clone();
                    tokio::task::spawn_blocking(move || store.unfinished_now())
                        .await
                        .context("the task reading the unfinished orders failed")?
                        .context("cannot read the unfinished orders")?
                };
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
            placing: Default::default(),
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
        if broker.is_some() {
            tasks.spawn(hand_over(store.clone(), queue.clone(), shutdown.clone()));
        }
        tasks.spawn(kitchen_view.clone().watch(shutdown.clone()));
        if queue.is_durable() {
            tasks.spawn(
                front
                    .clone()
                    .requeue_unconfirmed(config.lost_after, shutdown.clone()),
            );
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
            &halt,
        );
        tasks.close();

        let summary = format!(
            "{}, prep time {:?}, {}, {}, restaurant {}",
            workers(config.workers),
            kitchen.prep_time,
            if broker.is_some() {
                "orders queued in RabbitMQ"
            } else {
                "orders queued in this process"
            },
            kept_in(kitchen),
            store.restaurant()
        );
        let state = AppState {
            front,
            board,
            wait,
            kitchen: kitchen_view,
            throttle: Arc::new(Throttle::from_env()),
            shutdown,
        };
        let connections = &config.connections;
        let limits = web::server::Limits {
            header_timeout: connections.header_timeout,
            body_timeout: connections.body_timeout,
            idle_timeout: connections.idle_timeout,
            max_connections: web::server::connection_cap(connections.max_connections),
            max_per_client: connections.max_connections_per_client,
        };
        Ok(Restaurant {
            state,
            tasks,
            reports,
            broker,
            allowed_hosts: config.allowed_hosts,
            limits,
            summary,
            halt,
            lease,
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
            limits,
            summary,
            halt,
            lease,
        } = self;
        let shutdown = state.shutdown.clone();
        let addr = listener.local_addr()?;
        tracing::info!("serving on http://{addr} with {summary}");
        let hosts = web::Hosts::new(addr, &allowed_hosts);
        // Each connection clones the router: one reference count. Our own
        // accept loop (`web::server`) gives every request its client's
        // address, which the pickup-code throttle counts by.
        let router = web::router(state, hosts);
        let server = web::server::serve(listener, router, limits, shutdown.clone());
        tokio::select! {
            _ = server => {}
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
        drop(lease);
        match halt.reason() {
            Some(why) => bail!(why),
            None => Ok(()),
        }
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
    let name = format!("fastfood worker {}", std::process::id());
    let broker = Broker::start(url, &name, kitchen.heartbeat, kitchen.queue_type).await?;
    // A worker joins a restaurant: it never creates a data directory or a store.
    let store = match &kitchen.database {
        Some(url) => {
            Store::open_database(
                url,
                vec![broker.change_publisher()],
                Sharing::WithBroker,
                kitchen.keep_changes,
            )
            .await
            .context("cannot open the order store")?
            .0
        }
        None => {
            open_store(
                &kitchen.data_dir,
                Opening::Join,
                vec![broker.change_publisher()],
            )
            .await?
        }
    };
    broker.serve_restaurant(store.restaurant().clone());
    let lease = store.lease(Queueing::Broker)?;
    let queue = Queue::new(broker.clone());
    if let Some(addr) = &config.metrics {
        serve_metrics(addr, Scrape::worker(&store, &queue), &shutdown).await?;
    }
    let crew = Crew::new("worker");
    let reports = Reports::start(&crew, None, Some(broker.clone()));
    let tasks = TaskTracker::new();
    tasks.spawn(hand_over(store.clone(), queue.clone(), shutdown.clone()));
    let halt = Halt::new(shutdown.clone());
    start_workers(
        &tasks,
        &crew,
        config.workers,
        &store,
        &queue,
        kitchen,
        &halt,
    );
    tasks.close();
    tracing::info!(
        "{}, prep time {:?}, {}, restaurant {}",
        workers(config.workers),
        kitchen.prep_time,
        kept_in(kitchen),
        store.restaurant()
    );
    shutdown.cancelled().await;
    stop(tasks).await;
    reports.stop().await;
    broker.close().await;
    drop(lease);
    match halt.reason() {
        Some(why) => bail!(why),
        None => Ok(()),
    }
}

/// `fastfood import`: reads the data directory (refusing one in use),
/// copies it into the database (refusing one with orders), says what it
/// copied.
pub async fn import(config: ImportConfig) -> anyhow::Result<()> {
    let dir = config.data_dir.clone();
    let (files, counter) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let files = crate::store::export(&dir)
            .with_context(|| format!("cannot read the restaurant in {}", shown(&dir).display()))?;
        let counter = CounterFile::open(&dir, crate::ticket::Create::MustExist)
            .and_then(|c| c.last())
            .context("cannot read the ticket counter")?;
        Ok((files, counter))
    })
    .await
    .context("the task reading the data directory failed")??;
    let imported = crate::store::postgres::import(&config.database, &files, counter)
        .await
        .context("cannot import the restaurant")?;
    println!(
        "copied {} live orders (with their pickup codes) and {} that left, from {} into PostgreSQL at {}; \
         the next ticket is {}. Start `fastfood serve` and `fastfood worker` with --database now; \
         the files are left as they were",
        imported.live,
        imported.left,
        shown(&config.data_dir).display(),
        crate::store::postgres::redact(&config.database),
        u64::from(imported.counter) + 1
    );
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

/// Takes over, into RabbitMQ, the orders a server without a broker left
/// in its memory when it died or stopped (see [`Store::leftovers`]),
/// retrying while the broker cannot take them, until `shutdown`.
async fn hand_over(store: Store, queue: Queue, shutdown: CancellationToken) {
    let found = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.leftovers()).await
    };
    let left = match found {
        Ok(Ok(left)) if left.is_empty() => return,
        Ok(Ok(left)) => left,
        Ok(Err(e)) => {
            tracing::error!("cannot look for orders a server without a broker left: {e}");
            return;
        }
        Err(e) => {
            tracing::error!(
                "the task looking for orders a server without a broker left failed: {e}"
            );
            return;
        }
    };
    tracing::info!(
        "{} unfinished orders of a server without a broker, which is gone, go to RabbitMQ",
        left.len()
    );
    let mut retry = crate::backoff::RECONNECT;
    for order in left {
        loop {
            let sent = match queue.reserve() {
                Ok(slot) => slot.send(order.ticket).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(()) => break,
                Err(e) => {
                    tracing::debug!("order {} not handed over yet: {e}", order.ticket);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry.pause()) => {}
                    }
                }
            }
        }
        if order.status == Status::Taken {
            let _ = store.mark_queued(order.ticket).await;
        }
    }
    let done = tokio::task::spawn_blocking(move || store.handed_over()).await;
    if !matches!(done, Ok(Ok(()))) {
        tracing::warn!("the orders were handed over, but queue.lock still says they were not");
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
    halt: &Halt,
) {
    let cooking = Cooking::new(
        kitchen.prep_time,
        kitchen.fail_rate,
        kitchen.max_deliveries,
        kitchen.crash_on.clone(),
    );
    for n in 1..=workers {
        let hand = crew.hire(n);
        let orders = queue.consumer(hand.name(), kitchen.prefetch);
        let worker = Worker::new(
            hand,
            store.clone(),
            orders,
            cooking.clone(),
            tasks.clone(),
            halt.clone(),
        );
        tasks.spawn(worker.run(halt.shutdown()));
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

/// Where the orders are kept, for the summary line (a URL without its
/// password).
fn kept_in(kitchen: &KitchenConfig) -> String {
    match &kitchen.database {
        Some(url) => format!(
            "orders in PostgreSQL at {}",
            crate::store::postgres::redact(url)
        ),
        None => format!("data dir {}", shown(&kitchen.data_dir).display()),
    }
}

/// The store and the ticket numbers: from the database when there is one,
/// otherwise from the data directory.
async fn open_store_and_tickets(
    kitchen: &KitchenConfig,
    opening: Opening,
    observers: Vec<Arc<dyn Observer>>,
    sharing: Sharing,
) -> anyhow::Result<(Store, Tickets)> {
    if let Some(url) = &kitchen.database {
        return Store::open_database(url, observers, sharing, kitchen.keep_changes)
            .await
            .context("cannot open the order store");
    }
    let dir = &kitchen.data_dir;
    let store = open_store(dir, opening, observers).await?;
    let tickets = open_tickets(dir, &store).await?;
    identify(&store).await?;
    Ok((store, tickets))
}

/// Opens the order store off the async threads: it waits for the store's
/// file lock with a sleeping poll.
async fn open_store(
    dir: &Path,
    opening: Opening,
    observers: Vec<Arc<dyn Observer>>,
) -> anyhow::Result<Store> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || Store::open_as(&dir, opening, observers))
        .await
        .context("the task opening the order store failed")?
        .context("cannot open the order store")
}

/// Gives a store from before identities its identity, once every file has
/// been checked (off the async threads: it takes the store's lock).
async fn identify(store: &Store) -> anyhow::Result<()> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.identify().map(|_| ()))
        .await
        .context("the task identifying the restaurant failed")?
        .context("cannot give the restaurant its identity")
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
