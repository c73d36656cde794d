//! The task that owns the store's tables: it consumes the same jobs as the
//! file committer and decides each batch with the same rules
//! ([`Batch`]), then persists what they decided, in one transaction per
//! batch, sent as three messages without waiting between them:
//!
//! 1. `begin; select pg_advisory_xact_lock(K)`: one batch at a time in the
//!    whole restaurant, whatever the number of processes;
//! 2. [`WRITE`], one statement: if the log still ends where the batch was
//!    decided (its *base*), insert the changes, upsert the orders,
//!    `pg_notify`; otherwise write nothing;
//! 3. `commit`; then apply, tell the observers, answer (a first claim
//!    is answered as soon as it is decided, see `Committer::decide`).
//!
//! The batches are pipelined: the next one is decided (on top of the ones
//! in flight, [`Batch::on_top`]) and sent while the ones before it commit.
//! One connection runs them in the order they were sent, and the lock is
//! let go only once a commit is visible, so versions commit in order: a
//! reader of `version > v` sees a prefix of the log, never a hole that
//! fills later. A batch decided on top of another writes only if that one
//! wrote (the session setting `fastfood.top`, which a rollback undoes, says
//! where this session's last write ended) and nobody else wrote since. A
//! batch that finds the log moved (another process wrote) writes nothing;
//! it and the ones sent after it are decided again the slow way: lock, read
//! the others' changes, decide, write, commit, waiting for each.
//!
//! Between batches the task follows the log without the lock, woken by
//! `LISTEN` (and a poll, in case a notification is lost with a connection).
//! A follower that finds the log pruned above its version reloads the
//! orders, as at start. The pruning itself is the [`super::pruner`]'s,
//! asked for by the batch whose versions cross a step.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Statement};

use super::database;
use super::link::{CHANNEL, Link, STATEMENT_TIMEOUT, said};
use crate::metrics;
use crate::order::{Order, Status, Timestamp};
use crate::pickup::PickupCode;
use crate::store::state::{ApplyError, Batch, Change, Request, State};
use crate::store::{
    Job, Observer, Origin, Outcome, Reply, Shared, Sorted, StoreError, answer_early,
};

/// Most requests decided in one batch.
const MAX_BATCH: usize = 1024;
/// Most batches sent and not yet committed: enough to keep the database
/// busy while the answers of the first travel back. The session commits
/// them one after the other, so more only makes each batch smaller: 2 gave
/// 10-20 % more `/order`s than 3 here, and 1 fewer.
const MAX_IN_FLIGHT: usize = 2;
/// The longest one batch's transaction may take, every round trip of it.
const BATCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Held by the transaction of each batch.
pub(super) const BATCH_LOCK: i64 = 0x6661_7374_666f_6f03;
/// Most changes read in one catch-up (a long outage catches up in steps).
const FOLLOW_AT_MOST: i64 = 10_000;
/// The log is pruned in steps of a quarter of what it keeps, at most this
/// many versions, not at every batch.
const PRUNE_STEP: u64 = 1024;

const CATCH_UP: &str = "select version, body::text, pickup_code from fastfood_changes \
     where version > $1 order by version limit $2";

/// Every order and the log's last version, in one statement, so in one
/// snapshot (a transaction of its own, or under the batch lock).
const LOAD: &str = "select null::text, null::text, coalesce(max(version), 0)::bigint \
     from fastfood_changes \
     union all select body::text, pickup_code, null from fastfood_orders";

/// A batch's whole write, in one statement (one round trip, and no wait
/// when pipelined): the guard, every change, the orders' new rows and the
/// notice. Returns where the log ended before,
/// and whether it wrote. The guard: the log ends at `$12` (the version the
/// batch was decided on), and, for a batch decided on top of another sent
/// before it on this session, that one wrote (`fastfood.top` is `$13`).
/// A batch of no changes runs it too: its answers hold only if the guard
/// passes.
pub(super) const WRITE: &str = "
with top as (
    select coalesce(max(version), 0)::bigint as v from fastfood_changes
), go as (
    select from top
    where top.v = $12::bigint
      and ($13::text is null or current_setting('fastfood.top', true) = $13::text)
), changes as (
    insert into fastfood_changes (version, ticket, body, pickup_code)
    select v, t, b::jsonb, p
    from unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) as u(v, t, b, p)
    where exists (select from go)
), orders as (
    insert into fastfood_orders (ticket, status, body, pickup_code, version)
    select t, s, b::jsonb, p, v
    from unnest($5::bigint[], $6::text[], $7::text[], $8::text[], $9::bigint[]) as u(t, s, b, p, v)
    where exists (select from go)
    on conflict (ticket) do update set
        status = excluded.status,
        body = excluded.body,
        version = excluded.version,
        pickup_code = case when excluded.status in ('COLLECTED', 'CANCELLED') then null
                           else coalesce(excluded.pickup_code, fastfood_orders.pickup_code) end
)
select (select v from top),
       exists (select from go),
       case when exists (select from go) then set_config('fastfood.top', $11, false) end,
       case when exists (select from go) and cardinality($1::bigint[]) > 0
            then pg_notify($10, $11)::text end";

