//! The task that owns the store's tables: it consumes the same jobs as the
//! file committer and decides each batch with the same rules
//! ([`Batch`]), then persists what they decided, in one transaction:
//!
//! 1. `begin; select pg_advisory_xact_lock(K)`: one batch at a time in the
//!    whole restaurant, whatever the number of processes;
//! 2. read the changes above this process's version and apply them (what
//!    the others did);
//! 3. decide the batch against that state, with the next versions;
//! 4. insert the changes, upsert the orders, `pg_notify`, in one statement;
//! 5. `commit`, then apply, tell the observers, answer.
//!
//! The lock is let go only once the commit is visible, so versions commit
//! in order: a reader of `version > v` sees a prefix of the log, never a
//! hole that fills later. Between batches the task follows the log without
//! the lock, woken by `LISTEN` (and a poll, in case a notification is lost
//! with a connection).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_postgres::{Client, Statement};

use super::database;
use super::link::{CHANNEL, Link, STATEMENT_TIMEOUT, said};
use crate::metrics;
use crate::order::{Order, Status, Timestamp};
use crate::pickup::PickupCode;
use crate::store::state::{ApplyError, Batch, Change, Request, State};
use crate::store::{Job, Observer, Origin, Outcome, Reply, Shared, StoreError};

/// Most requests decided in one batch.
const MAX_BATCH: usize = 1024;
/// The longest one batch's transaction may take, every round trip of it.
const BATCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Held by the transaction of each batch.
pub(super) const BATCH_LOCK: i64 = 0x6661_7374_666f_6f03;
/// Most changes read in one catch-up (a long outage catches up in steps).
const FOLLOW_AT_MOST: i64 = 10_000;

const CATCH_UP: &str = "select version, body::text, pickup_code from fastfood_changes \
     where version > $1 order by version limit $2";

/// Every change of a batch and the orders' new rows, and the notice, in one
/// statement (one round trip).
pub(super) const WRITE: &str = "
with changes as (
    insert into fastfood_changes (version, ticket, body, pickup_code)
    select v, t, b::jsonb, p
    from unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) as u(v, t, b, p)
), orders as (
    insert into fastfood_orders (ticket, status, body, pickup_code, version)
    select t, s, b::jsonb, p, v
    from unnest($5::bigint[], $6::text[], $7::text[], $8::text[], $9::bigint[]) as u(t, s, b, p, v)
    on conflict (ticket) do update set
        status = excluded.status,
        body = excluded.body,
        version = excluded.version,
        pickup_code = case when excluded.status in ('COLLECTED', 'CANCELLED') then null
                           else coalesce(excluded.pickup_code, fastfood_orders.pickup_code) end
)
select pg_notify($10, $11)";

/// The statements, prepared once per connection.
struct Prepared {
    connection: u64,
    catch_up: Statement,
    write: Statement,
}

pub(super) struct Committer {
    link: Link,
    shared: Arc<Shared>,
    observers: Vec<Arc<dyn Observer>>,
    prepared: Option<Prepared>,
}

/// Loads the orders (live, collected, cancelled) and the version, in one
/// snapshot.
pub(super) async fn load(client: &Client, shown: &str) -> Result<State, StoreError> {
    let fail = |e: tokio_postgres::Error| database(shown, said(&e));
    client
        .batch_execute("begin isolation level repeatable read read only")
        .await
        .map_err(fail)?;
    let rows = client
        .query("select body::text, pickup_code from fastfood_orders", &[])
        .await
        .map_err(fail)?;
    let version: i64 = client
        .query_one(
            "select coalesce(max(version), 0)::bigint from fastfood_changes",
            &[],
        )
        .await
        .map_err(fail)?
        .get(0);
    client.batch_execute("commit").await.map_err(fail)?;
    let mut state = State {
        version: version as u64,
        ..State::default()
    };
    for row in rows {
        let body: String = row.get(0);
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

impl Committer {
    pub(super) fn new(link: Link, shared: Arc<Shared>, observers: Vec<Arc<dyn Observer>>) -> Self {
        Committer {
            link,
            shared,
            observers,
            prepared: None,
        }
    }

    /// Serves jobs until every handle is gone.
    pub(super) async fn run(mut self, mut inbox: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while inbox.recv_many(&mut jobs, MAX_BATCH).await > 0 {
            let mut requests = Vec::with_capacity(jobs.len());
            let mut replies: Vec<Reply> = Vec::with_capacity(jobs.len());
            // Every answer goes out after its commit: a change asked for
            // before a settle is committed (or failed) once this batch is.
            let mut settles = Vec::new();
            for job in jobs.drain(..) {
                match job {
                    Job::Change(request, reply) => {
                        requests.push(request);
                        replies.push(reply);
                    }
                    Job::Settle(done) => settles.push(done),
                    Job::Follow => {}
                }
            }
            if requests.is_empty() {
                for done in settles {
                    let _ = done.send(());
                }
                self.follow().await;
                continue;
            }
            let started = Instant::now();
            let committed = tokio::time::timeout(BATCH_TIMEOUT, self.commit(&requests))
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
                    self.shared.writable.store(true, Ordering::Relaxed);
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    self.failed(&e);
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            for done in settles {
                let _ = done.send(());
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
    async fn connection(&mut self) -> Result<(&Client, &Prepared), StoreError> {
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
            self.prepared = Some(Prepared {
                connection: generation,
                catch_up,
                write,
            });
        }
        Ok((client, self.prepared.as_ref().expect("prepared")))
    }

    /// Reads the changes other processes committed since this one's
    /// version, and applies them. Under the batch lock the read is
    /// complete; without it, what is read is still a prefix of the log.
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        let shown = self.link.shown().to_owned();
        loop {
            let version = self.shared.read().version as i64;
            let (client, prepared) = self.connection().await?;
            let rows = client
                .query(&prepared.catch_up, &[&version, &FOLLOW_AT_MOST])
                .await
                .map_err(|e| database(&shown, said(&e)))?;
            let theirs = rows
                .iter()
                .map(|row| change(&shown, row))
                .collect::<Result<Vec<_>, _>>()?;
            let complete = (theirs.len() as i64) < FOLLOW_AT_MOST;
            self.apply(&theirs, Origin::Elsewhere);
            if complete {
                return Ok(());
            }
        }
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

    /// One batch, one transaction: lock, catch up, decide, write, commit.
    async fn commit(
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
        let (outcomes, ours) = {
            let state = self.shared.read();
            let mut batch = Batch::new(&state);
            let outcomes: Vec<Outcome> = requests.iter().map(|r| batch.decide(r, now)).collect();
            (outcomes, batch.records)
        };
        let (client, prepared) = self.connection().await?;
        if !ours.is_empty() {
            Rows::of(&ours)
                .write(client, &prepared.write)
                .await
                .map_err(fail)?;
        }
        client.batch_execute("commit").await.map_err(fail)?;
        Ok((ours, outcomes))
    }
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
    /// Runs [`WRITE`] with these rows, notifying the last version.
    pub(super) async fn write(
        &self,
        client: &Client,
        write: &Statement,
    ) -> Result<u64, tokio_postgres::Error> {
        let last = self
            .versions
            .last()
            .copied()
            .unwrap_or_default()
            .to_string();
        client
            .execute(
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
                ],
            )
            .await
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
