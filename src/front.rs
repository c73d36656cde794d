//! The front counter: where an order is numbered, stored and queued, in that
//! order, and where an order that never reached the queue is sent again.
//!
//! The queue is asked for room first, so a full or unreachable queue costs no
//! ticket. Once stored, an order must be queued or cancelled: if the queue
//! refuses it, it is cancelled, so no ghost stays on the board; and if a
//! worker claimed it first (the broker delivered it, and its confirm came
//! too late), the store's decision stands: the order is cooking, so its
//! customer gets it, `201` and the code. If the server dies between storing
//! and queueing, the order stays TAKEN but never `queued`; with RabbitMQ,
//! [`Front::requeue_unconfirmed`] finds it and sends it again (without a
//! broker, start-up puts every unfinished order back). It never sends one
//! whose `/order` is still running in this process: that request queues or
//! withdraws it itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::crash;
use crate::metrics;
use crate::order::{Order, Status, Ticket};
use crate::pickup::PickupCode;
use crate::queue::{Queue, QueueError};
use crate::store::{Outcome, Repeat, Store, StoreError};
use crate::ticket::{TicketError, Tickets};

/// How many times to retry cancelling an order the queue refused
/// ([`backoff::CANCEL_RETRY`] apart).
const CANCEL_TRIES: u32 = 120;

