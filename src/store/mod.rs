//! The order store: every order in the restaurant, kept in files in the data
//! directory that any number of processes share. This module is the only
//! code that touches them: `disk` loads and appends (with `log`,
//! `snapshot` and `history`, one per file), `compact` rewrites them,
//! `state` holds the rules, and `committer` is the thread that owns the
//! files; this file is the handle the rest of the program holds.
//!
//! Every change goes through one thread, the committer. It takes all the
//! requests waiting for it and decides them in one batch: lock, read what
//! other processes appended, decide each request against the rules, append;
//! the fsync runs on a second thread while the next batch is decided (see
//! `committer`), and the lock is let go once every batch is durable (group
//! commit). So a burst of requests costs one fsync, not one each, and two
//! processes can never both collect one order. Between
//! requests it looks for other processes' changes a few times a second, so
//! this process's board also shows what they did.
//!
//! Whoever wants to see changes (the board, the broker's fan-out) registers
//! an [`Observer`]; it is called in version order, after the change is durable.
//!
//! The state sits behind a `parking_lot` lock that only the committer
//! writes, for as long as applying a batch takes; a compaction's fsyncs run
//! under a read lock, so `GET /orders/N` and the sweep never wait for them.

mod committer;
mod compact;
mod disk;
mod history;
mod identity;
mod lease;
mod log;
pub mod postgres;
mod snapshot;
mod state;
#[doc(hidden)]
pub mod testing;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::{mpsc, oneshot};

pub use disk::{Exported, HISTORY, LOG, SNAPSHOT, export};
pub use identity::IDENTITY;
pub use lease::{Lease, QUEUE_LOCK, Queueing};
pub use state::{Lookup, Outcome, Record, Repeat};

use crate::order::{Order, Status, Ticket};
use crate::pickup::PickupCode;
use crate::restaurant::RestaurantId;
use committer::{Committer, follow};
use state::{Request, State};

/// Requests that may wait for the committer before senders wait too.
const INBOX: usize = 8192;
/// How often to look for changes made by other processes.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

// The I/O errors are shown in the message and not returned as `source()`:
// a report that prints the chain would print them twice.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {what}", path.display())]
    Corrupt { path: PathBuf, what: String },
    #[error(
        "{} is a file, not a directory: the data directory holds the order files and the ticket counter. \
         Give --data-dir a directory (a missing one is created), or move that file out of the way",
        path.display()
    )]
    NotADirectory { path: PathBuf },
    #[error(
        "cannot create the data directory {}: {} does not exist. Only the data directory itself is \
         created, so that a typo does not build a tree of directories: create {} first, or give \
         --data-dir a directory whose parent exists",
        path.display(), parent.display(), parent.display()
    )]
    NoParent { path: PathBuf, parent: PathBuf },
    #[error("the order store is busy: {0}")]
    Busy(Arc<io::Error>),
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: Arc<io::Error>,
    },
    #[error("the order store has stopped")]
    Stopped,
    /// A new order refused: the restaurant holds its most orders already.
    #[error(
        "the restaurant holds {0} orders, its most; a new one must wait until one is collected"
    )]
    Full(usize),
    /// The database (`--database`) cannot be reached or refused a statement;
    /// the message names it without its password.
    #[error("{0}")]
    Database(String),
    #[error("{0}")]
    NoRandomness(String),
    #[error(
        "{what}: a worker joins a restaurant that `fastfood serve` created, and never creates one. \
         Give --data-dir the data directory of the restaurant's server (`fastfood serve` makes one \
         when it first starts)"
    )]
    NotARestaurant { what: String },
    /// Another process keeps this store's orders where this one cannot
    /// share them (see [`Store::lease`]): the whole sentence.
    #[error("{0}")]
    InUse(String),
}

/// Who opens a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// `serve`: creates the data directory, the store and the restaurant's
    /// identity where they are missing.
    Create,
    /// A worker process: joins a restaurant that exists, and creates nothing.
    Join,
}

