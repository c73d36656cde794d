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

use super::Hand;
use crate::order::{Status, Ticket};
use crate::queue::{Consumer, Delivery};
use crate::store::{Outcome, Repeat, Store};
use crate::{backoff, crash, metrics};

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
    /// Given back because the store could not be written: the worker backs
    /// off before the next order.
    StoreFailed(Ticket),
}

/// One kitchen worker; its log lines and its lane on `/kitchen` say
/// "worker N (pid P)", and so do the orders it claims.
pub struct Worker {
    hand: Hand,
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
        hand: Hand,
        store: Store,
        orders: Consumer,
        prep_time: Duration,
        fail_rate: f64,
        tasks: TaskTracker,
    ) -> Self {
        let finishing = Arc::new(Semaphore::new(FINISHING_AT_ONCE));
        Worker {
            hand,
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
        tracing::debug!("{} starts", self.hand.name());
        let mut failing = backoff::STORE_FAILING;
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = self.orders.next() => next,
            };
            let pause = match self.prepare(delivery, &shutdown).await {
                // Let another worker have it.
                Prepared::GaveBack(_) => ERROR_PAUSE,
                // And do not spin on a failing store: each failure in a row
                // waits longer.
                Prepared::StoreFailed(_) => failing.pause(),
                _ => {
                    failing.reset();
                    continue;
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        tracing::debug!("{} stops", self.hand.name());
    }

    /// Claims and cooks one order, then hands it to `finish`, in the background.
    pub async fn prepare(&self, delivery: Delivery, shutdown: &CancellationToken) -> Prepared {
        let ticket = delivery.ticket();
        let me = self.hand.name().clone();
        match self.store.claim(ticket, me.clone()).await {
            Ok(Outcome::ClaimedAgain { order, from }) => {
                metrics::redelivered();
                let who = from.unwrap_or_else(|| "a worker".to_owned());
                let note = format!(
                    "{me} took order {ticket} again (delivery {}): {who} had it and did not finish",
                    order.deliveries
                );
                self.hand.preparing(ticket, order.deliveries, Some(note));
            }
            Ok(Outcome::Changed(order)) => {
                tracing::info!("{me}: preparing order {ticket}");
                self.hand.preparing(ticket, order.deliveries, None);
            }
            Ok(Outcome::Unchanged(order)) => {
                metrics::redelivered();
                self.hand.note(format!(
                    "order {ticket} was delivered again, to {me}, and recognised as already {}: acknowledged, not cooked twice",
                    order.status
                ));
                return settle(&me, delivery, Prepared::AlreadyDone(ticket)).await;
            }
            Ok(Outcome::Collected) => {
                metrics::redelivered();
                self.hand.note(format!(
                    "order {ticket} was delivered again, to {me}, and recognised as already collected: acknowledged, not cooked twice"
                ));
                return settle(&me, delivery, Prepared::AlreadyDone(ticket)).await;
            }
            // The store decided the race: the cancel came first, so this
            // claim did nothing, and the order is acknowledged uncooked
            // (with RabbitMQ its message was still in the queue).
            Ok(Outcome::Cancelled) => {
                self.hand.note(format!(
                    "order {ticket} was cancelled while waiting: skipped by {me}"
                ));
                return settle(&me, delivery, Prepared::Cancelled(ticket)).await;
            }
            Ok(Outcome::NotFound) | Ok(Outcome::WrongStatus(_)) | Ok(Outcome::WrongCode) => {
                self.hand.note(format!(
                    "order {ticket} is not in the store: {me} dropped it"
                ));
                return settle(&me, delivery, Prepared::Unknown(ticket)).await;
            }
            Err(e) => {
                let why = e.what_happened();
                tracing::warn!("{me}: cannot claim order {ticket}: {e}");
                self.hand.put_down(true, Some(back(&me, ticket, why)));
                give_back(&me, delivery, why).await;
                return Prepared::StoreFailed(ticket);
            }
        }

        // No timer for no time: a zero sleep still waits for the timer's
        // next millisecond tick, which halved the kitchen at prep 0.
        tokio::select! {
            _ = tokio::time::sleep(self.prep_time), if !self.prep_time.is_zero() => {}
            _ = std::future::ready(()), if self.prep_time.is_zero() => {}
            _ = shutdown.cancelled() => {
                self.hand.put_down(true, Some(back(&me, ticket, "it is stopping")));
                let _ = delivery.give_back().await;
                return Prepared::GaveBack(ticket);
            }
        }
        if self.fail_rate > 0.0 && fastrand::f64() < self.fail_rate {
            let note = format!(
                "{me} dropped order {ticket} on the floor (--fail-rate): it goes back to the front of the line"
            );
            self.hand.put_down(true, Some(note));
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
        self.hand.cooked();
        let (store, hand) = (self.store.clone(), self.hand.clone());
        self.tasks.spawn(async move {
            finish(&store, &hand, delivery).await;
            drop(permit);
        });
        Prepared::Cooked(ticket)
    }
}

/// Marks a cooked order READY and only then acknowledges it.
async fn finish(store: &Store, hand: &Hand, delivery: Delivery) -> Prepared {
    let ticket = delivery.ticket();
    let name = hand.name();
    let (how, note) = match store.advance(ticket, Status::Ready, Repeat::Allow).await {
        Ok(Outcome::Changed(_)) => {
            crash::here(crash::point::AFTER_READY);
            (settle(name, delivery, Prepared::Ready(ticket)).await, None)
        }
        Ok(Outcome::Unchanged(_)) | Ok(Outcome::Collected) | Ok(Outcome::ClaimedAgain { .. }) => (
            settle(name, delivery, Prepared::AlreadyDone(ticket)).await,
            None,
        ),
        // Still TAKEN: the claim never reached the disk (a write failed after
        // it was answered). Back to the line, to be claimed again.
        Ok(Outcome::WrongStatus(order)) => {
            let why = format!("it is still {}", order.status);
            let note = back(name, ticket, &why);
            (
                give_back_after_a_pause(name, delivery, &why).await,
                Some(note),
            )
        }
        // A cancel never follows a claim; nor does a code come into it.
        Ok(Outcome::NotFound) | Ok(Outcome::Cancelled) | Ok(Outcome::WrongCode) => (
            settle(name, delivery, Prepared::Unknown(ticket)).await,
            None,
        ),
        Err(e) => {
            let why = e.what_happened();
            tracing::warn!("{name}: cannot mark order {ticket} READY: {e}");
            let note = back(name, ticket, why);
            (
                give_back_after_a_pause(name, delivery, why).await,
                Some(note),
            )
        }
    };
    hand.finished(
        matches!(how, Prepared::Ready(_)),
        matches!(how, Prepared::GaveBack(_) | Prepared::StoreFailed(_)),
        note,
    );
    how
}

/// The log's words for an order a worker gives back.
fn back(name: &str, ticket: Ticket, why: &str) -> String {
    format!("order {ticket} goes back to the front of the line: {name} gave it back ({why})")
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

/// Gives an order back to the front of the line (the lane's note says why).
async fn give_back(name: &str, delivery: Delivery, why: &str) -> Prepared {
    let ticket = delivery.ticket();
    tracing::debug!("{name}: giving order {ticket} back: {why}");
    let _ = delivery.give_back().await;
    Prepared::GaveBack(ticket)
}
