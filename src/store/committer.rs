//! The committer: the one thread that owns the store's files. It takes all
//! the requests waiting for it and decides them in one batch: lock, read
//! what other processes appended, decide each request against the rules,
//! append (group commit). The fsync runs on a second thread, the syncer, and
//! the committer does not wait for it: it decides and appends the next batch
//! meanwhile, on top of the changes still being synced (a pipeline). Each
//! request is answered when its own batch is durable (a claim that moved the
//! order, as soon as it is decided: see `Request::answers_before_sync`), and
//! only then does the state change and are the observers told, so what
//! anyone reads is durable.
//!
//! The lock on `orders.lock` is held from the first batch until every batch
//! written is durable, so another process only ever reads durable changes;
//! it is let go as soon as the pipeline is empty, and at least every
//! [`HOLD_AT_MOST`] under a steady load, so other processes get their turn.
//! A failed fsync fails its batch and every batch decided on top of it, and
//! cuts the log back to where the failed batch began.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::disk::{Disk, News};
use super::state::{ApplyError, Batch, Change, Request};
use super::{
    FOLLOW_EVERY, Job, LOG, Observer, Origin, Outcome, Reply, Shared, Sorted, StoreError,
    answer_early,
};
use crate::order::Timestamp;
use crate::{durable, metrics};

/// Most requests decided in one batch.
const MAX_BATCH: usize = 1024;
/// How often a store that cannot write tries again by itself (a probe), so
/// that readiness comes back soon after the disk has room again, even when
/// nobody orders meanwhile.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long a probe waits for the lock: a moment, not the requests' wait;
/// a probe that cannot have it fails, and the next one tries again.
const PROBE_LOCK_WAIT: Duration = Duration::from_millis(500);
/// The longest the lock is held without a pause under a steady load: then
/// no new batch starts until the pipeline is empty and the lock let go.
const HOLD_AT_MOST: Duration = Duration::from_millis(10);

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
    /// Wakes the committer when the syncer has finished an fsync.
    pub(super) wake: mpsc::WeakSender<Job>,
}

/// A batch written to the log whose fsync has not finished.
struct InFlight {
    id: u64,
    /// Where its lines start in the log.
    start: u64,
    records: Vec<Change>,
    outcomes: Vec<Outcome>,
    /// `None` where the answer went out already (a claim).
    replies: Vec<Option<Reply>>,
    /// Waiting for everything decided so far to be durable (`Store::settled`).
    settles: Vec<oneshot::Sender<()>>,
    started: Instant,
}

/// The batches in flight, and the lock that covers them.
struct Pipeline {
    in_flight: VecDeque<InFlight>,
    next_id: u64,
    /// Since when this process holds `orders.lock`, if it does.
    held_since: Option<Instant>,
    /// Sends the syncer a batch's id and a handle on the log to fsync.
    to_sync: std_mpsc::Sender<(u64, File)>,
    /// The syncer's answers: every batch up to this id is durable, or failed.
    synced: std_mpsc::Receiver<(u64, Result<(), Arc<io::Error>>)>,
}

/// fsyncs the log for the committer: one fsync for every batch written
/// before it began.
fn syncer(
    batches: std_mpsc::Receiver<(u64, File)>,
    done: std_mpsc::Sender<(u64, Result<(), Arc<io::Error>>)>,
    wake: mpsc::WeakSender<Job>,
) {
    while let Ok((mut up_to, mut log)) = batches.recv() {
        // A compaction, which changes the file, waits for an empty
        // pipeline: every batch here was written to the same log.
        for (id, handle) in batches.try_iter() {
            (up_to, log) = (id, handle);
        }
        let synced = log.sync_data().map_err(Arc::new);
        if done.send((up_to, synced)).is_err() {
            return;
        }
        if let Some(jobs) = wake.upgrade() {
            // A full inbox wakes the committer anyway.
            let _ = jobs.try_send(Job::Follow);
        }
    }
}

