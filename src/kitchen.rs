//! A kitchen [`Worker`]: takes one order at a time from the queue and prepares
//! it: claim it (TAKEN → PREPARING), wait the preparation time, mark it READY,
//! and only then acknowledge it to the queue. The last two steps run in the
//! background while the worker starts the next order, so the fsync that
//! makes READY durable is shared with other orders instead of waited for.
//!
//! Delivery is at-least-once, so every step is checked against the store: a
//! redelivered order that is already READY is just acknowledged, one still
//! PREPARING (its worker died) is prepared again, and nothing ever moves
//! backward. A worker that cannot finish (shutdown, a store error, or a
//! simulated failure with `--fail-rate`) gives the order back, to the front.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::order::{Status, Ticket};
use crate::queue::{Consumer, Delivery};
use crate::store::{Outcome, Repeat, Store};
use crate::{crash, metrics};

/// How long a worker pauses after giving an order back, before the next one.
const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// Orders one worker may have cooked whose READY is still being recorded.
const FINISHING_AT_ONCE: usize = 64;

/// How one order went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// Cooked: it is being recorded READY, then acknowledged, in the background.
    Cooked(Ticket),
    /// It is READY now, thanks to this worker.
    Ready(Ticket),
    /// Someone else finished it (a redelivery): acknowledged, nothing done.
    AlreadyDone(Ticket),
    /// The customer cancelled it while it waited: acknowledged, not cooked.
    Cancelled(Ticket),
    /// The store does not know it: acknowledged and dropped.
    Unknown(Ticket),
    /// Given back to the front of the queue.
    GaveBack(Ticket),
}

/// One kitchen worker; its log lines say "worker N".
pub struct Worker {
    name: String,
    store: Store,
    orders: Consumer,
    prep_time: Duration,
    /// Chance in [0, 1] to fail in the middle of an order, for demonstrations.
    fail_rate: f64,
    /// Runs the recording of cooked orders; shutdown waits for it.
    tasks: TaskTracker,
    /// Bounds the cooked orders still being recorded.
    finishing: Arc<Semaphore>,
}

impl Worker {
    pub fn new(
        name: String,
        store: Store,
        orders: Consumer,
        prep_time: Duration,
        fail_rate: f64,
        tasks: TaskTracker,
    ) -> Self {
        let finishing = Arc::new(Semaphore::new(FINISHING_AT_ONCE));
        Worker {
            name,
            store,
            orders,
            prep_time,
            fail_rate,
            tasks,
            finishing,
        }
    }