/// The statements, prepared once per connection.
struct Prepared {
    connection: u64,
    catch_up: Statement,
    write: Statement,
    load: Statement,
}

/// What a batch's transaction came to.
enum Written {
    /// Committed.
    Yes,
    /// Committed nothing: the log had moved (or a batch before it failed).
    Moved,
}

/// A batch sent, its transaction not yet answered.
struct InFlight {
    transaction: Option<JoinHandle<Result<Written, tokio_postgres::Error>>>,
    /// What the transaction came to, once answered.
    answer: Option<Result<Written, StoreError>>,
    requests: Vec<Request>,
    /// `None` for a request answered before its commit (a first claim).
    replies: Vec<Option<Reply>>,
    records: Vec<Change>,
    outcomes: Vec<Outcome>,
    settles: Vec<oneshot::Sender<()>>,
    started: Instant,
}

impl InFlight {
    fn abort(&self) {
        if let Some(t) = &self.transaction {
            t.abort();
        }
    }
}

pub(super) struct Committer {
    link: Link,
    shared: Arc<Shared>,
    observers: Vec<Arc<dyn Observer>>,
    prepared: Option<Prepared>,
    /// The log keeps the last this many versions.
    keep: u64,
    in_flight: VecDeque<InFlight>,
    /// Told where the log may be pruned to.
    pruner: watch::Sender<u64>,
    /// Decided while every place in flight was taken: sent, as one batch,
    /// when a place frees.
    ahead: Option<InFlight>,
    /// Whether a first claim is answered as soon as it is decided: only
    /// for a process alone on the database (see [`Committer::decide`]).
    claims_early: bool,
}

/// Loads the orders (live, collected, cancelled) and the version, in one
/// snapshot.
pub(super) async fn load(client: &Client, shown: &str) -> Result<State, StoreError> {
    let rows = client
        .query(LOAD, &[])
        .await
        .map_err(|e| database(shown, said(&e)))?;
    state_of(shown, &rows)
}

/// The state the rows of [`LOAD`] describe.
fn state_of(shown: &str, rows: &[tokio_postgres::Row]) -> Result<State, StoreError> {
    let mut state = State::default();
    for row in rows {
        let body: Option<String> = row.get(0);
        let Some(body) = body else {
            let version: i64 = row.get(2);
            state.version = version as u64;
            continue;
        };
        let order: Order = serde_json::from_str(&body)
            .map_err(|e| database(shown, format!("an order row that does not parse: {e}")))?;
        let t = order.ticket;
        state.highest = state.highest.max(t);
        match order.status {
            Status::Collected => state.collected.insert(t),
            Status::Cancelled => state.cancelled.insert(t),
            _ => {
                let code: Option<String> = row.get(1);
                if let Some(code) = code.as_deref().and_then(PickupCode::parse) {
                    state.codes.insert(t, code);
                }
                state.live.insert(t, order);
            }
        }
    }
    Ok(state)
}

/// A change row as read back.
fn change(shown: &str, row: &tokio_postgres::Row) -> Result<Change, StoreError> {
    let version: i64 = row.get(0);
    let body: String = row.get(1);
    let code: Option<String> = row.get(2);
    let order = serde_json::from_str(&body).map_err(|e| {
        database(
            shown,
            format!("change {version} does not parse as an order: {e}"),
        )
    })?;
    Ok(Change {
        version: version as u64,
        order,
        pickup_code: code.as_deref().and_then(PickupCode::parse),
    })
}

/// Polls `future` once, here: whatever it sends on its first poll is sent
/// now, in the order of the calls.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}