impl StoreError {
    /// What happened, for a page anyone may read (the kitchen's log of
    /// moments): no path, no OS error text. The log line keeps the detail.
    pub fn what_happened(&self) -> &'static str {
        match self {
            StoreError::Busy(_) => "the order store was busy",
            StoreError::Io { error, .. } => match error.kind() {
                io::ErrorKind::NotFound => "a file of the order store is missing",
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                    "the order store may not be written"
                }
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                    "the disk of the order store is full"
                }
                _ => "the order store could not be written",
            },
            StoreError::Corrupt { .. } => "the order store is damaged",
            StoreError::Stopped => "the order store has stopped",
            StoreError::NotADirectory { .. } | StoreError::NoParent { .. } => {
                "the order store's directory is missing"
            }
            StoreError::NoRandomness(_) => "no pickup code could be drawn",
            StoreError::Full(_) => "the restaurant is full",
            StoreError::NotARestaurant { .. } => "the data directory is not a restaurant's",
            StoreError::InUse(_) => "another process holds this store's line",
            StoreError::Database(_) => "the order database did not answer as it should",
        }
    }
}

/// Which process committed a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// This process.
    Here,
    /// Another process sharing the data directory.
    Elsewhere,
}

/// Sees every change to the store, in order, once it is durable.
pub trait Observer: Send + Sync + 'static {
    /// `records` were committed, by this process or another (`origin`).
    fn committed(&self, records: &[Record], origin: Origin);
    /// The whole live set, at start-up and whenever the store had to reload
    /// from disk (it missed changes another process compacted away).
    fn reloaded(&self, version: u64, live: &BTreeMap<Ticket, Order>);
}

type Reply = oneshot::Sender<Result<Outcome, StoreError>>;

enum Job {
    Change(Request, Reply),
    /// Answer once every change asked for before is durable (or failed).
    Settle(oneshot::Sender<()>),
    /// Look for other processes' changes.
    Follow,
}

/// A committer's jobs sorted: the changes asked for, their replies (each
/// `None` once answered), and the settles.
struct Sorted {
    requests: Vec<Request>,
    replies: Vec<Option<Reply>>,
    settles: Vec<oneshot::Sender<()>>,
}

impl Sorted {
    /// Takes `jobs` (a follow asks for nothing more than a cycle).
    fn take(jobs: &mut Vec<Job>) -> Sorted {
        let mut sorted = Sorted {
            requests: Vec::with_capacity(jobs.len()),
            replies: Vec::with_capacity(jobs.len()),
            settles: Vec::new(),
        };
        for job in jobs.drain(..) {
            match job {
                Job::Change(request, reply) => {
                    sorted.requests.push(request);
                    sorted.replies.push(Some(reply));
                }
                Job::Settle(done) => sorted.settles.push(done),
                Job::Follow => {}
            }
        }
        sorted
    }
}

/// Answers now each request whose outcome may go out before it is durable
/// (`Request::answers_before_sync`: a first claim), leaving `None` in its
/// place.
fn answer_early(requests: &[Request], replies: &mut [Option<Reply>], outcomes: &[Outcome]) {
    for ((request, reply), outcome) in requests.iter().zip(replies).zip(outcomes) {
        if request.answers_before_sync(outcome)
            && let Some(reply) = reply.take()
        {
            let _ = reply.send(Ok(outcome.clone()));
        }
    }
}

/// A handle to the store; cheap to clone. The committer stops when the last
/// handle is dropped.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

