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
mod log;
pub mod postgres;
mod snapshot;
mod state;
#[doc(hidden)]
pub mod testing;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::{mpsc, oneshot};

pub use disk::{Exported, HISTORY, LOG, SNAPSHOT, export};
pub use state::{Lookup, Outcome, Record, Repeat};

use crate::order::{Order, Status, Ticket};
use crate::pickup::PickupCode;
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
    /// The database (`--database`) cannot be reached or refused a statement;
    /// the message names it without its password.
    #[error("{0}")]
    Database(String),
    #[error("{0}")]
    NoRandomness(String),
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
    /// Look for other processes' changes.
    Follow,
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
    dir: PathBuf,
    state: RwLock<State>,
    /// False from a failed write (a full disk, a lock held elsewhere too
    /// long) until a write or a probe succeeds; see the committer.
    writable: AtomicBool,
}

impl Store {
    /// Opens (or creates) the store in `dir`, checking every file. Must be
    /// called inside a Tokio runtime, which runs the follower; it blocks on
    /// the store's file lock, so async code calls it through `spawn_blocking`.
    pub fn open(dir: &Path, observers: Vec<Arc<dyn Observer>>) -> Result<Store, StoreError> {
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        create_data_dir(dir)?;
        let (lock, disk, state) = disk::open(dir)?;
        for observer in &observers {
            observer.reloaded(state.version, &state.live);
        }
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            state: RwLock::new(state),
            writable: AtomicBool::new(true),
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
            })
            .await?
        {
            Outcome::Changed(order) => Ok((order, code)),
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
    /// delivery. `Unchanged` when it is already READY or further.
    pub async fn claim(&self, ticket: Ticket, worker: Arc<str>) -> Result<Outcome, StoreError> {
        self.submit(Request::Claim { ticket, worker }).await
    }

    /// Notes that the broker confirmed it holds `ticket`.
    pub async fn mark_queued(&self, ticket: Ticket) -> Result<Outcome, StoreError> {
        self.submit(Request::MarkQueued(ticket)).await
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
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(StoreError::Io {
            path: dir.to_owned(),
            error: e.into(),
        }),
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