impl Committer {
    pub(super) fn new(
        link: Link,
        shared: Arc<Shared>,
        observers: Vec<Arc<dyn Observer>>,
        keep: u64,
        pruner: watch::Sender<u64>,
        alone: bool,
    ) -> Self {
        Committer {
            link,
            shared,
            observers,
            prepared: None,
            keep: keep.max(1),
            in_flight: VecDeque::new(),
            pruner,
            ahead: None,
            claims_early: alone,
        }
    }

    /// Serves jobs until every handle is gone, then waits for the batches
    /// in flight.
    pub(super) async fn run(mut self, mut inbox: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        loop {
            let room = self.in_flight.len() < MAX_IN_FLIGHT;
            // What waits for room (none while there is room) may grow to a
            // batch; never asked for none, which `recv_many` would take
            // for a closed inbox.
            let ahead = self.ahead.as_ref().map_or(0, |a| a.requests.len());
            let take = MAX_BATCH.saturating_sub(ahead).max(1);
            tokio::select! {
                biased;
                () = self.oldest_answered(), if !self.in_flight.is_empty() => {
                    self.finish_oldest().await;
                    self.send_ahead().await;
                }
                n = inbox.recv_many(&mut jobs, take), if room || ahead < MAX_BATCH => {
                    if n == 0 {
                        break;
                    }
                    self.serve(&mut jobs, room).await;
                }
            }
        }
        while !self.in_flight.is_empty() || self.ahead.is_some() {
            self.oldest_answered().await;
            self.finish_oldest().await;
            self.send_ahead().await;
        }
    }

    /// Returns once the oldest batch in flight is answered or overran.
    async fn oldest_answered(&mut self) {
        let Some(oldest) = self.in_flight.front_mut() else {
            return;
        };
        if oldest.answer.is_some() {
            return;
        }
        let Some(t) = oldest.transaction.as_mut() else {
            return;
        };
        let deadline = tokio::time::Instant::from_std(oldest.started + BATCH_TIMEOUT);
        if let Ok(answered) = tokio::time::timeout_at(deadline, t).await {
            let shown = self.link.shown();
            oldest.answer = Some(
                answered
                    .map_err(|e| database(shown, format!("a batch's task ended: {e}")))
                    .and_then(|r| r.map_err(|e| database(shown, said(&e)))),
            );
        }
    }

    /// Takes the jobs: decides them, and sends them as a batch if there is
    /// room in flight, or adds them to the batch that waits for room;
    /// or, with no change asked for, follows the log.
    async fn serve(&mut self, jobs: &mut Vec<Job>, room: bool) {
        // Every answer but a first claim's goes out after its commit, and
        // a change asked for before a settle is committed (or failed) once
        // this batch is.
        let Sorted {
            requests,
            replies,
            settles,
        } = Sorted::take(jobs);
        if requests.is_empty() {
            match self.ahead.as_mut().or(self.in_flight.back_mut()) {
                Some(last) => last.settles.extend(settles),
                None => {
                    for done in settles {
                        let _ = done.send(());
                    }
                    self.follow().await;
                }
            }
            return;
        }
        self.decide(requests, replies, settles);
        if room {
            self.send_ahead().await;
        }
    }

    /// Decides requests on top of the batches in flight and of the one
    /// waiting for room, and adds them to that one.
    ///
    /// A process alone on the database (the in-process queue, whose
    /// exclusive lock keeps every other fastfood process out) answers a
    /// first claim now, as the file store answers it before its fsync
    /// (`Request::answers_before_sync`): its worker cooks while the claim
    /// commits, and its READY comes in the same batch or a later one of
    /// this session, committed with it, after it, or not at all. Should the
    /// commit fail, the order is TAKEN again and the READY finds it so: the
    /// worker gives it back. Only alone: with other processes writing, a
    /// batch whose guard fails is decided again, and a claim decided on
    /// what this process knew (TAKEN: a first claim) can then come out a
    /// claim again (another worker had it), whose delivery count is what
    /// sets a poison order aside. And only while writes succeed: otherwise
    /// a worker waits, instead of cooking orders that cannot be recorded.
    fn decide(
        &mut self,
        requests: Vec<Request>,
        mut replies: Vec<Option<Reply>>,
        settles: Vec<oneshot::Sender<()>>,
    ) {
        let now = Timestamp::now();
        let (outcomes, records) = {
            let state = self.shared.read();
            let pending = self
                .in_flight
                .iter()
                .chain(&self.ahead)
                .flat_map(|b| &b.records);
            let mut batch = Batch::on_top(&state, pending);
            let outcomes: Vec<Outcome> = requests.iter().map(|r| batch.decide(r, now)).collect();
            (outcomes, batch.records)
        };
        if self.claims_early && self.shared.writable.load(Ordering::Relaxed) {
            answer_early(&requests, &mut replies, &outcomes);
        }
        let ahead = self.ahead.get_or_insert_with(|| InFlight {
            transaction: None,
            answer: None,
            requests: Vec::new(),
            replies: Vec::new(),
            records: Vec::new(),
            outcomes: Vec::new(),
            settles: Vec::new(),
            started: Instant::now(),
        });
        ahead.requests.extend(requests);
        ahead.replies.extend(replies);
        ahead.records.extend(records);
        ahead.outcomes.extend(outcomes);
        ahead.settles.extend(settles);
    }

