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
//!
//! A poison order, one that was delivered `--max-deliveries` times and never
//! finished (it kills its workers, or they keep giving it back), is set
//! aside instead of prepared again: CANCELLED by the kitchen in the store,
//! its message to the queue's dead letters. `--crash-on TEXT` makes such an
//! order for the experiments: the worker that starts one aborts its process.
//!
//! A worker never acknowledges an order it cannot account for. Before
//! anything, an order is checked against the store's restaurant
//! ([`crate::restaurant::RestaurantId::admits`]): another restaurant's order goes back to the
//! queue untouched and the worker's whole process stops ([`Halt`]), saying
//! which store it opened, so that a worker of that restaurant takes the
//! order. An order of this restaurant (or one whose message names none)
//! that the store does not know, decided under the store's lock by the
//! claim, is set aside where a person can find it (an orphan), with an
//! error in the log.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Hand;
use crate::order::{CancelledBy, Order, Status, Ticket};
use crate::queue::{Consumer, Delivery, SetAside};
use crate::restaurant::Admission;
use crate::store::{Lookup, Outcome, Repeat, Store};
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
    /// The store does not know it: set aside, untouched (an orphan), never
    /// acknowledged as done.
    Orphaned(Ticket),
    /// Another restaurant's: back to the queue untouched; the process stops.
    Refused(Ticket),
    /// Given back to the front of the queue.
    GaveBack(Ticket),
    /// A poison order, delivered as often as allowed: set aside, not cooked.
    SetAside(Ticket),
    /// Given back because the store could not be written: the worker backs
    /// off before the next order.
    StoreFailed(Ticket),
}

/// How the workers of a process cook: the settings of `serve` and `worker`
/// they follow, and what they share.
#[derive(Clone, Debug)]
pub struct Cooking {
    pub prep_time: Duration,
    /// Chance in [0, 1] to fail in the middle of an order (somewhere in the
    /// middle half of its preparation time), for demonstrations.
    pub fail_rate: f64,
    /// The most deliveries an order may have: one that was delivered this
    /// many times and comes again is set aside (`--max-deliveries`).
    pub max_deliveries: u32,
    /// The poison pill of the experiments (`--crash-on`): a worker that
    /// starts an order whose text holds it aborts its process.
    pub crash_on: Option<String>,
    /// One permit per process: a worker prepares an order delivered again
    /// after a worker left it unfinished (a suspect: perhaps a poison order)
    /// only while no other worker of the process prepares another one. If
    /// the suspect takes the process down, the other suspects were not
    /// claimed meanwhile, so their delivery counts do not grow with it: an
    /// innocent order caught in a crash (the process's other workers'
    /// orders) is delivered at most twice before it is made, and only a
    /// `--max-deliveries` of 1 sets it aside.
    pub suspects: Arc<Semaphore>,
}

impl Cooking {
    /// The settings, with the process's one suspect permit.
    pub fn new(
        prep_time: Duration,
        fail_rate: f64,
        max_deliveries: u32,
        crash_on: Option<String>,
    ) -> Cooking {
        Cooking {
            prep_time,
            fail_rate,
            max_deliveries,
            crash_on,
            suspects: Arc::new(Semaphore::new(1)),
        }
    }
}

/// How a worker stops its whole process when it must not go on (an order
/// of another restaurant came its way), and why; cheap to clone.
#[derive(Clone)]
pub struct Halt {
    shutdown: CancellationToken,
    why: Arc<OnceLock<String>>,
}

impl Halt {
    /// Stops by cancelling `shutdown`, the process's own.
    pub fn new(shutdown: CancellationToken) -> Halt {
        Halt {
            shutdown,
            why: Arc::new(OnceLock::new()),
        }
    }

    /// Stops the process, for the reason `why` (the first reason stands).
    pub fn stop(&self, why: String) {
        let _ = self.why.set(why);
        self.shutdown.cancel();
    }