impl Committer {
    /// Serves jobs until every handle is gone, then waits for the batches in
    /// flight. Whether the store can write (`Shared::writable`, what
    /// `/readyz` reports) changes only on evidence: a failed batch makes it
    /// false; only a batch that really wrote and fsynced, or a probe that
    /// did, makes it true again. A cycle with nothing to write proves
    /// nothing either way, so readiness never follows the luck of whatever
    /// happened to run last.
    pub(super) fn run(mut self, mut inbox: mpsc::Receiver<Job>) {
        let (to_sync, batches) = std_mpsc::channel();
        let (done, synced) = std_mpsc::channel();
        let wake = self.wake.clone();
        let spawned = std::thread::Builder::new()
            .name("store-syncer".into())
            .spawn(move || syncer(batches, done, wake));
        if let Err(e) = spawned {
            tracing::error!("order store: cannot start the syncer thread: {e}");
            return;
        }
        let mut pipe = Pipeline {
            in_flight: VecDeque::new(),
            next_id: 1,
            held_since: None,
            to_sync,
            synced,
        };
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        let mut last_probe = Instant::now();
        // The follower's jobs wake this loop several times a second, and the
        // syncer's after every fsync.
        while inbox.blocking_recv_many(&mut jobs, MAX_BATCH) > 0 {
            while let Ok((up_to, synced)) = pipe.synced.try_recv() {
                self.completed(&mut pipe, up_to, synced);
            }
            if !self.shared.writable.load(Ordering::Relaxed)
                && pipe.in_flight.is_empty()
                && last_probe.elapsed() >= PROBE_EVERY
            {
                last_probe = Instant::now();
                self.probe(&mut pipe);
            }
            let Sorted {
                requests,
                mut replies,
                settles,
            } = Sorted::take(&mut jobs);
            // After the requests that came with them, when those are written.
            let settle_after = |pipe: &mut Pipeline, settles: Vec<oneshot::Sender<()>>| match pipe
                .in_flight
                .back_mut()
            {
                Some(last) => last.settles.extend(settles),
                None => settles.into_iter().for_each(|done| {
                    let _ = done.send(());
                }),
            };
            if requests.is_empty() {
                settle_after(&mut pipe, settles);
                // Nobody else can write while this process holds the lock.
                if pipe.held_since.is_none() && self.disk.has_news() {
                    self.follow();
                }
                continue;
            }
            if pipe
                .held_since
                .is_some_and(|since| since.elapsed() >= HOLD_AT_MOST)
            {
                self.drain(&mut pipe);
            }
            if let Err(e) = self.start(&mut pipe, &requests, &mut replies) {
                tracing::error!("order store: {e}");
                self.shared.writable.store(false, Ordering::Relaxed);
                last_probe = Instant::now();
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(e.clone()));
                }
                if pipe.in_flight.is_empty() {
                    self.release(&mut pipe);
                }
            }
            settle_after(&mut pipe, settles);
        }
        self.drain(&mut pipe);
    }

    /// Waits until every batch in flight is durable (or failed); the lock
    /// is let go then.
    fn drain(&mut self, pipe: &mut Pipeline) {
        while !pipe.in_flight.is_empty() {
            match pipe.synced.recv() {
                Ok((up_to, synced)) => self.completed(pipe, up_to, synced),
                Err(_) => {
                    let e = StoreError::Stopped;
                    for batch in pipe.in_flight.drain(..) {
                        for reply in batch.replies.into_iter().flatten() {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
        self.release(pipe);
    }

    /// Lets go of the lock, if held: only when nothing is in flight, and
    /// never while the log holds lines a failed cut-back left (other
    /// processes would read them as changes).
    fn release(&mut self, pipe: &mut Pipeline) {
        debug_assert!(pipe.in_flight.is_empty());
        if self.disk.is_uncut() {
            return;
        }
        if pipe.held_since.take().is_some() {
            let _ = fs2::FileExt::unlock(&*self.lock);
        }
    }

    /// Takes the lock (if this process does not hold it already) and
    /// catches up with other processes.
    fn hold(&mut self, pipe: &mut Pipeline) -> Result<(), StoreError> {
        if pipe.held_since.is_some() {
            return Ok(());
        }
        let guard = durable::exclusive(&self.lock, durable::LOCK_WAIT)
            .map_err(|e| StoreError::Busy(e.into()))?;
        // Held until `release`, across calls.
        std::mem::forget(guard);
        pipe.held_since = Some(Instant::now());
        let theirs = self.catch_up();
        if let Err(e) = &theirs {
            self.release(pipe);
            return Err(e.clone());
        }
        self.tell(&theirs.expect("checked"), Origin::Elsewhere);
        Ok(())
    }

    /// Tells the observers about committed changes, without pickup codes.
    fn tell(&self, changes: &[Change], origin: Origin) {
        if changes.is_empty() {
            return;
        }
        let records: Vec<_> = changes.iter().map(Change::record).collect();
        if origin == Origin::Here {
            metrics::committed(records.iter().map(|r| &r.order));
        }
        for observer in &self.observers {
            observer.committed(&records, origin);
        }
    }

    /// Looks for other processes' changes: lock, catch up, unlock.
    fn follow(&mut self) {
        let lock = self.lock.clone();
        let theirs = durable::exclusive(&lock, durable::LOCK_WAIT)
            .map_err(|e| StoreError::Busy(e.into()))
            .and_then(|_held| self.catch_up());
        match theirs {
            Ok(theirs) => self.tell(&theirs, Origin::Elsewhere),
            Err(e) => tracing::warn!("order store: could not read other processes' changes: {e}"),
        }
    }

    /// Tries the disk as a write would: takes the lock (unless a failed
    /// cut-back kept it), finishes that cut-back, and writes, fsyncs and
    /// cuts off a page of `orders.log` itself. Writable again when it works.
    fn probe(&mut self, pipe: &mut Pipeline) {
        if pipe.held_since.is_none() {
            match durable::exclusive(&self.lock, PROBE_LOCK_WAIT) {
                Ok(guard) => {
                    // Held until `release`.
                    std::mem::forget(guard);
                    pipe.held_since = Some(Instant::now());
                }
                Err(e) => {
                    tracing::debug!("order store: still cannot write: the store is busy: {e}");
                    return;
                }
            }
        }
        match self.disk.probe() {
            Ok(()) => {
                tracing::info!("order store: writing works again");
                self.shared.writable.store(true, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!("order store: still cannot write: {e}"),
        }
        self.release(pipe);
    }

    /// Decides a batch on top of the batches in flight and appends it; its
    /// fsync goes to the syncer. Answers the requests that may be answered
    /// before their record is durable (taking them out of `replies`) as soon
    /// as they are decided. On an error nothing of this batch was written.
    fn start(
        &mut self,
        pipe: &mut Pipeline,
        requests: &[Request],
        replies: &mut Vec<Option<Reply>>,
    ) -> Result<(), StoreError> {
        self.hold(pipe)?;
        let started = Instant::now();
        let now = Timestamp::now();
        let (outcomes, ours) = {
            let state = self.shared.read();
            let pending = pipe.in_flight.iter().flat_map(|b| &b.records);
            let mut batch = Batch::on_top(&state, pending);
            let outcomes: Vec<Outcome> = requests.iter().map(|r| batch.decide(r, now)).collect();
            (outcomes, batch.records)
        };
        // Only while writes succeed: when they fail (a full disk), a claim
        // waits for the outcome, so its worker pauses instead of cooking
        // orders that cannot be recorded.
        if self.shared.writable.load(Ordering::Relaxed) {
            answer_early(requests, replies, &outcomes);
        }
        let start = if ours.is_empty() {
            None
        } else {
            let start = self.disk.write(&ours)?;
            match self.disk.sync_handle() {
                Ok(log) => Some((start, log)),
                Err(e) => {
                    self.disk.cut_back(start, ours.len())?;
                    return Err(e);
                }
            }
        };
        let id = pipe.next_id;
        pipe.next_id += 1;
        let batch = InFlight {
            id,
            start: start.as_ref().map_or(0, |(s, _)| *s),
            records: ours,
            outcomes,
            replies: std::mem::take(replies),
            settles: Vec::new(),
            started,
        };
        match start {
            // Nothing to write: it waits only for the batches before it.
            None if pipe.in_flight.is_empty() => self.finish(batch, pipe.held_since.is_some()),
            None => pipe.in_flight.push_back(batch),
            Some((_, log)) => {
                pipe.in_flight.push_back(batch);
                if pipe.to_sync.send((id, log)).is_err() {
                    self.completed(
                        pipe,
                        id,
                        Err(Arc::new(io::Error::other("the syncer has stopped"))),
                    );
                }
            }
        }
        if pipe.in_flight.is_empty() {
            self.compact_and_release(pipe);
        }
        Ok(())
    }

    /// The syncer says every batch up to `up_to` is durable, or that its
    /// fsync failed: then those batches and every batch decided on top of
    /// them fail, and the log is cut back to where the first of them began.
    fn completed(&mut self, pipe: &mut Pipeline, up_to: u64, synced: Result<(), Arc<io::Error>>) {
        match synced {
            Ok(()) => {
                while pipe.in_flight.front().is_some_and(|b| b.id <= up_to) {
                    let batch = pipe.in_flight.pop_front().expect("checked");
                    self.finish(batch, true);
                }
                // Batches with nothing to write that only waited for these.
                while pipe.in_flight.front().is_some_and(|b| b.records.is_empty()) {
                    let batch = pipe.in_flight.pop_front().expect("checked");
                    self.finish(batch, true);
                }
            }
            Err(error) => {
                let Some(first) = pipe.in_flight.front().filter(|b| b.id <= up_to) else {
                    return; // a batch that failed already
                };
                let e = StoreError::Io {
                    path: self.shared.dir.join(LOG),
                    error,
                };
                tracing::error!("order store: {e}");
                self.shared.writable.store(false, Ordering::Relaxed);
                let start = first.start;
                let written: usize = pipe.in_flight.iter().map(|b| b.records.len()).sum();
                let e = match self.disk.cut_back(start, written) {
                    Ok(()) => e,
                    Err(cut) => cut,
                };
                for batch in pipe.in_flight.drain(..) {
                    for reply in batch.replies.into_iter().flatten() {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
        if pipe.in_flight.is_empty() {
            self.compact_and_release(pipe);
        }
    }

    /// A durable batch: into the state, to the observers, and answered.
    fn finish(&mut self, batch: InFlight, durable: bool) {
        let InFlight {
            records,
            outcomes,
            replies,
            settles,
            started,
            ..
        } = batch;
        metrics::store_cycle(outcomes.len(), started.elapsed());
        if !records.is_empty() {
            let mut state = self.shared.write();
            for record in &records {
                state
                    .apply(record)
                    .expect("a change decided against this very state applies");
            }
            drop(state);
            self.disk.durable(&records);
            if durable {
                self.shared.writable.store(true, Ordering::Relaxed);
            }
            self.tell(&records, Origin::Here);
        }
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            if let Some(reply) = reply {
                let _ = reply.send(Ok(outcome));
            }
        }
        for done in settles {
            let _ = done.send(());
        }
    }

    /// With the pipeline empty: compacts if it is time (the lock is still
    /// held), then lets go of the lock.
    fn compact_and_release(&mut self, pipe: &mut Pipeline) {
        if pipe.held_since.is_some() && !self.disk.is_uncut() {
            // Compacting reads the state and fsyncs: under a read lock, so
            // readers go on meanwhile (only this thread ever writes).
            let state = self.shared.read();
            self.disk.maybe_compact(&state);
        }
        self.release(pipe);
    }

    /// Applies what other processes committed since we last looked. The
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