/// How often to look for orders that never reached the queue.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How old a TAKEN, unconfirmed order must be, in the queue's confirm
/// timeouts, to count as lost on its way: any live server would have
/// confirmed or cancelled it long before.
const UNCONFIRMED_AFTER_TIMEOUTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Tickets(#[from] TicketError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A placed order, and the pickup code its customer needs to collect or
/// cancel it: the only time anyone is told the code.
pub struct Placed {
    pub order: Order,
    pub pickup_code: PickupCode,
}

#[derive(Clone)]
pub struct Front {
    pub tickets: Tickets,
    pub store: Store,
    pub queue: Queue,
    /// Orders whose `/order` is still running here: the sweep leaves them.
    pub placing: Placing,
}

/// The tickets whose `/order` is running in this process.
#[derive(Clone, Default)]
pub struct Placing(Arc<Mutex<HashSet<Ticket>>>);

/// One ticket in [`Placing`], until dropped (however the request ends).
struct PlacingGuard {
    placing: Placing,
    ticket: Ticket,
}

impl Placing {
    fn start(&self, ticket: Ticket) -> PlacingGuard {
        self.lock().insert(ticket);
        PlacingGuard {
            placing: self.clone(),
            ticket,
        }
    }

    fn contains(&self, ticket: Ticket) -> bool {
        self.lock().contains(&ticket)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Ticket>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for PlacingGuard {
    fn drop(&mut self) {
        self.placing.lock().remove(&self.ticket);
    }
}

/// What a withdrawal found.
enum Withdrawn {
    /// Cancelled (or being cancelled in the background): never cooked.
    Gone,
    /// A worker claimed it first: it exists and is cooking.
    Cooking(Order),
}

/// Cancels `ticket`, retrying while the store fails (a full disk, a lock
/// held elsewhere); stops as soon as the order is anything but TAKEN.
async fn cancel_until_done(store: Store, ticket: Ticket) {
    let mut backoff = backoff::CANCEL_RETRY;
    for _ in 0..CANCEL_TRIES {
        tokio::time::sleep(backoff.pause()).await;
        match store
            .advance(ticket, Status::Cancelled, Repeat::Refuse)
            .await
        {
            Ok(_) => return,
            Err(e) => tracing::debug!("order {ticket} still not cancelled: {e}"),
        }
    }
    tracing::error!(
        "order {ticket} was refused but could not be cancelled in {CANCEL_TRIES} tries; it may still be cooked"
    );
}

/// Cancels a stored order whose customer is about to be told no (its
/// number was not made durable, or the queue refused it), so that no
/// ghost stays on the board and it is never cooked later (by the sweep).
/// The store decides the race with the kitchen: if a worker claimed the
/// order first (the queue delivered it though its confirm came late),
/// it is cooking, and the customer is told so rather than no.
async fn withdraw(
    store: &Store,
    ticket: Ticket,
    why: &(dyn std::fmt::Display + Sync),
) -> Withdrawn {
    let cancelled = store
        .advance(ticket, Status::Cancelled, Repeat::Refuse)
        .await;
    match cancelled {
        Ok(Outcome::WrongStatus(order)) if order.status != Status::Taken => {
            tracing::info!(
                "order {ticket} was claimed by the kitchen before it could be withdrawn ({why}): \
                 its customer gets it"
            );
            Withdrawn::Cooking(order)
        }
        Ok(_) => Withdrawn::Gone,
        Err(failed) => {
            // Keep trying while the store recovers.
            tracing::warn!("order {ticket} was refused ({why}) but not cancelled yet ({failed})");
            tokio::spawn(cancel_until_done(store.clone(), ticket));
            Withdrawn::Gone
        }
    }
}

impl Front {
    /// Places an order: number, record, queue. The counter's fsync runs
    /// while the order is recorded (see [`crate::ticket`]); the order is
    /// queued, and the customer answered, only once both are durable.
    pub async fn place(&self, content: String) -> Result<Placed, FrontError> {
        // A full restaurant costs no ticket (the store's batch decides, but
        // most refusals are seen here first).
        if let Some(max) = self.store.is_full() {
            return Err(StoreError::Full(max).into());
        }
        let slot = self.queue.reserve()?;
        let numbered = self.tickets.next().await?;
        let ticket = numbered.ticket;
        let placing = self.placing.start(ticket);
        crash::here(crash::point::AFTER_TICKET);
        let (mut order, pickup_code) = match self.store.record(ticket, content).await {
            Ok(recorded) => recorded,
            // Refused, or not known to be recorded: the customer is told no.
            // A database may still have committed it (a commit it could not
            // confirm in time, its synchronous standby gone, shows once the
            // standby is back): it is cancelled as soon as the store
            // answers, and kept from the sweep until then, so it is never
            // cooked for a customer who has no ticket.
            Err(e) => {
                if !matches!(e, StoreError::Full(_)) {
                    let store = self.store.clone();
                    tokio::spawn(async move {
                        cancel_until_done(store, ticket).await;
                        drop(placing);
                    });
                }
                return Err(e.into());
            }
        };
        if let Err(e) = numbered.durable().await {
            return match withdraw(&self.store, ticket, &e).await {
                Withdrawn::Cooking(order) => Ok(Placed { order, pickup_code }),
                Withdrawn::Gone => Err(e.into()),
            };
        }
        crash::here(crash::point::AFTER_STORE);
        if let Err(e) = slot.send(ticket).await {
            return match withdraw(&self.store, ticket, &e).await {
                Withdrawn::Cooking(order) => Ok(Placed { order, pickup_code }),
                Withdrawn::Gone => Err(e.into()),
            };
        }
        crash::here(crash::point::AFTER_QUEUE);
        if self.queue.is_durable() {
            // Recorded in the background: until it lands, a crash only means
            // the sweep queues the order a second time, which the kitchen
            // recognises.
            order.queued = true;
            let store = self.store.clone();
            tokio::spawn(async move { store.mark_queued(ticket).await });
        }
        Ok(Placed { order, pickup_code })
    }

    /// Every few seconds until `shutdown`: sends again the orders whose
    /// server died before the broker confirmed them, and those the line lost
    /// after confirming them (see [`Front::find_lost`]), once no queue has
    /// held them for `lost_after`.
    pub async fn requeue_unconfirmed(self, lost_after: Duration, shutdown: CancellationToken) {
        let unconfirmed_after = self.queue.confirm_timeout() * UNCONFIRMED_AFTER_TIMEOUTS;
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        // The orders seen missing from the line, and since when.
        let mut missing = HashMap::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.find_lost(&mut missing, lost_after).await;
            for ticket in self.store.unqueued(unconfirmed_after) {
                if self.placing.contains(ticket) {
                    continue;
                }
                let Ok(slot) = self.queue.reserve() else {
                    break;
                };
                if slot.send(ticket).await.is_ok() {
                    tracing::info!(
                        "order {ticket} never reached the queue (its server stopped?), or the line lost it; queued it now"
                    );
                    let _ = self.store.mark_queued(ticket).await;
                }
            }
        }
    }

    /// Orders the broker confirmed that no queue holds any more. RabbitMQ
    /// can lose one when a node dies: its confirm said a majority had it,
    /// yet once the node is gone it is neither ready nor unacknowledged
    /// anywhere. The store still has it TAKEN, so the store is what finds
    /// it: an order TAKEN and `queued` while the `orders` queue holds no
    /// ready message, at every look for `lost_after`, cannot be waiting in
    /// the line (it would be ready) and is not being prepared (a worker
    /// claims an order as it receives it; with a `--prefetch` above 1 it may
    /// hold a few unclaimed a while, which `lost_after` must outlast). It is
    /// marked lost in the store (one server wins that; the others find it
    /// done) and so is sent again by the same sweep. Should the queue still
    /// have had it after all, its second message is recognised by the
    /// kitchen, as any redelivery is. `missing` says since when each order
    /// has been seen missing.
    async fn find_lost(&self, missing: &mut HashMap<Ticket, Instant>, lost_after: Duration) {
        let waiting = self.store.queued_and_waiting();
        missing.retain(|ticket, _| waiting.contains(ticket));
        if waiting.is_empty() {
            return;
        }
        if self.queue.count_waiting().await != Some(0) {
            // Some order is in the line, or the broker cannot say: start
            // again from the next look.
            missing.clear();
            return;
        }
        let now = Instant::now();
        for ticket in waiting {
            let since = *missing.entry(ticket).or_insert(now);
            if now.duration_since(since) < lost_after {
                continue;
            }
            missing.remove(&ticket);
            if let Ok(Outcome::Changed(_)) = self.store.mark_lost(ticket).await {
                tracing::warn!(
                    "order {ticket} was confirmed by the broker, but no queue has held it for {}: \
                     sending it again",
                    humantime::format_duration(lost_after)
                );
                metrics::lost_by_the_line();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_withdrawal_follows_what_the_store_decided() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Vec::new()).unwrap();
        for ticket in [1, 2] {
            store
                .record(ticket, format!("order {ticket}"))
                .await
                .unwrap();
        }
        // The queue delivered order 1 and a worker claimed it before its
        // confirm came: it is cooking, whatever the late confirm says.
        store.claim(1, "worker 1 (pid 1)".into(), 5).await.unwrap();
        let why = "the confirm came too late";
        assert!(matches!(
            withdraw(&store, 1, &why).await,
            Withdrawn::Cooking(order) if order.status == Status::Preparing
        ));
        assert!(
            matches!(store.lookup(1), crate::store::Lookup::Live(o) if o.status == Status::Preparing)
        );
        // Nobody claimed order 2: the withdrawal wins, and no worker can
        // claim it after.
        assert!(matches!(withdraw(&store, 2, &why).await, Withdrawn::Gone));
        assert_eq!(store.lookup(2), crate::store::Lookup::Cancelled);
        assert_eq!(
            store.claim(2, "worker 1 (pid 1)".into(), 5).await.unwrap(),
            Outcome::Cancelled
        );
    }
}