    /// Prepares orders until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::debug!("{} starts", self.name);
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = self.orders.next() => next,
            };
            if let Prepared::GaveBack(_) = self.prepare(delivery, &shutdown).await {
                // Let another worker have it, and do not spin on a failing store.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ERROR_PAUSE) => {}
                }
            }
        }
        tracing::debug!("{} stops", self.name);
    }

    /// Claims and cooks one order, then hands it to [`finish`].
    pub async fn prepare(&self, delivery: Delivery, shutdown: &CancellationToken) -> Prepared {
        let ticket = delivery.ticket();
        match self
            .store
            .advance(ticket, Status::Preparing, Repeat::Allow)
            .await
        {
            Ok(Outcome::Changed(_)) => tracing::info!("{}: preparing order {ticket}", self.name),
            Ok(Outcome::Unchanged(order)) if order.status == Status::Preparing => {
                metrics::redelivered();
                tracing::info!(
                    "{}: order {ticket} was left PREPARING; preparing it again",
                    self.name
                );
            }
            Ok(Outcome::Unchanged(_)) | Ok(Outcome::Collected) => {
                metrics::redelivered();
                return settle(&self.name, delivery, Prepared::AlreadyDone(ticket)).await;
            }
            // The store decided the race: the cancel came first, so this
            // claim did nothing, and the order is acknowledged uncooked
            // (with RabbitMQ its message was still in the queue).
            Ok(Outcome::Cancelled) => {
                tracing::info!(
                    "{}: order {ticket} was cancelled while waiting: skipped",
                    self.name
                );
                return settle(&self.name, delivery, Prepared::Cancelled(ticket)).await;
            }
            Ok(Outcome::NotFound) | Ok(Outcome::WrongStatus(_)) | Ok(Outcome::WrongCode) => {
                tracing::warn!(
                    "{}: order {ticket} is not in the store; dropping it",
                    self.name
                );
                return settle(&self.name, delivery, Prepared::Unknown(ticket)).await;
            }
            Err(e) => return give_back(&self.name, delivery, &e.to_string()).await,
        }

        // No timer for no time: a zero sleep still waits for the timer's
        // next millisecond tick, which halved the kitchen at prep 0.
        tokio::select! {
            _ = tokio::time::sleep(self.prep_time), if !self.prep_time.is_zero() => {}
            _ = std::future::ready(()), if self.prep_time.is_zero() => {}
            _ = shutdown.cancelled() => {
                tracing::info!("{}: stopping; order {ticket} goes back to the front", self.name);
                let _ = delivery.give_back().await;
                return Prepared::GaveBack(ticket);
            }
        }
        if self.fail_rate > 0.0 && fastrand::f64() < self.fail_rate {
            tracing::info!(
                "{}: dropped order {ticket} on the floor (--fail-rate); it goes back to the front",
                self.name
            );
            let _ = delivery.give_back().await;
            return Prepared::GaveBack(ticket);
        }

        // Cooked. Recording it READY takes an fsync; the worker starts the next
        // order meanwhile (with RabbitMQ the next one only comes after the
        // acknowledgement anyway). If the process dies first, the order is
        // still PREPARING, unacknowledged, and gets prepared again.
        let permit = self
            .finishing
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let (store, name) = (self.store.clone(), self.name.clone());
        self.tasks.spawn(async move {
            finish(&store, &name, delivery).await;
            drop(permit);
        });
        Prepared::Cooked(ticket)
    }
}

/// Marks a cooked order READY and only then acknowledges it.
pub async fn finish(store: &Store, name: &str, delivery: Delivery) -> Prepared {
    let ticket = delivery.ticket();
    match store.advance(ticket, Status::Ready, Repeat::Allow).await {
        Ok(Outcome::Changed(_)) => {
            crash::here(crash::point::AFTER_READY);
            settle(name, delivery, Prepared::Ready(ticket)).await
        }
        Ok(Outcome::Unchanged(_)) | Ok(Outcome::Collected) => {
            settle(name, delivery, Prepared::AlreadyDone(ticket)).await
        }
        // Still TAKEN: the claim never reached the disk (a write failed after
        // it was answered). Back to the line, to be claimed again.
        Ok(Outcome::WrongStatus(order)) => {
            let why = format!("it is still {}", order.status);
            give_back_after_a_pause(name, delivery, &why).await
        }
        // A cancel never follows a claim; nor does a code come into it.
        Ok(Outcome::NotFound) | Ok(Outcome::Cancelled) | Ok(Outcome::WrongCode) => {
            settle(name, delivery, Prepared::Unknown(ticket)).await
        }
        Err(e) => give_back_after_a_pause(name, delivery, &e.to_string()).await,
    }
}

/// Gives an order back once the store had a moment to recover, so that a
/// failing store (a full disk) is not hammered with the same order.
async fn give_back_after_a_pause(name: &str, delivery: Delivery, why: &str) -> Prepared {
    tokio::time::sleep(ERROR_PAUSE).await;
    give_back(name, delivery, why).await
}

async fn settle(name: &str, delivery: Delivery, how: Prepared) -> Prepared {
    if let Err(e) = delivery.ack().await {
        // The queue will deliver it again; the store recognises it then.
        tracing::warn!("{name}: could not acknowledge order: {e}");
    }
    how
}

async fn give_back(name: &str, delivery: Delivery, why: &str) -> Prepared {
    let ticket = delivery.ticket();
    tracing::warn!("{name}: order {ticket} goes back to the front: {why}");
    let _ = delivery.give_back().await;
    Prepared::GaveBack(ticket)
}