    /// The process's shutdown, which [`Halt::stop`] cancels.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Why the process was stopped, if a worker stopped it.
    pub fn reason(&self) -> Option<String> {
        self.why.get().cloned()
    }
}

/// One kitchen worker; its log lines and its lane on `/kitchen` say
/// "worker N (pid P)", and so do the orders it claims.
pub struct Worker {
    hand: Hand,
    store: Store,
    orders: Consumer,
    cooking: Cooking,
    /// Runs the recording of cooked orders; shutdown waits for it.
    tasks: TaskTracker,
    /// Bounds the cooked orders still being recorded.
    finishing: Arc<Semaphore>,
    /// Stops the process when an order of another restaurant comes.
    halt: Halt,
}

impl Worker {
    pub fn new(
        hand: Hand,
        store: Store,
        orders: Consumer,
        cooking: Cooking,
        tasks: TaskTracker,
        halt: Halt,
    ) -> Self {
        let finishing = Arc::new(Semaphore::new(FINISHING_AT_ONCE));
        Worker {
            hand,
            store,
            orders,
            cooking,
            tasks,
            finishing,
            halt,
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
                Prepared::Refused(_) => break,
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
        let ours = self.store.restaurant();
        let admission = ours.admits(&delivery.stamp());
        if let Admission::Foreign(theirs) = &admission {
            return self.refuse(delivery, theirs).await;
        }
        let limit = self.cooking.max_deliveries;
        let suspect = delivery.redelivered()
            || matches!(self.store.lookup(ticket), Lookup::Live(o) if o.status == Status::Preparing);
        // Held until the order is cooked (or put down): see `Cooking::suspects`.
        let _alone = if suspect {
            tokio::select! {
                permit = self.cooking.suspects.clone().acquire_owned() => Some(permit.expect("never closed")),
                _ = shutdown.cancelled() => {
                    let _ = delivery.give_back().await;
                    return Prepared::GaveBack(ticket);
                }
            }
        } else {
            None
        };
        let order = match self.store.claim(ticket, me.clone(), limit).await {
            Ok(Outcome::ClaimedAgain { order, from }) => {
                metrics::redelivered();
                let who = from.unwrap_or_else(|| "a worker".to_owned());
                let note = format!(
                    "{me} took order {ticket} again (delivery {} of at most {limit}): {who} had it and did not finish",
                    order.deliveries
                );
                self.hand.preparing(ticket, order.deliveries, Some(note));
                order
            }
            Ok(Outcome::Changed(order)) => {
                tracing::info!("{me}: preparing order {ticket}");
                self.hand.preparing(ticket, order.deliveries, None);
                order
            }
            Ok(Outcome::OverLimit(order)) => {
                metrics::redelivered();
                return self.set_aside(order, delivery).await;
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
                if self.store.cancelled_by(ticket) == Some(CancelledBy::Kitchen) {
                    // Set aside by a process that stopped before its message
                    // reached the dead letters: it goes there now.
                    let why = SetAside {
                        deliveries: None,
                        dropped_by: Vec::new(),
                        by: me.to_string(),
                    };
                    return match delivery.set_aside(why).await {
                        Ok(_) => Prepared::SetAside(ticket),
                        Err(e) => {
                            tracing::warn!("{me}: could not set order {ticket} aside: {e}");
                            Prepared::GaveBack(ticket)
                        }
                    };
                }
                self.hand.note(format!(
                    "order {ticket} was cancelled while waiting: skipped by {me}"
                ));
                return settle(&me, delivery, Prepared::Cancelled(ticket)).await;
            }
            // Decided under the store's lock, after reading every other
            // process's changes: the store really does not know it.
            Ok(Outcome::NotFound) => {
                let unnamed = if admission == Admission::Unstamped {
                    ", and its message names no restaurant"
                } else {
                    ""
                };
                let why = format!(
                    "order {ticket} is not in the store of restaurant {ours} ({}){unnamed}",
                    self.store.place()
                );
                return orphan(&self.hand, delivery, why).await;
            }
            // Not answers to a claim; should one come, the order is not lost.
            Ok(Outcome::WrongStatus(_)) | Ok(Outcome::WrongCode) => {
                let why = "the store gave its claim an answer it does not expect";
                self.hand.put_down(true, Some(back(&me, ticket, why)));
                return give_back(&me, delivery, why).await;
            }
            // Only a new order can find the restaurant full; kept, not dropped.
            Ok(Outcome::Full) => {
                return give_back(
                    &me,
                    delivery,
                    "the store answered as if it were a new order",
                )
                .await;
            }
            Err(e) => {
                let why = e.what_happened();
                tracing::warn!("{me}: cannot claim order {ticket}: {e}");
                self.hand.put_down(true, Some(back(&me, ticket, why)));
                give_back(&me, delivery, why).await;
                return Prepared::StoreFailed(ticket);
            }
        };
        if let Some(pill) = &self.cooking.crash_on
            && order.content.contains(pill.as_str())
        {
            // The poison pill: this process ends as a bug would end it, with
            // no give-back and no goodbye. Only once its claim is on disk,
            // so that the delivery counts (a real crash a moment earlier
            // would make it count one fewer).
            self.store.settled().await;
            tracing::error!(
                "{me}: order {ticket} holds {pill:?} (--crash-on): the process aborts now, delivery {}",
                order.deliveries
            );
            std::process::abort();
        }

        // A simulated failure happens in the middle of the preparation (at
        // a random point of its middle half), not at its end: the customer
        // waits part of the time twice, as after a real mishap.
        let prep_time = self.cooking.prep_time;
        let drops = self.cooking.fail_rate > 0.0 && fastrand::f64() < self.cooking.fail_rate;
        let cooking = match drops {
            true => prep_time.mul_f64(0.25 + fastrand::f64() / 2.0),
            false => prep_time,
        };
        // No timer for no time: a zero sleep still waits for the timer's
        // next millisecond tick, which halved the kitchen at prep 0.
        tokio::select! {
            _ = tokio::time::sleep(cooking), if !cooking.is_zero() => {}
            _ = std::future::ready(()), if cooking.is_zero() => {}
            _ = shutdown.cancelled() => {
                self.hand.put_down(true, Some(back(&me, ticket, "it is stopping")));
                let _ = delivery.give_back().await;
                return Prepared::GaveBack(ticket);
            }
        }
        if drops {
            let note = format!(
                "{me} dropped order {ticket} on the floor (--fail-rate) after {} of its {}: it goes back to the front of the line",
                humantime::format_duration(Duration::from_millis(cooking.as_millis() as u64)),
                humantime::format_duration(prep_time)
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

    /// Sets a poison order aside: CANCELLED by the kitchen in the store,
    /// then out of the queue, into its dead letters. Given back if the store
    /// cannot write now (the next delivery tries again).
    async fn set_aside(&self, order: Order, delivery: Delivery) -> Prepared {
        let ticket = order.ticket;
        let me = self.hand.name().clone();
        let aside = match self.store.set_aside(ticket).await {
            Ok(Outcome::Changed(aside)) => aside,
            Ok(Outcome::Collected) | Ok(Outcome::Unchanged(_)) => {
                return settle(&me, delivery, Prepared::AlreadyDone(ticket)).await;
            }
            // Cancelled meanwhile (by the customer, or set aside by
            // another worker): nothing left to do here.
            Ok(Outcome::Cancelled) => {
                return settle(&me, delivery, Prepared::AlreadyDone(ticket)).await;
            }
            Ok(Outcome::NotFound) => {
                let why = format!(
                    "order {ticket} was to be set aside but is no longer in the store ({})",
                    self.store.place()
                );
                return orphan(&self.hand, delivery, why).await;
            }
            Ok(_) => {
                let why = "the store gave its set-aside an answer it does not expect";
                self.hand.note(back(&me, ticket, why));
                return give_back_after_a_pause(&me, delivery, why).await;
            }
            Err(e) => {
                let why = e.what_happened();
                tracing::warn!("{me}: cannot set order {ticket} aside: {e}");
                self.hand.note(back(&me, ticket, why));
                give_back_after_a_pause(&me, delivery, why).await;
                return Prepared::StoreFailed(ticket);
            }
        };
        metrics::set_aside();
        let why = SetAside {
            deliveries: Some(aside.deliveries),
            dropped_by: aside.dropped_by.clone(),
            by: me.to_string(),
        };
        let went = match delivery.set_aside(why).await {
            Ok(Some(queue)) => format!("its message is in the {queue} queue"),
            Ok(None) => "the store keeps it, CANCELLED by the kitchen".to_owned(),
            Err(e) => format!("its message could not be moved to the dead letters yet ({e})"),
        };
        let note = format!(
            "order {ticket} set aside after {} deliveries (--max-deliveries {}): it took down {}; \
             {went}, and its customer is told to see the counter",
            aside.deliveries,
            self.cooking.max_deliveries,
            workers(&aside.dropped_by),
        );
        tracing::warn!("{me}: {note}");
        self.hand.note(note);
        Prepared::SetAside(ticket)
    }

    /// Gives another restaurant's order back to the queue untouched and
    /// stops this process, saying which store it opened and what to do.
    async fn refuse(&self, delivery: Delivery, theirs: &str) -> Prepared {
        let ticket = delivery.ticket();
        let why = format!(
            "order {ticket} belongs to restaurant {theirs}, but {} is restaurant {}: {} gave it back \
             to the queue untouched, and this process stops so that a worker of that restaurant takes it. \
             Give --data-dir the data directory of the server that took the order, or run each restaurant \
             on a RabbitMQ virtual host of its own (amqp://HOST:5672/VHOST)",
            self.store.place(),
            self.store.restaurant(),
            self.hand.name(),
        );
        if let Err(e) = delivery.refuse().await {
            // Unsettled, it goes back when the connection closes.
            tracing::warn!("{}: {e}", self.hand.name());
        }
        self.hand.alarm(why.clone());
        self.halt.stop(why);
        Prepared::Refused(ticket)
    }
}

/// Sets an order nobody can account for aside, where a person can find it,
/// with an error in the log; gives it back if that fails.
async fn orphan(hand: &Hand, delivery: Delivery, why: String) -> Prepared {
    let ticket = delivery.ticket();
    let name = hand.name();
    match delivery.orphan(why.clone()).await {
        Ok(()) => {
            hand.alarm(format!(
                "{why}: {name} set it aside untouched (with RabbitMQ, in the orders.orphaned queue) \
                 for a person to look at, and did not acknowledge it as done"
            ));
            Prepared::Orphaned(ticket)
        }
        Err(e) => {
            hand.put_down(
                true,
                Some(back(
                    name,
                    ticket,
                    &format!("{why}; setting it aside failed: {e}"),
                )),
            );
            Prepared::GaveBack(ticket)
        }
    }
}

/// "worker 1 (pid 10), worker 1 (pid 11) and worker 2 (pid 12)".
fn workers(names: &[String]) -> String {
    match names {
        [] => "no worker that it named".to_owned(),
        [one] => one.clone(),
        [first @ .., last] => format!("{} and {last}", first.join(", ")),
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
        // A cancel never follows a claim (but a set-aside by another worker
        // that took it again); nor does a code come into it.
        Ok(Outcome::Cancelled) | Ok(Outcome::WrongCode) | Ok(Outcome::OverLimit(_)) => (
            settle(name, delivery, Prepared::AlreadyDone(ticket)).await,
            None,
        ),
        // Claimed, then gone from the store: nobody can account for it.
        Ok(Outcome::NotFound) => {
            let why = format!(
                "order {ticket} was claimed but is no longer in the store ({})",
                store.place()
            );
            (orphan(hand, delivery, why).await, None)
        }
        // Only a new order can find the restaurant full; kept, not dropped.
        Ok(Outcome::Full) => (
            give_back_after_a_pause(
                name,
                delivery,
                "the store answered as if it were a new order",
            )
            .await,
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
