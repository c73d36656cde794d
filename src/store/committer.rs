//! The committer: the one thread that owns the store's files. It takes all
//! the requests waiting for it and applies them in one cycle: lock, read
//! what other processes appended, decide each request against the rules,
//! append, fsync, unlock (group commit); then it tells the observers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::RwLockWriteGuard;
use tokio::sync::mpsc;

use super::disk::{Disk, News};
use super::state::{ApplyError, Batch, Change, Request};
use super::{FOLLOW_EVERY, Job, LOG, Observer, Origin, Outcome, Reply, Shared, StoreError};
use crate::order::Timestamp;
use crate::{durable, metrics};

/// Most requests decided in one cycle.
const MAX_BATCH: usize = 1024;
/// How often a store that cannot write tries again by itself (a probe), so
/// that readiness comes back soon after the disk has room again, even when
/// nobody orders meanwhile.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long a probe waits for the lock: a moment, not the requests' wait;
/// a probe that cannot have it fails, and the next one tries again.
const PROBE_LOCK_WAIT: Duration = Duration::from_millis(500);

/// Asks the committer to look for other processes' changes, until the store
/// is dropped.
pub(super) async fn follow(jobs: mpsc::WeakSender<Job>) {
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
pub(super) struct Committer {
    /// `orders.lock` (shared so a held lock does not borrow the committer).
    pub(super) lock: Arc<std::fs::File>,
    pub(super) disk: Disk,
    pub(super) shared: Arc<Shared>,
    pub(super) observers: Vec<Arc<dyn Observer>>,
}

impl Committer {
    /// Serves jobs until every handle is gone. Whether the store can write
    /// (`Shared::writable`, what `/readyz` reports) changes only on evidence:
    /// a failed cycle makes it false; only a cycle that really wrote and
    /// fsynced, or a probe that did, makes it true again. A cycle with
    /// nothing to write proves nothing either way, so readiness never
    /// follows the luck of whatever happened to run last.
    pub(super) fn run(mut self, mut inbox: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        let mut last_probe = Instant::now();
        // The follower's jobs wake this loop several times a second.
        while inbox.blocking_recv_many(&mut jobs, MAX_BATCH) > 0 {
            if !self.shared.writable.load(Ordering::Relaxed) && last_probe.elapsed() >= PROBE_EVERY
            {
                last_probe = Instant::now();
                self.probe();
            }
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
            let started = std::time::Instant::now();
            let cycled = self.cycle(&requests, &mut replies);
            if !requests.is_empty() {
                metrics::store_cycle(requests.len(), started.elapsed());
            }
            match cycled {
                Ok((outcomes, wrote)) => {
                    if wrote {
                        self.shared.writable.store(true, Ordering::Relaxed);
                    }
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        if let Some(reply) = reply {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                }
                Err(e) => {
                    tracing::error!("order store: {e}");
                    self.shared.writable.store(false, Ordering::Relaxed);
                    last_probe = Instant::now();
                    for reply in replies.into_iter().flatten() {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Tries the disk as a write would: takes the lock, writes and fsyncs a
    /// probe file. Writable again when it works.
    fn probe(&mut self) {
        let lock = self.lock.clone();
        let probed = durable::exclusive(&lock, PROBE_LOCK_WAIT)
            .map_err(|e| StoreError::Busy(e.into()))
            .and_then(|_held| self.disk.probe());
        match probed {
            Ok(()) => {
                tracing::info!("order store: writing works again");
                self.shared.writable.store(true, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!("order store: still cannot write: {e}"),
        }
    }

    /// One lock/catch-up/decide/append/fsync/unlock cycle. Replies to the
    /// requests that may be answered before their record is durable are sent
    /// (and taken out of `replies`) as soon as they are decided. With the
    /// outcomes: whether it wrote anything (and so proved the disk works).
    fn cycle(
        &mut self,
        requests: &[Request],
        replies: &mut [Option<Reply>],
    ) -> Result<(Vec<Outcome>, bool), StoreError> {
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
        // Observers get the records without their pickup codes.
        let ours: Vec<_> = match appended {
            Ok(()) => ours.iter().map(Change::record).collect(),
            Err(_) => Vec::new(),
        };
        let theirs: Vec<_> = theirs.iter().map(Change::record).collect();
        metrics::committed(ours.iter().map(|r| &r.order));
        for observer in &self.observers {
            if !theirs.is_empty() {
                observer.committed(&theirs, Origin::Elsewhere);
            }
            if !ours.is_empty() {
                observer.committed(&ours, Origin::Here);
            }
        }
        let wrote = !ours.is_empty();
        appended.map(|()| (outcomes, wrote))
    }

    /// Applies what other processes committed since our last cycle. The
    /// caller holds the lock.
    fn catch_up(&mut self) -> Result<Vec<Change>, StoreError> {
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
