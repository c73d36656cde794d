//! The order store: every order in the restaurant, kept in files in the data
//! directory that any number of processes share (see `disk.rs` for the files
//! and how they survive a crash). This module is the only code that touches
//! them.
//!
//! Every change goes through one thread, the committer. It takes all the
//! requests waiting for it and applies them in one cycle: lock, read what
//! other processes appended, decide each request against the rules, append,
//! fsync, unlock (group commit). So a burst of requests costs one fsync, not
//! one each, and two processes can never both collect one order. Between
//! requests it looks for other processes' changes a few times a second, so
//! this process's board also shows what they did.
//!
//! Whoever wants to see changes (the board, the broker's fan-out) registers
//! an [`Observer`]; it is called in version order, after the change is durable.
//!
//! The state sits behind a `parking_lot` lock that only the committer
//! writes, for as long as applying a batch takes; a compaction's fsyncs run
//! under a read lock, so `GET /orders/N` and the sweep never wait for them.

mod disk;
mod state;
#[doc(hidden)]
pub mod testing;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::{mpsc, oneshot};

pub use disk::{HISTORY, LOG, SNAPSHOT};
pub use state::{Lookup, Outcome, Record, Repeat};

use crate::durable;
use crate::order::{Order, Status, Ticket, Timestamp};
use disk::{Disk, News};
use state::{ApplyError, Batch, Request, State};

/// Most requests decided in one cycle.
const MAX_BATCH: usize = 1024;
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
    #[error("the order store is busy: {0}")]
    Busy(Arc<io::Error>),
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: Arc<io::Error>,
    },
    #[error("the order store has stopped")]
    Stopped,
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
    /// False while writes fail (a full disk, a lock held elsewhere too long).
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
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
            path: dir.to_owned(),
            error: e.into(),
        })?;
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

    /// Records a new order, `TAKEN`.
    pub async fn record(&self, ticket: Ticket, content: String) -> Result<Order, StoreError> {
        match self.submit(Request::Record { ticket, content }).await? {
            Outcome::Changed(order) => Ok(order),
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

    /// The highest ticket number the store has ever held.
    pub fn highest_ticket(&self) -> Ticket {
        self.read().highest
    }

    /// Whether the last write cycle succeeded.
    pub fn is_writable(&self) -> bool {
        self.shared.writable.load(Ordering::Relaxed)
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.shared.state.read()
    }
}

/// Asks the committer to look for other processes' changes, until the store
/// is dropped.
async fn follow(jobs: mpsc::WeakSender<Job>) {
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(jobs) = jobs.upgrade() else { return };
        // A full inbox means a cycle is coming anyway, and it catches up too.
        let _ = jobs.try_send(Job::Follow);
    }
}

/// The thread that owns the files.
struct Committer {
    /// `orders.lock` (shared so a held lock does not borrow the committer).
    lock: Arc<std::fs::File>,
    disk: Disk,
    shared: Arc<Shared>,
    observers: Vec<Arc<dyn Observer>>,
}

impl Committer {
    fn run(mut self, mut inbox: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while inbox.blocking_recv_many(&mut jobs, MAX_BATCH) > 0 {
            let mut requests = Vec::with_capacity(jobs.len());
            let mut replies = Vec::with_capacity(jobs.len());
            for job in jobs.drain(..) {
                if let Job::Change(request, reply) = job {
                    requests.push(request);
                    replies.push(Some(reply));
                }
            }
            if requests.is_empty() && !self.disk.has_news() {
                continue;
            }
            match self.cycle(&requests, &mut replies) {
                Ok(outcomes) => {
                    self.shared.writable.store(true, Ordering::Relaxed);
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        if let Some(reply) = reply {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                }
                Err(e) => {
                    tracing::error!("order store: {e}");
                    self.shared.writable.store(false, Ordering::Relaxed);
                    for reply in replies.into_iter().flatten() {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// One lock/catch-up/decide/append/fsync/unlock cycle. Replies to the
    /// requests that may be answered before their record is durable are sent
    /// (and taken out of `replies`) as soon as they are decided.
    fn cycle(
        &mut self,
        requests: &[Request],
        replies: &mut [Option<Reply>],
    ) -> Result<Vec<Outcome>, StoreError> {
        let lock = self.lock.clone();
        let held = durable::exclusive(&lock, durable::LOCK_WAIT)
            .map_err(|e| StoreError::Busy(e.into()))?;

        let theirs = self.catch_up()?;
        let now = Timestamp::now();
        let (outcomes, ours) = {
            let state = self.shared.read();
            let mut batch = Batch::new(&state);
            let outcomes: Vec<Outcome> = requests.iter().map(|r| batch.decide(r, now)).collect();
            (outcomes, batch.records)
        };
        // Only while writes succeed: when they fail (a full disk), a claim
        // waits for the outcome, so its worker pauses instead of cooking
        // orders that cannot be recorded.
        let early = self.shared.writable.load(Ordering::Relaxed);
        for ((request, reply), outcome) in requests.iter().zip(replies.iter_mut()).zip(&outcomes) {
            if early
                && request.answers_before_sync()
                && let Some(reply) = reply.take()
            {
                let _ = reply.send(Ok(outcome.clone()));
            }
        }
        let appended = if ours.is_empty() {
            Ok(())
        } else {
            self.disk.append(&ours)
        };
        if appended.is_ok() && !ours.is_empty() {
            let mut state = self.shared.write();
            for record in &ours {
                state
                    .apply(record)
                    .expect("a change decided against this very state applies");
            }
            // Compacting reads the state and fsyncs: under a read lock, so
            // readers go on meanwhile (only this thread ever writes).
            let state = RwLockWriteGuard::downgrade(state);
            self.disk.maybe_compact(&state);
        }
        drop(held);

        // Their changes are in the state even when ours failed to append:
        // observers must see them now, or the board misses them for good.
        let ours = if appended.is_ok() { ours } else { Vec::new() };
        for observer in &self.observers {
            if !theirs.is_empty() {
                observer.committed(&theirs, Origin::Elsewhere);
            }
            if !ours.is_empty() {
                observer.committed(&ours, Origin::Here);
            }
        }
        appended.map(|()| outcomes)
    }

    /// Applies what other processes committed since our last cycle. The
    /// caller holds the lock.
    fn catch_up(&mut self) -> Result<Vec<Record>, StoreError> {
        let version = self.shared.read().version;
        if let News::Records(theirs) = self.disk.catch_up(version)? {
            let mut state = self.shared.write();
            let mut applied = 0;
            for record in &theirs {
                match state.apply(record) {
                    Ok(()) => applied += 1,
                    Err(ApplyError::Gap { .. }) => break,
                    Err(e) => {
                        return Err(StoreError::Corrupt {
                            path: self.shared.dir.join(LOG),
                            what: format!(
                                "another process wrote a change that breaks the rules: {e}"
                            ),
                        });
                    }
                }
            }
            if applied == theirs.len() {
                return Ok(theirs);
            }
        }
        // We missed changes that were compacted away: start again from the files.
        let (disk, state) = Disk::load(&self.shared.dir)?;
        self.disk = disk;
        for observer in &self.observers {
            observer.reloaded(state.version, &state.live);
        }
        *self.shared.write() = state;
        Ok(Vec::new())
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
