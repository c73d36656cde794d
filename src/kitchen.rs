//! A kitchen worker: takes one order at a time from the queue and prepares
//! it: claim it (TAKEN → PREPARING), wait the preparation time, mark it READY,
//! and only then acknowledge it to the queue.
//!
//! Delivery is at-least-once, so every step is checked against the store: a
//! redelivered order that is already READY is just acknowledged, one still
//! PREPARING (its worker died) is prepared again, and nothing ever moves
//! backward. A worker that cannot finish (shutdown, a store error, or a
//! simulated failure with `--fail-rate`) gives the order back, to the front.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::crash;
use crate::order::{Status, Ticket};
use crate::queue::{Consumer, Delivery};
use crate::store::{Outcome, Store, StoreError};

/// How long a worker pauses after giving an order back, before the next one.
const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// How one order went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// It is READY now, thanks to this worker.
    Ready(Ticket),
    /// Someone else finished it (a redelivery): acknowledged, nothing done.
    AlreadyDone(Ticket),
    /// The store does not know it (cancelled): acknowledged and dropped.
    Unknown(Ticket),
    /// Given back to the front of the queue.
    GaveBack(Ticket),
}

pub struct Cook {
    pub name: String,
    pub store: Store,
    pub orders: Consumer,
    pub prep_time: Duration,
    /// Chance in [0, 1] to fail in the middle of an order, for demonstrations.
    pub fail_rate: f64,
}

impl Cook {
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

    /// Takes one order from claim to acknowledgement.
    pub async fn prepare(&self, delivery: Delivery, shutdown: &CancellationToken) -> Prepared {
        let ticket = delivery.ticket();
        match self.store.advance(ticket, Status::Preparing, true).await {
            Ok(Outcome::Changed(_)) => tracing::info!("{}: preparing order {ticket}", self.name),
            Ok(Outcome::Unchanged(order)) if order.status == Status::Preparing => {
                tracing::info!(
                    "{}: order {ticket} was left PREPARING; preparing it again",
                    self.name
                );
            }
            Ok(Outcome::Unchanged(_)) | Ok(Outcome::Collected) => {
                return self.settle(delivery, Prepared::AlreadyDone(ticket)).await;
            }
            Ok(Outcome::NotFound) | Ok(Outcome::WrongStatus(_)) => {
                tracing::warn!(
                    "{}: order {ticket} is not in the store; dropping it",
                    self.name
                );
                return self.settle(delivery, Prepared::Unknown(ticket)).await;
            }
            Err(e) => return self.give_back(delivery, &e).await,
        }

        tokio::select! {
            _ = tokio::time::sleep(self.prep_time) => {}
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

        match self.store.advance(ticket, Status::Ready, true).await {
            Ok(Outcome::Changed(_)) => {
                crash::here(crash::point::AFTER_READY);
                self.settle(delivery, Prepared::Ready(ticket)).await
            }
            Ok(_) => self.settle(delivery, Prepared::AlreadyDone(ticket)).await,
            Err(e) => self.give_back(delivery, &e).await,
        }
    }

    async fn settle(&self, delivery: Delivery, how: Prepared) -> Prepared {
        if let Err(e) = delivery.ack().await {
            // The queue will deliver it again; the store recognises it then.
            tracing::warn!("{}: could not acknowledge order: {e}", self.name);
        }
        how
    }

    async fn give_back(&self, delivery: Delivery, error: &StoreError) -> Prepared {
        let ticket = delivery.ticket();
        tracing::warn!(
            "{}: order {ticket} goes back to the front: {error}",
            self.name
        );
        let _ = delivery.give_back().await;
        Prepared::GaveBack(ticket)
    }
}