    /// Sends the batch that waits, if any and if there is room in flight.
    async fn send_ahead(&mut self) {
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            return;
        }
        let Some(batch) = self.ahead.take() else {
            return;
        };
        if let Err((e, batch)) = self.send(batch).await {
            // Nothing of it was sent; the batches before it go on.
            self.failed(&e);
            answer_failed(batch.replies, batch.settles, &e);
        }
    }

    /// Sends a decided batch's transaction, behind the ones in flight. On
    /// an error nothing was sent, and the batch comes back.
    async fn send(&mut self, mut batch: InFlight) -> Result<(), (StoreError, InFlight)> {
        let connected = self.connection().await;
        let (client, write) = match connected {
            Ok((client, prepared)) => (client.clone(), prepared.write.clone()),
            Err(e) => return Err((e, batch)),
        };
        // The log's end the batch was decided on: the batches in flight
        // are all of this process's changes not yet applied.
        let base = self.shared.read().version
            + self
                .in_flight
                .iter()
                .map(|b| b.records.len() as u64)
                .sum::<u64>();
        // Sent even when it changes nothing: its answers (a claim of an
        // order this process has not seen yet, a refusal) hold only if the
        // log still ends at `base` under the lock, as the guard checks.
        // On top of a batch in flight: only if that one wrote.
        let after = self
            .in_flight
            .iter()
            .any(|b| !b.records.is_empty())
            .then(|| base.to_string());
        let rows = Rows::of(&batch.records);
        let guard = Guard { base, after };
        let begin = format!("begin; select pg_advisory_xact_lock({BATCH_LOCK})");
        let mut transaction = Box::pin(async move {
            let (begun, written, committed) = futures_util::future::join3(
                client.batch_execute(&begin),
                rows.write(&client, &write, &guard),
                client.batch_execute("commit"),
            )
            .await;
            begun?;
            let (_, wrote) = written?;
            committed?;
            Ok(if wrote { Written::Yes } else { Written::Moved })
        });
        // Sent now, behind the batches before it, whatever the scheduler
        // does with the task.
        let transaction = match poll_once(&mut transaction).await {
            Poll::Ready(done) => tokio::spawn(async move { done }),
            Poll::Pending => tokio::spawn(transaction),
        };
        batch.transaction = Some(transaction);
        batch.started = Instant::now();
        self.in_flight.push_back(batch);
        Ok(())
    }

    /// Asks the pruner to delete what the log no longer keeps, if this
    /// batch's changes (committed) crossed a step.
    fn prune_after(&self, committed: &[Change]) {
        let (Some(first), Some(last)) = (committed.first(), committed.last()) else {
            return;
        };
        let to = self.prune_to(first.version - 1, last.version);
        if to > 0 {
            self.pruner.send_replace(to);
        }
    }

    /// Where the log is pruned to by a batch that takes it from `from` to
    /// `to`: every step (see [`PRUNE_STEP`]), what is older than the last
    /// `keep`; otherwise 0 (nothing). So the log holds at most `keep`, a
    /// step and a batch (and, for a moment, what the pruner is deleting).
    fn prune_to(&self, from: u64, to: u64) -> u64 {
        let step = (self.keep / 4).clamp(1, PRUNE_STEP);
        let edge = |v: u64| v.saturating_sub(self.keep) / step;
        if edge(to) > edge(from) {
            to.saturating_sub(self.keep)
        } else {
            0
        }
    }

    /// The oldest batch in flight was answered (or overran): answers its
    /// requests, or decides them again if the log had moved.
    async fn finish_oldest(&mut self) {
        let Some(mut oldest) = self.in_flight.pop_front() else {
            return;
        };
        let answered = match (oldest.transaction.take(), oldest.answer.take()) {
            (None, _) => Ok(Written::Yes),
            (Some(_), Some(answer)) => answer,
            (Some(t), None) => {
                t.abort();
                Err(database(
                    self.link.shown(),
                    format!("a batch took longer than {BATCH_TIMEOUT:?}; it was abandoned"),
                ))
            }
        };
        match answered {
            Ok(Written::Yes) => {
                metrics::store_cycle(oldest.outcomes.len(), oldest.started.elapsed());
                self.apply(&oldest.records, Origin::Here);
                self.prune_after(&oldest.records);
                if !oldest.records.is_empty() {
                    self.shared.writable.store(true, Ordering::Relaxed);
                }
                for (reply, outcome) in oldest.replies.into_iter().zip(oldest.outcomes) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                for done in oldest.settles {
                    let _ = done.send(());
                }
            }
            Ok(Written::Moved) => {
                // Every batch after it was decided on top of it: none of
                // them writes either. Once they are all answered, decide
                // them all again, under the lock.
                let mut again = vec![oldest];
                while let Some(mut next) = self.in_flight.pop_front() {
                    if let Some(t) = next.transaction.take() {
                        let deadline = tokio::time::Instant::from_std(next.started + BATCH_TIMEOUT);
                        if tokio::time::timeout_at(deadline, t).await.is_err() {
                            tracing::debug!("order store: a batch after a moved one overran");
                        }
                    }
                    again.push(next);
                }
                // And the batch waiting for room, decided on top of them.
                again.extend(self.ahead.take());
                let mut requests = Vec::new();
                let mut replies = Vec::new();
                let mut settles = Vec::new();
                for batch in again {
                    requests.extend(batch.requests);
                    replies.extend(batch.replies);
                    settles.extend(batch.settles);
                }
                self.decide_under_lock(requests, replies, settles).await;
            }
            Err(e) => {
                // The connection goes, and with it whatever it had not
                // committed: every batch after this one fails with it.
                self.failed(&e);
                answer_failed(oldest.replies, oldest.settles, &e);
                for next in self.in_flight.drain(..) {
                    next.abort();
                    answer_failed(next.replies, next.settles, &e);
                }
                // Decided on top of what failed.
                if let Some(ahead) = self.ahead.take() {
                    answer_failed(ahead.replies, ahead.settles, &e);
                }
            }
        }
    }

    /// The slow way, with nothing in flight: lock, read the others'
    /// changes, decide, write, commit, each waited for.
    async fn decide_under_lock(
        &mut self,
        requests: Vec<Request>,
        replies: Vec<Option<Reply>>,
        settles: Vec<oneshot::Sender<()>>,
    ) {
        let started = Instant::now();
        let committed = tokio::time::timeout(BATCH_TIMEOUT, self.commit_locked(&requests))
            .await
            .unwrap_or_else(|_| {
                Err(database(
                    self.link.shown(),
                    format!("a batch took longer than {BATCH_TIMEOUT:?}; it was abandoned"),
                ))
            });
        match committed {
            Ok((ours, outcomes)) => {
                metrics::store_cycle(outcomes.len(), started.elapsed());
                self.apply(&ours, Origin::Here);
                self.prune_after(&ours);
                self.shared.writable.store(true, Ordering::Relaxed);
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                for done in settles {
                    let _ = done.send(());
                }
            }
            Err(e) => {
                self.failed(&e);
                answer_failed(replies, settles, &e);
            }
        }
    }

    /// A batch or a catch-up failed: the connection is dropped (the server
    /// rolls back whatever it held) and made again with backoff.
    fn failed(&mut self, e: &StoreError) {
        if self.shared.writable.swap(false, Ordering::Relaxed) {
            tracing::error!("order store: {e}");
        } else {
            tracing::debug!("order store: {e}");
        }
        self.prepared = None;
        self.link.lost();
    }

    /// The connection and its prepared statements.
    async fn connection(&mut self) -> Result<(&Arc<Client>, &Prepared), StoreError> {
        let shown = self.link.shown().to_owned();
        let (client, generation) = self.link.client().await?;
        if self
            .prepared
            .as_ref()
            .is_none_or(|p| p.connection != generation)
        {
            let fail = |e: tokio_postgres::Error| database(&shown, said(&e));
            let catch_up = client.prepare(CATCH_UP).await.map_err(fail)?;
            let write = client.prepare(WRITE).await.map_err(fail)?;
            let load = client.prepare(LOAD).await.map_err(fail)?;
            self.prepared = Some(Prepared {
                connection: generation,
                catch_up,
                write,
                load,
            });
        }
        Ok((client, self.prepared.as_ref().expect("prepared")))
    }

    /// Reads the changes other processes committed since this one's
    /// version, and applies them. Under the batch lock the read is
    /// complete; without it, what is read is still a prefix of the log.
    /// A log pruned above this version (this process fell further behind
    /// than it keeps) means the orders are loaded again, as at start.
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        let shown = self.link.shown().to_owned();
        loop {
            let version = self.shared.read().version;
            let (client, prepared) = self.connection().await?;
            let rows = client
                .query(&prepared.catch_up, &[&(version as i64), &FOLLOW_AT_MOST])
                .await
                .map_err(|e| database(&shown, said(&e)))?;
            let theirs = rows
                .iter()
                .map(|row| change(&shown, row))
                .collect::<Result<Vec<_>, _>>()?;
            if theirs.first().is_some_and(|c| c.version > version + 1) {
                return self.reload().await;
            }
            let complete = (theirs.len() as i64) < FOLLOW_AT_MOST;
            self.apply(&theirs, Origin::Elsewhere);
            if complete {
                return Ok(());
            }
        }
    }

    /// Loads the orders again: the changes this process missed were pruned.
    async fn reload(&mut self) -> Result<(), StoreError> {
        let shown = self.link.shown().to_owned();
        let (client, prepared) = self.connection().await?;
        let rows = client
            .query(&prepared.load, &[])
            .await
            .map_err(|e| database(&shown, said(&e)))?;
        let state = state_of(&shown, &rows)?;
        tracing::info!(
            "order store: changes up to {} were pruned before this process read them; \
             the orders were loaded again",
            state.version
        );
        for observer in &self.observers {
            observer.reloaded(state.version, &state.live);
        }
        *self.shared.write() = state;
        Ok(())
    }

    /// Applies committed changes to the state and tells the observers. A
    /// change already applied is skipped; a gap (which the lock makes
    /// impossible) stops there: the rest comes with the next catch-up.
    fn apply(&self, changes: &[Change], origin: Origin) {
        if changes.is_empty() {
            return;
        }
        let mut records = Vec::with_capacity(changes.len());
        {
            let mut state = self.shared.write();
            for change in changes {
                if change.version <= state.version {
                    continue;
                }
                match state.apply(change) {
                    Ok(()) => records.push(change.record()),
                    Err(e @ ApplyError::Gap { .. }) => {
                        tracing::warn!("order store: {e}; reading them again");
                        break;
                    }
                    Err(e) => {
                        tracing::error!(
                            "order store: change {} in the database breaks the rules: {e}",
                            change.version
                        );
                        break;
                    }
                }
            }
        }
        if records.is_empty() {
            return;
        }
        if origin == Origin::Here {
            metrics::committed(records.iter().map(|r| &r.order));
        }
        for observer in &self.observers {
            observer.committed(&records, origin);
        }
    }

    /// Follows the log between batches.
    async fn follow(&mut self) {
        let followed =
            tokio::time::timeout(STATEMENT_TIMEOUT + Duration::from_secs(1), self.catch_up())
                .await
                .unwrap_or_else(|_| {
                    Err(database(
                        self.link.shown(),
                        "reading the changes took too long",
                    ))
                });
        match followed {
            Ok(()) => {
                // Only a primary is connected to, so a database that answers
                // takes writes: ready again.
                if !self.shared.writable.swap(true, Ordering::Relaxed) {
                    tracing::info!("order store: the database answers again");
                }
            }
            Err(e) => self.failed(&e),
        }
    }

    /// One batch, one transaction, nothing else in flight: lock, catch up,
    /// decide, write, commit.
    async fn commit_locked(
        &mut self,
        requests: &[Request],
    ) -> Result<(Vec<Change>, Vec<Outcome>), StoreError> {
        let shown = self.link.shown().to_owned();
        let fail = |e: tokio_postgres::Error| database(&shown, said(&e));
        {
            let (client, _) = self.connection().await?;
            client
                .batch_execute(&format!(
                    "begin; select pg_advisory_xact_lock({BATCH_LOCK})"
                ))
                .await
                .map_err(fail)?;
        }
        self.catch_up().await?;
        let now = Timestamp::now();
        let (outcomes, ours, base) = {
            let state = self.shared.read();
            let mut batch = Batch::new(&state);
            let outcomes: Vec<Outcome> = requests.iter().map(|r| batch.decide(r, now)).collect();
            (outcomes, batch.records, state.version)
        };
        let guard = Guard { base, after: None };
        let (client, prepared) = self.connection().await?;
        if !ours.is_empty() {
            let (top, wrote) = Rows::of(&ours)
                .write(client, &prepared.write, &guard)
                .await
                .map_err(fail)?;
            if !wrote {
                let _ = client.batch_execute("rollback").await;
                return Err(database(
                    &shown,
                    format!(
                        "the log ends at {top} under the batch lock, not at {base} as it was just read"
                    ),
                ));
            }
        }
        client.batch_execute("commit").await.map_err(fail)?;
        Ok((ours, outcomes))
    }
}