/// What handles and the committer both see.
struct Shared {
    /// The data directory; for a store in PostgreSQL, its URL without the
    /// password (then `in_database`).
    dir: PathBuf,
    /// Whether the store is in PostgreSQL: the database holds the lock of
    /// the in-process queue, and there are no files to read.
    in_database: bool,
    /// The restaurant this store belongs to: known at open, or for a store
    /// from before identities, once [`Store::identify`] made one.
    restaurant: OnceLock<RestaurantId>,
    state: RwLock<State>,
    /// False from a failed write (a full disk, a lock held elsewhere too
    /// long) until a write or a probe succeeds; see the committer.
    writable: AtomicBool,
    /// The most orders in the restaurant (see [`Store::set_max_orders`]).
    max_orders: AtomicUsize,
}

impl Store {
    /// Opens (or creates) the store in `dir`, checking every file. Must be
    /// called inside a Tokio runtime, which runs the follower; it blocks on
    /// the store's file lock, so async code calls it through `spawn_blocking`.
    pub fn open(dir: &Path, observers: Vec<Arc<dyn Observer>>) -> Result<Store, StoreError> {
        Store::open_as(dir, Opening::Create, observers)
    }

    /// Opens the store in `dir` as `opening` says: [`Opening::Join`] refuses
    /// a directory that is missing or holds no restaurant (see
    /// [`Store::open`] for the rest).
    pub fn open_as(
        dir: &Path,
        opening: Opening,
        observers: Vec<Arc<dyn Observer>>,
    ) -> Result<Store, StoreError> {
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        match opening {
            Opening::Create => create_data_dir(dir)?,
            Opening::Join if !dir.exists() => {
                let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
                return Err(StoreError::NotARestaurant {
                    what: format!("the data directory {} does not exist", shown.display()),
                });
            }
            Opening::Join => {}
        }
        let (lock, disk, state, restaurant) = disk::open(dir, opening)?;
        for observer in &observers {
            observer.reloaded(state.version, &state.live);
        }
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            in_database: false,
            restaurant: restaurant.map(OnceLock::from).unwrap_or_default(),
            state: RwLock::new(state),
            writable: AtomicBool::new(true),
            max_orders: AtomicUsize::new(usize::MAX),
        });
        let (jobs, inbox) = mpsc::channel(INBOX);
        let committer = Committer {
            lock: Arc::new(lock),
            disk,
            shared: shared.clone(),
            observers,
            wake: jobs.downgrade(),
        };
        std::thread::Builder::new()
            .name("store-committer".into())
            .spawn(move || committer.run(inbox))
            .map_err(|e| StoreError::Io {
                path: dir.to_owned(),
                error: e.into(),
            })?;
        tokio::spawn(follow(jobs.downgrade()));
        Ok(Store { jobs, shared })
    }

    /// Sets the most orders the restaurant may hold (TAKEN, PREPARING or
    /// READY): past it [`Store::record`] refuses with [`StoreError::Full`].
    /// Decided in the committer's batch against the live set it has just
    /// read from disk, so processes sharing the files, each with this
    /// bound, hold it together. No bound until this is called.
    pub fn set_max_orders(&self, max: usize) {
        self.shared.max_orders.store(max, Ordering::Relaxed);
    }

    /// Whether the restaurant holds its most orders now (as last read: a
    /// quick refusal before a ticket is numbered; the batch decides).
    pub fn is_full(&self) -> Option<usize> {
        let max = self.shared.max_orders.load(Ordering::Relaxed);
        (self.read().live.len() >= max).then_some(max)
    }

    /// Records a new order, `TAKEN`, with a new pickup code: the order and
    /// its code, which the store keeps and never shows again.
    pub async fn record(
        &self,
        ticket: Ticket,
        content: String,
    ) -> Result<(Order, PickupCode), StoreError> {
        let code = PickupCode::generate().map_err(|e| StoreError::NoRandomness(e.to_string()))?;
        match self
            .submit(Request::Record {
                ticket,
                content,
                code,
                max_live: self.shared.max_orders.load(Ordering::Relaxed),
            })
            .await?
        {
            Outcome::Changed(order) => Ok((order, code)),
            Outcome::Full => Err(StoreError::Full(
                self.shared.max_orders.load(Ordering::Relaxed),
            )),
            _ => Err(StoreError::Corrupt {
                path: self.shared.dir.clone(),
                what: format!(
                    "ticket {ticket} was handed out twice: the counter is behind the orders"
                ),
            }),
        }
    }

    /// Moves an order one step forward to `to`. `Unchanged` when it is already
    /// there or past it and `repeat` allows it (a worker's redelivered order).
    pub async fn advance(
        &self,
        ticket: Ticket,
        to: Status,
        repeat: Repeat,
    ) -> Result<Outcome, StoreError> {
        self.submit(Request::Advance { ticket, to, repeat }).await
    }

    /// A customer's step on their order, `to` COLLECTED or CANCELLED, with
    /// the pickup code they gave: decided with the step, in the same cycle,
    /// so a code is checked against the order exactly as the step finds it.
    /// `WrongCode` when the code is missing or wrong (and the order has one).
    pub async fn by_customer(
        &self,
        ticket: Ticket,
        to: Status,
        code: Option<PickupCode>,
    ) -> Result<Outcome, StoreError> {
        self.submit(Request::Customer { ticket, to, code }).await
    }

    /// `worker` takes `ticket` to prepare it: TAKEN → PREPARING, or
    /// PREPARING again (its worker died or gave it back), with one more
    /// delivery. `Unchanged` when it is already READY or further;
    /// `OverLimit` when it was delivered `limit` times already (a poison
    /// order: set it aside).
    pub async fn claim(
        &self,
        ticket: Ticket,
        worker: Arc<str>,
        limit: u32,
    ) -> Result<Outcome, StoreError> {
        self.submit(Request::Claim {
            ticket,
            worker,
            limit,
        })
        .await
    }

    /// The kitchen sets a poison order aside: PREPARING → CANCELLED, with
    /// `cancelled_by` the kitchen.
    pub async fn set_aside(&self, ticket: Ticket) -> Result<Outcome, StoreError> {
        self.submit(Request::SetAside(ticket)).await
    }

    /// Waits until every change this process asked for so far is durable
    /// (or has failed): a claim is answered before its fsync, and a process
    /// about to end abruptly on purpose (`--crash-on`) waits for it here.
    pub async fn settled(&self) {
        let (done, settled) = oneshot::channel();
        if self.jobs.send(Job::Settle(done)).await.is_ok() {
            let _ = settled.await;
        }
    }

    /// Who cancelled a cancelled order, when known (see
    /// [`CancelledBy`](crate::order::CancelledBy)).
    pub fn cancelled_by(&self, ticket: Ticket) -> Option<crate::order::CancelledBy> {
        self.read().cancelled_by(ticket)
    }

    /// Notes that the broker confirmed it holds `ticket`.
    pub async fn mark_queued(&self, ticket: Ticket) -> Result<Outcome, StoreError> {
        self.submit(Request::Queued {
            ticket,
            queued: true,
        })
        .await
    }

    /// Notes that the line lost `ticket` (see [`Request::Queued`]): `Changed`
    /// tells this process to send it again.
    pub async fn mark_lost(&self, ticket: Ticket) -> Result<Outcome, StoreError> {
        self.submit(Request::Queued {
            ticket,
            queued: false,
        })
        .await
    }

    /// Looks for other processes' changes now rather than at the next poll
    /// (another process announced one).
    pub fn follow_now(&self) {
        let _ = self.jobs.try_send(Job::Follow);
    }

    async fn submit(&self, request: Request) -> Result<Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Change(request, reply))
            .await
            .map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// What the store knows of a ticket now (at most a moment behind other
    /// processes).
    pub fn lookup(&self, ticket: Ticket) -> Lookup {
        self.read().lookup(ticket)
    }

    /// Makes sure the store has an identity: a store from before
    /// identities gets one now. `serve` calls it once it has checked every
    /// file (a store it refuses is left exactly as it was).
    pub fn identify(&self) -> Result<&RestaurantId, StoreError> {
        if let Some(id) = self.shared.restaurant.get() {
            return Ok(id);
        }
        let lock_path = self.shared.dir.join(disk::LOCK);
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(disk::io_error(&lock_path))?;
        let id = identity::read_or_create(&self.shared.dir, &lock)?;
        Ok(self.shared.restaurant.get_or_init(|| id))
    }

    /// The restaurant this store belongs to.
    ///
    /// # Panics
    /// On a store from before identities opened by `serve`, until
    /// [`Store::identify`] has made it one.
    pub fn restaurant(&self) -> &RestaurantId {
        self.shared
            .restaurant
            .get()
            .expect("the store is identified at start-up")
    }

    /// Where the store is, for a sentence: "the data directory /srv/data".
    pub fn place(&self) -> String {
        if self.shared.in_database {
            return format!("the database {}", self.shared.dir.display());
        }
        let dir = &self.shared.dir;
        let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        format!("the data directory {}", shown.display())
    }

    /// Takes this process's place among the processes of the restaurant,
    /// for its whole life: alone with [`Queueing::InProcess`] (its orders
    /// wait in its memory), beside others with [`Queueing::Broker`].
    /// `InUse` at once, with what to do, when that cannot be.
    pub fn lease(&self, queueing: Queueing) -> Result<Lease, StoreError> {
        if self.shared.in_database {
            // The database connection holds the same rule (an advisory
            // lock), taken when it was opened.
            return Ok(Lease::in_database());
        }
        lease::take(&self.shared.dir, &self.place(), queueing)
    }

    /// For a process with a broker (holding that lease): the unfinished
    /// orders a server without a broker left in no queue but its memory,
    /// when it is gone and nobody has taken them over yet; they are this
    /// process's to publish, then [`Store::handed_over`]. Read from the
    /// files under the store's lock, so nothing that server wrote last is
    /// missed. Orders already in RabbitMQ (`queued`) are not among them.
    pub fn leftovers(&self) -> Result<Vec<Order>, StoreError> {
        if self.shared.in_database {
            // A database refuses a process with the in-process queue beside
            // processes with a broker: nothing is ever left over.
            return Ok(Vec::new());
        }
        let dir = &self.shared.dir;
        let mut left = self.unfinished_on_disk(|| lease::claim_leftovers(dir))?;
        left.retain(|o| !o.queued);
        if left.is_empty() {
            lease::handed_over(dir)?;
        }
        Ok(left)
    }

    /// Unfinished orders as the files hold them now, read under the
    /// store's lock, PREPARING first (they were at the front), then by
    /// ticket; none unless `first` (run under the lock) says to go on. For
    /// start-up, where a process that just died may have written after
    /// this one loaded the store.
    fn unfinished_on_disk(
        &self,
        first: impl FnOnce() -> Result<bool, StoreError>,
    ) -> Result<Vec<Order>, StoreError> {
        let dir = &self.shared.dir;
        let lock_path = dir.join(disk::LOCK);
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(disk::io_error(&lock_path))?;
        let _held = crate::durable::exclusive(&lock, crate::durable::LOCK_WAIT)
            .map_err(|e| StoreError::Busy(e.into()))?;
        if !first()? {
            return Ok(Vec::new());
        }
        let (_, state) = disk::Disk::load(dir)?;
        let mut left: Vec<Order> = state
            .live
            .into_values()
            .filter(|o| matches!(o.status, Status::Taken | Status::Preparing))
            .collect();
        left.sort_by_key(|o| (o.status != Status::Preparing, o.ticket));
        Ok(left)
    }

    /// For a server without a broker, once it holds that lease: every
    /// unfinished order, as the files hold them now (the server that held
    /// the lease before may have written after this one loaded the store),
    /// PREPARING first.
    pub fn unfinished_now(&self) -> Result<Vec<Order>, StoreError> {
        if self.shared.in_database {
            // Loaded at open, and this process is alone on the database.
            let mut left = self.unfinished();
            left.sort_by_key(|o| (o.status != Status::Preparing, o.ticket));
            return Ok(left);
        }
        self.unfinished_on_disk(|| Ok(true))
    }

    /// The orders [`Store::leftovers`] gave are in the queue now.
    pub fn handed_over(&self) -> Result<(), StoreError> {
        if self.shared.in_database {
            return Ok(());
        }
        lease::handed_over(&self.shared.dir)
    }

    /// Orders the kitchen has not finished, oldest first.
    pub fn unfinished(&self) -> Vec<Order> {
        let state = self.read();
        state
            .live
            .values()
            .filter(|o| matches!(o.status, Status::Taken | Status::Preparing))
            .cloned()
            .collect()
    }

    /// The line as the store sees it, the first `n`: orders left PREPARING
    /// by a worker that no longer holds them (`held` says which are held)
    /// go first, as the queue gives them back to the front; then TAKEN
    /// orders, oldest first.
    pub fn line(&self, n: usize, held: impl Fn(Ticket) -> bool) -> Vec<Ticket> {
        let state = self.read();
        let (mut first, mut then) = (Vec::new(), Vec::new());
        for order in state.live.values() {
            match order.status {
                Status::Preparing if !held(order.ticket) && first.len() < n => {
                    first.push(order.ticket)
                }
                Status::Taken => then.push(order.ticket),
                _ => {}
            }
            if then.len() >= n {
                break;
            }
        }
        first.extend(then);
        first.truncate(n);
        first
    }

    /// TAKEN orders the broker never confirmed, taken longer ago than `age`.
    pub fn unqueued(&self, age: Duration) -> Vec<Ticket> {
        let Some(before) = std::time::SystemTime::now().checked_sub(age) else {
            return Vec::new();
        };
        let state = self.read();
        state
            .live
            .values()
            .filter(|o| o.status == Status::Taken && !o.queued && o.taken_at.0 < before)
            .map(|o| o.ticket)
            .collect()
    }

    /// TAKEN orders the broker confirmed holding.
    pub fn queued_and_waiting(&self) -> HashSet<Ticket> {
        let state = self.read();
        state
            .live
            .values()
            .filter(|o| o.status == Status::Taken && o.queued)
            .map(|o| o.ticket)
            .collect()
    }

    /// How many orders in the restaurant have each status now.
    pub fn live_counts(&self) -> HashMap<Status, usize> {
        let mut counts = HashMap::new();
        for order in self.read().live.values() {
            *counts.entry(order.status).or_default() += 1;
        }
        counts
    }

    /// The highest ticket number the store has ever held.
    pub fn highest_ticket(&self) -> Ticket {
        self.read().highest
    }

    /// Whether the store can write: false from a failed write until a real
    /// write, or a probe of the disk (every second meanwhile), succeeds.
    pub fn is_writable(&self) -> bool {
        self.shared.writable.load(Ordering::Relaxed)
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.shared.state.read()
    }
}

/// Creates the data directory itself when it is missing, never its parents.
fn create_data_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        warn_if_readable(dir);
        return Ok(());
    }
    let parent = match dir.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => Path::new("/"),
    };
    // A parent that is a file is left to `create_dir`, whose error says so.
    if !parent.exists() {
        return Err(StoreError::NoParent {
            path: dir.to_owned(),
            parent: parent.to_owned(),
        });
    }
    match crate::durable::create_private_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(StoreError::Io {
            path: dir.to_owned(),
            error: e.into(),
        }),
    }
}

/// An existing data directory keeps its mode; the log says when other
/// users may read it, since `orders.log` holds every live pickup code.
fn warn_if_readable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            "the data directory {} is open to other users (mode {mode:04o}), and its files hold the \
             pickup codes: `chmod 700 {}` keeps them to this user",
            dir.display(),
            dir.display()
        );
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read()
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write()
    }
}