/// Answers requests and settles with the error of their batch.
fn answer_failed(replies: Vec<Option<Reply>>, settles: Vec<oneshot::Sender<()>>, e: &StoreError) {
    for reply in replies.into_iter().flatten() {
        let _ = reply.send(Err(e.clone()));
    }
    for done in settles {
        let _ = done.send(());
    }
}

/// When a batch may write (see [`WRITE`]).
pub(super) struct Guard {
    /// The log's last version the batch was decided on.
    pub(super) base: u64,
    /// For a batch on top of another on this session: where that one ends.
    pub(super) after: Option<String>,
}

/// A batch's changes as the columns of its two inserts.
pub(super) struct Rows {
    versions: Vec<i64>,
    tickets: Vec<i64>,
    bodies: Vec<String>,
    codes: Vec<Option<String>>,
    order_tickets: Vec<i64>,
    order_statuses: Vec<String>,
    order_bodies: Vec<String>,
    order_codes: Vec<Option<String>>,
    order_versions: Vec<i64>,
}

impl Rows {
    /// Runs [`WRITE`] with these rows under `guard`, notifying the last
    /// version: where the log ended before, and whether it wrote.
    pub(super) async fn write(
        &self,
        client: &Client,
        write: &Statement,
        guard: &Guard,
    ) -> Result<(i64, bool), tokio_postgres::Error> {
        // Where the log ends once this is written.
        let last = self
            .versions
            .last()
            .copied()
            .unwrap_or(guard.base as i64)
            .to_string();
        let row = client
            .query_one(
                write,
                &[
                    &self.versions,
                    &self.tickets,
                    &self.bodies,
                    &self.codes,
                    &self.order_tickets,
                    &self.order_statuses,
                    &self.order_bodies,
                    &self.order_codes,
                    &self.order_versions,
                    &CHANNEL,
                    &last,
                    &(guard.base as i64),
                    &guard.after,
                ],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    pub(super) fn of(changes: &[Change]) -> Rows {
        let body = |order: &Order| serde_json::to_string(order).expect("an order serialises");
        let code = |c: &Change| c.pickup_code.map(|c| c.as_str().to_owned());
        // One row per order (its last change), with the code its first had.
        let mut last: BTreeMap<u32, (&Change, Option<String>)> = BTreeMap::new();
        for c in changes {
            let entry = last.entry(c.order.ticket).or_insert((c, None));
            entry.0 = c;
            if let Some(code) = code(c) {
                entry.1 = Some(code);
            }
        }
        let status = |s: Status| {
            serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .expect("a status is a string")
        };
        Rows {
            versions: changes.iter().map(|c| c.version as i64).collect(),
            tickets: changes.iter().map(|c| i64::from(c.order.ticket)).collect(),
            bodies: changes.iter().map(|c| body(&c.order)).collect(),
            codes: changes.iter().map(code).collect(),
            order_tickets: last.keys().map(|t| i64::from(*t)).collect(),
            order_statuses: last.values().map(|(c, _)| status(c.order.status)).collect(),
            order_bodies: last.values().map(|(c, _)| body(&c.order)).collect(),
            order_codes: last.values().map(|(_, code)| code.clone()).collect(),
            order_versions: last.values().map(|(c, _)| c.version as i64).collect(),
        }
    }
}
