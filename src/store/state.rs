//! The store's view of the restaurant in memory, and the rules every change
//! must follow. Pure: the disk code replays files through [`State::apply`]
//! and the committer plans requests through [`Batch`], so one set of rules
//! guards both.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::order::{CancelledBy, Order, Status, Ticket, Timestamp, step_allowed};
use crate::pickup::PickupCode;

/// A change as everyone else sees it (the observers, the board, the broker's
/// notices, the history): the order as it is after change number `version`.
/// It has no room for a pickup code, so none can leak through it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub version: u64,
    pub order: Order,
}

/// One line of the change log: a [`Record`], plus the pickup code when the
/// change took a new order. Only the store's files hold it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub version: u64,
    pub order: Order,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickup_code: Option<PickupCode>,
}

impl Change {
    /// The change without its code, for everyone outside the store.
    pub fn record(&self) -> Record {
        Record {
            version: self.version,
            order: self.order.clone(),
        }
    }
}

impl From<Record> for Change {
    fn from(record: Record) -> Change {
        Change {
            version: record.version,
            order: record.order,
            pickup_code: None,
        }
    }
}

/// What the store knows of one ticket number.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    Live(Order),
    Collected,
    Cancelled,
    Unknown,
}

/// The set of collected ticket numbers, one bit each, in words of 64 tickets
/// kept only where there are tickets (a few hundred KiB per million). Not one
/// flat bit vector: a counter that starts high, or a ticket near `u32::MAX`,
/// would cost a bit for every number below it (512 MiB at the top).
#[derive(Default, Clone)]
pub struct TicketSet(BTreeMap<u32, u64>);

impl TicketSet {
    pub fn insert(&mut self, t: Ticket) {
        *self.0.entry(t / 64).or_default() |= 1 << (t % 64);
    }

    pub fn contains(&self, t: Ticket) -> bool {
        self.0
            .get(&(t / 64))
            .is_some_and(|w| w & (1 << (t % 64)) != 0)
    }
}

/// Why a record cannot follow the state: its files disagree with each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("change {got} follows change {expected_after}; the changes in between are missing")]
    Gap { expected_after: u64, got: u64 },
    #[error("order {0} is taken twice")]
    TakenTwice(Ticket),
    #[error("order {ticket} becomes {to} but it is {from}")]
    Backward {
        ticket: Ticket,
        from: Status,
        to: Status,
    },
    #[error("order {ticket} becomes {to} but it was never taken")]
    NeverTaken { ticket: Ticket, to: Status },
    #[error("order {ticket} is {status} twice without being claimed again")]
    Repeated { ticket: Ticket, status: Status },
}

#[derive(Default, Clone)]
pub struct State {
    /// The number of the last change applied.
    pub version: u64,
    /// Every order still in the restaurant, by ticket.
    pub live: BTreeMap<Ticket, Order>,
    pub collected: TicketSet,
    pub cancelled: TicketSet,
    /// Of the cancelled tickets, those its customer cancelled, and those the
    /// kitchen set aside (the rest: refused by the queue, or older).
    pub cancelled_by_customer: TicketSet,
    pub set_aside: TicketSet,
    /// The pickup code of each live order that has one (orders taken before
    /// there were codes have none). Private to the store: nothing outside
    /// it reads the codes, it only asks the store to check one.
    pub codes: HashMap<Ticket, PickupCode>,
    /// The highest ticket number any record mentions.
    pub highest: Ticket,
}

impl State {
    pub fn lookup(&self, t: Ticket) -> Lookup {
        match self.live.get(&t) {
            Some(order) => Lookup::Live(order.clone()),
            None if self.collected.contains(t) => Lookup::Collected,
            None if self.cancelled.contains(t) => Lookup::Cancelled,
            None => Lookup::Unknown,
        }
    }

    /// Who cancelled a cancelled order, when known.
    pub fn cancelled_by(&self, t: Ticket) -> Option<CancelledBy> {
        if self.set_aside.contains(t) {
            Some(CancelledBy::Kitchen)
        } else if self.cancelled_by_customer.contains(t) {
            Some(CancelledBy::Customer)
        } else {
            None
        }
    }

    /// Notes a cancelled order (and who cancelled it) in the sets.
    pub fn note_cancelled(&mut self, t: Ticket, by: Option<CancelledBy>) {
        self.cancelled.insert(t);
        match by {
            Some(CancelledBy::Kitchen) => self.set_aside.insert(t),
            Some(CancelledBy::Customer) => self.cancelled_by_customer.insert(t),
            None => {}
        }
    }

    /// Whether a ticket number was ever used (live, collected or cancelled).
    fn used(&self, t: Ticket) -> bool {
        self.live.contains_key(&t) || self.collected.contains(t) || self.cancelled.contains(t)
    }

    /// Applies the next change, refusing one that breaks the rules.
    pub fn apply(&mut self, record: &Change) -> Result<(), ApplyError> {
        if record.version != self.version + 1 {
            return Err(ApplyError::Gap {
                expected_after: self.version,
                got: record.version,
            });
        }
        let order = &record.order;
        let t = order.ticket;
        match (self.live.get(&t), order.status) {
            (None, Status::Taken) if !self.used(t) => {}
            (None, Status::Taken) => return Err(ApplyError::TakenTwice(t)),
            (None, to) => return Err(ApplyError::NeverTaken { ticket: t, to }),
            // A TAKEN order restated (marked queued, or lost by the line and
            // so no longer queued) is the same order. Only that restatement:
            // a line repeated as it was is a repeat.
            (Some(old), Status::Taken)
                if old.status == Status::Taken
                    && old.queued != order.queued
                    && old.content == order.content => {}
            (Some(_), Status::Taken) => return Err(ApplyError::TakenTwice(t)),
            // A claim again (the worker that had it died or gave it back)
            // restates PREPARING with one more delivery; nothing else repeats.
            (Some(old), Status::Preparing)
                if old.status == Status::Preparing && order.deliveries > old.deliveries => {}
            (Some(old), to) if old.status == to => {
                return Err(ApplyError::Repeated {
                    ticket: t,
                    status: to,
                });
            }
            (Some(old), to) if step_allowed(old.status, to, order.cancelled_by) => {}
            (Some(old), to) => {
                return Err(ApplyError::Backward {
                    ticket: t,
                    from: old.status,
                    to,
                });
            }
        }
        self.version = record.version;
        self.highest = self.highest.max(t);
        if let Some(code) = record.pickup_code {
            self.codes.insert(t, code);
        }
        match order.status {
            Status::Collected => {
                self.live.remove(&t);
                self.codes.remove(&t);
                self.collected.insert(t);
            }
            Status::Cancelled => {
                self.live.remove(&t);
                self.codes.remove(&t);
                self.note_cancelled(t, order.cancelled_by);
            }
            _ => {
                self.live.insert(t, order.clone());
            }
        }
        Ok(())
    }
}

/// What a request asks the store to do.
#[derive(Clone, Debug)]
pub enum Request {
    /// A new order, `TAKEN`, with the code its customer will need.
    Record {
        ticket: Ticket,
        content: String,
        code: PickupCode,
        /// The most orders the restaurant may hold: a new one past it is
        /// refused ([`Outcome::Full`]).
        max_live: usize,
    },
    /// One step forward to `to`. With [`Repeat::Allow`], an order already at
    /// or past `to` is left as it is and reported `Unchanged` (a redelivered
    /// order).
    Advance {
        ticket: Ticket,
        to: Status,
        repeat: Repeat,
    },
    /// A worker takes the order to prepare it: TAKEN → PREPARING, or
    /// PREPARING again when the worker that had it died or gave it back;
    /// either way one more delivery, and this worker's name. An order
    /// already READY or further is left as it is (`Unchanged`). An order
    /// PREPARING that was delivered `limit` times already is left as it is
    /// too (`OverLimit`): it is a poison order, to be set aside.
    Claim {
        ticket: Ticket,
        worker: Arc<str>,
        limit: u32,
    },
    /// The kitchen sets a poison order aside: PREPARING → CANCELLED,
    /// cancelled by the kitchen.
    SetAside(Ticket),
    /// Whether the broker holds this TAKEN order: `queued` once it
    /// confirmed it; no longer when the line lost it (the broker confirmed
    /// it, yet no queue has held it for a long while: a RabbitMQ node died
    /// with it), so the server that decided this sends it again, and a
    /// second server asking finds it done (`Unchanged`) and sends nothing.
    Queued { ticket: Ticket, queued: bool },
    /// A customer's step (collect: READY → COLLECTED, cancel: TAKEN →
    /// CANCELLED, cancelled by the customer), allowed only with the order's
    /// pickup code. `code` is what
    /// the customer gave (`None`: nothing, or nothing like a code).
    Customer {
        ticket: Ticket,
        to: Status,
        code: Option<PickupCode>,
    },
}

impl Request {
    /// Whether the answer (`outcome`) may go out before the change is
    /// fsynced. Only a first claim that moved the order (TAKEN →
    /// PREPARING): if a crash or a failed write loses it, the order is
    /// simply TAKEN again and prepared again, which at-least-once delivery
    /// allows, and the worker saves an fsync per order. Its READY comes
    /// later in the same log, so it can never survive a crash that the
    /// claim did not. A claim again waits: its delivery count is what sets
    /// a poison order aside, and a worker killed by the order would
    /// otherwise often take the count with it. Any other outcome of a claim
    /// (the order found CANCELLED, READY, collected, unknown) makes the
    /// worker let go of the message without preparing it: that may only
    /// happen once what it found is durable, or a cancel that is then cut
    /// back leaves an order TAKEN that no queue holds any more.
    pub fn answers_before_sync(&self, outcome: &Outcome) -> bool {
        let claim = matches!(
            self,
            Request::Claim { .. }
                | Request::Advance {
                    to: Status::Preparing,
                    ..
                }
        );
        claim && matches!(outcome, Outcome::Changed(_))
    }
}

/// What a step does to an order already at or past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    /// The step is refused: `WrongStatus` (a customer collecting twice).
    Refuse,
    /// The step is recognised as done: `Unchanged` (a redelivered order).
    Allow,
}

/// What happened to a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Changed(Order),
    /// A claim of an order left PREPARING: now this worker's, one more
    /// delivery; `from` is the worker that had it.
    ClaimedAgain {
        order: Order,
        from: Option<String>,
    },
    Unchanged(Order),
    /// A claim of an order PREPARING that was delivered as often as allowed:
    /// nothing done; the kitchen sets it aside ([`Request::SetAside`]).
    OverLimit(Order),
    /// The step does not apply to an order in this status.
    WrongStatus(Order),
    Collected,
    Cancelled,
    NotFound,
    /// A customer's step with a missing or wrong pickup code: nothing done.
    WrongCode,
    /// A new order refused: the restaurant already holds its most orders.
    Full,
}

/// The changes planned in one group commit, seen on top of the state they
/// will be applied to. Nothing touches the state until the disk has them.
pub struct Batch<'s> {
    state: &'s State,
    /// Changes decided before this batch and written, not yet durable, so
    /// not yet in the state: they count as made (see [`Batch::on_top`]).
    pending: u64,
    changed: HashMap<Ticket, Order>,
    /// Orders in the restaurant once the pending changes and this batch's
    /// are applied.
    live: usize,
    /// Codes of the orders this batch takes.
    codes: HashMap<Ticket, PickupCode>,
    pub records: Vec<Change>,
}

impl<'s> Batch<'s> {
    pub fn new(state: &'s State) -> Self {
        Batch {
            state,
            pending: 0,
            changed: HashMap::new(),
            live: state.live.len(),
            codes: HashMap::new(),
            records: Vec::new(),
        }
    }

    /// A batch decided on top of `pending`: changes that follow the state,
    /// written to the log, whose fsync has not finished yet (the committer
    /// decides the next batch meanwhile). Its records follow theirs.
    pub fn on_top<'p>(state: &'s State, pending: impl IntoIterator<Item = &'p Change>) -> Self {
        let mut batch = Batch::new(state);
        for change in pending {
            if let Some(code) = change.pickup_code {
                batch.codes.insert(change.order.ticket, code);
            }
            batch.count(&change.order);
            batch
                .changed
                .insert(change.order.ticket, change.order.clone());
            batch.pending += 1;
        }
        batch
    }

    fn lookup(&self, t: Ticket) -> Lookup {
        match self.changed.get(&t) {
            Some(order) if order.status == Status::Collected => Lookup::Collected,
            Some(order) if order.status == Status::Cancelled => Lookup::Cancelled,
            Some(order) => Lookup::Live(order.clone()),
            None => self.state.lookup(t),
        }
    }

    fn push(&mut self, order: Order, pickup_code: Option<PickupCode>) -> Order {
        let version = self.state.version + self.pending + self.records.len() as u64 + 1;
        self.records.push(Change {
            version,
            order: order.clone(),
            pickup_code,
        });
        if let Some(code) = pickup_code {
            self.codes.insert(order.ticket, code);
        }
        self.count(&order);
        self.changed.insert(order.ticket, order.clone());
        order
    }

    /// Counts `order`'s change in [`Batch::live`], before it is recorded.
    fn count(&mut self, order: &Order) {
        let was_live = matches!(self.lookup(order.ticket), Lookup::Live(_));
        match (was_live, order.status.is_live()) {
            (false, true) => self.live += 1,
            (true, false) => self.live = self.live.saturating_sub(1),
            _ => {}
        }
    }

    /// Whether `given` opens order `t`: its code, compared in constant time.
    /// An order taken before there were codes has none and needs none.
    fn code_fits(&self, t: Ticket, given: Option<&PickupCode>) -> bool {
        let Some(code) = self.codes.get(&t).or_else(|| self.state.codes.get(&t)) else {
            return true;
        };
        given.is_some_and(|given| code.matches(given))
    }

    /// Decides one request against the state plus the changes planned so far.
    pub fn decide(&mut self, request: &Request, now: Timestamp) -> Outcome {
        match request {
            Request::Record {
                ticket,
                content,
                code,
                max_live,
            } => match self.lookup(*ticket) {
                Lookup::Unknown if self.live >= *max_live => Outcome::Full,
                Lookup::Unknown => Outcome::Changed(
                    self.push(Order::new(*ticket, content.clone(), now), Some(*code)),
                ),
                Lookup::Live(order) => Outcome::WrongStatus(order),
                Lookup::Collected => Outcome::Collected,
                Lookup::Cancelled => Outcome::Cancelled,
            },
            Request::Advance { ticket, to, repeat } => match self.lookup(*ticket) {
                Lookup::Live(order) => match order.advanced(*to, now) {
                    Ok(next) => Outcome::Changed(self.push(next, None)),
                    Err(_) if *repeat == Repeat::Allow && order.status.rank() >= to.rank() => {
                        Outcome::Unchanged(order)
                    }
                    Err(_) => Outcome::WrongStatus(order),
                },
                Lookup::Collected => Outcome::Collected,
                Lookup::Cancelled => Outcome::Cancelled,
                Lookup::Unknown => Outcome::NotFound,
            },
            Request::Claim {
                ticket,
                worker,
                limit,
            } => match self.lookup(*ticket) {
                Lookup::Live(order)
                    if order.status == Status::Preparing && order.deliveries >= *limit =>
                {
                    Outcome::OverLimit(order)
                }
                Lookup::Live(order) => match order.claimed(worker, now) {
                    Ok(next) if order.status == Status::Preparing => Outcome::ClaimedAgain {
                        order: self.push(next, None),
                        from: order.worker,
                    },
                    Ok(next) => Outcome::Changed(self.push(next, None)),
                    Err(_) => Outcome::Unchanged(order),
                },
                Lookup::Collected => Outcome::Collected,
                Lookup::Cancelled => Outcome::Cancelled,
                Lookup::Unknown => Outcome::NotFound,
            },
            Request::SetAside(ticket) => match self.lookup(*ticket) {
                Lookup::Live(order) => match order.set_aside(now) {
                    Ok(next) => Outcome::Changed(self.push(next, None)),
                    Err(_) => Outcome::WrongStatus(order),
                },
                Lookup::Collected => Outcome::Collected,
                Lookup::Cancelled => Outcome::Cancelled,
                Lookup::Unknown => Outcome::NotFound,
            },
            Request::Queued { ticket, queued } => match self.lookup(*ticket) {
                Lookup::Live(order) if order.status == Status::Taken && order.queued != *queued => {
                    Outcome::Changed(self.push(
                        Order {
                            queued: *queued,
                            ..order
                        },
                        None,
                    ))
                }
                Lookup::Live(order) => Outcome::Unchanged(order),
                Lookup::Collected => Outcome::Collected,
                Lookup::Cancelled => Outcome::Cancelled,
                Lookup::Unknown => Outcome::NotFound,
            },
            // The code is checked first: without it, nobody learns anything
            // a board does not show already.
            Request::Customer { ticket, to, code } => match self.lookup(*ticket) {
                Lookup::Live(_) if !self.code_fits(*ticket, code.as_ref()) => Outcome::WrongCode,
                Lookup::Live(order) => {
                    let next = match to {
                        Status::Cancelled => order.cancelled_by_customer(now),
                        _ => order.advanced(*to, now),
                    };
                    match next {
                        Ok(next) => Outcome::Changed(self.push(next, None)),
                        Err(_) => Outcome::WrongStatus(order),
                    }
                }
                Lookup::Collected => Outcome::Collected,
                Lookup::Cancelled => Outcome::Cancelled,
                Lookup::Unknown => Outcome::NotFound,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> PickupCode {
        PickupCode::parse("123456").unwrap()
    }

    fn record(state: &State, t: Ticket) -> Change {
        let mut batch = Batch::new(state);
        batch.decide(
            &Request::Record {
                ticket: t,
                content: "x".into(),
                code: code(),
                max_live: usize::MAX,
            },
            Timestamp::now(),
        );
        batch.records.pop().unwrap()
    }

    #[test]
    fn a_full_restaurant_refuses_new_orders_until_one_leaves() {
        let mut state = State::default();
        state.apply(&record(&state, 1)).unwrap();
        let now = Timestamp::now();
        let new = |ticket| Request::Record {
            ticket,
            content: "x".into(),
            code: code(),
            max_live: 2,
        };
        // One live, one pending (written, not yet durable): full.
        let pending = record(&state, 2);
        let mut batch = Batch::on_top(&state, [&pending]);
        assert_eq!(batch.decide(&new(3), now), Outcome::Full);
        // The customer of order 1 cancels in the same batch: room for one.
        let cancel = Request::Customer {
            ticket: 1,
            to: Status::Cancelled,
            code: Some(code()),
        };
        assert!(matches!(batch.decide(&cancel, now), Outcome::Changed(_)));
        assert!(matches!(batch.decide(&new(3), now), Outcome::Changed(_)));
        assert_eq!(batch.decide(&new(4), now), Outcome::Full);
    }

    #[test]
    fn a_batch_on_top_of_changes_in_flight_sees_them_and_numbers_after_them() {
        let state = State::default();
        let mut first = Batch::new(&state);
        let now = Timestamp::now();
        first.decide(
            &Request::Record {
                ticket: 1,
                content: "x".into(),
                code: code(),
                max_live: usize::MAX,
            },
            now,
        );
        let in_flight = first.records;
        let mut next = Batch::on_top(&state, &in_flight);
        let claim = Request::Advance {
            ticket: 1,
            to: Status::Preparing,
            repeat: Repeat::Refuse,
        };
        assert!(matches!(next.decide(&claim, now), Outcome::Changed(_)));
        let again = Request::Record {
            ticket: 1,
            content: "y".into(),
            code: code(),
            max_live: usize::MAX,
        };
        assert!(matches!(next.decide(&again, now), Outcome::WrongStatus(_)));
        let collect = Request::Customer {
            ticket: 1,
            to: Status::Collected,
            code: Some(PickupCode::parse("654321").unwrap()),
        };
        assert_eq!(
            next.decide(&collect, now),
            Outcome::WrongCode,
            "its code is in flight too"
        );
        assert_eq!(next.records[0].version, 2);
        assert_eq!(state.version, 0, "the state waits for the disk");
    }

    #[test]
    fn a_batch_sees_its_own_changes_and_the_state_waits_for_the_disk() {
        let state = State::default();
        let mut batch = Batch::new(&state);
        let now = Timestamp::now();
        let step = |to| Request::Advance {
            ticket: 1,
            to,
            repeat: Repeat::Refuse,
        };
        assert!(matches!(
            batch.decide(
                &Request::Record {
                    ticket: 1,
                    content: "x".into(),
                    code: code(),
                    max_live: usize::MAX,
                },
                now
            ),
            Outcome::Changed(_)
        ));
        assert!(matches!(
            batch.decide(&step(Status::Collected), now),
            Outcome::WrongStatus(_)
        ));
        assert!(matches!(
            batch.decide(&step(Status::Preparing), now),
            Outcome::Changed(_)
        ));
        assert!(matches!(
            batch.decide(&step(Status::Ready), now),
            Outcome::Changed(_)
        ));
        assert!(matches!(
            batch.decide(&step(Status::Collected), now),
            Outcome::Changed(_)
        ));
        assert_eq!(
            batch.decide(&step(Status::Collected), now),
            Outcome::Collected
        );
        assert_eq!(
            batch.records.iter().map(|r| r.version).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(state.lookup(1), Lookup::Unknown);

        let records = batch.records;
        let mut state = state;
        for r in &records {
            state.apply(r).unwrap();
        }
        assert_eq!(state.lookup(1), Lookup::Collected);
        assert_eq!((state.version, state.highest), (4, 1));
    }

    #[test]
    fn a_redelivered_step_is_recognised_not_repeated() {
        let mut state = State::default();
        state.apply(&record(&state, 9)).unwrap();
        let claim = Request::Advance {
            ticket: 9,
            to: Status::Preparing,
            repeat: Repeat::Allow,
        };
        let finish = Request::Advance {
            ticket: 9,
            to: Status::Ready,
            repeat: Repeat::Allow,
        };
        let mut batch = Batch::new(&state);
        assert!(matches!(
            batch.decide(&claim, Timestamp::now()),
            Outcome::Changed(_)
        ));
        assert!(matches!(
            batch.decide(&claim, Timestamp::now()),
            Outcome::Unchanged(_)
        ));
        assert!(matches!(
            batch.decide(&finish, Timestamp::now()),
            Outcome::Changed(_)
        ));
        assert!(matches!(
            batch.decide(&claim, Timestamp::now()),
            Outcome::Unchanged(_)
        ));
        assert!(matches!(
            batch.decide(&finish, Timestamp::now()),
            Outcome::Unchanged(_)
        ));
        assert_eq!(batch.records.len(), 2);
    }

    #[test]
    fn a_claim_again_names_the_new_worker_and_counts_the_delivery() {
        let mut state = State::default();
        state.apply(&record(&state, 5)).unwrap();
        let claim = |worker: &str| Request::Claim {
            ticket: 5,
            worker: worker.into(),
            limit: 5,
        };
        let mut batch = Batch::new(&state);
        let now = Timestamp::now();
        let first = batch.decide(&claim("worker 1 (pid 10)"), now);
        assert!(matches!(&first, Outcome::Changed(o)
            if o.status == Status::Preparing && o.deliveries == 1
                && o.worker.as_deref() == Some("worker 1 (pid 10)")));
        let again = batch.decide(&claim("worker 2 (pid 11)"), now);
        assert!(
            matches!(&again, Outcome::ClaimedAgain { order: o, from: Some(from) }
            if o.status == Status::Preparing && o.deliveries == 2
                && o.worker.as_deref() == Some("worker 2 (pid 11)")
                && from == "worker 1 (pid 10)")
        );
        let ready = Request::Advance {
            ticket: 5,
            to: Status::Ready,
            repeat: Repeat::Allow,
        };
        assert!(matches!(batch.decide(&ready, now), Outcome::Changed(o) if o.deliveries == 2));
        assert!(matches!(
            batch.decide(&claim("worker 3 (pid 12)"), now),
            Outcome::Unchanged(o) if o.status == Status::Ready
        ));
        let records = batch.records;
        assert_eq!(records.len(), 3);
        let mut replayed = state.clone();
        for r in &records {
            replayed.apply(r).unwrap();
        }
        // A PREPARING line repeated without a new delivery breaks the rules.
        let mut repeat = records[1].clone();
        state.apply(&records[0]).unwrap();
        repeat.order.deliveries = 1;
        assert_eq!(
            state.apply(&repeat),
            Err(ApplyError::Repeated {
                ticket: 5,
                status: Status::Preparing
            })
        );
    }

    #[test]
    fn an_order_delivered_as_often_as_allowed_is_set_aside_by_the_kitchen_alone() {
        let mut state = State::default();
        state.apply(&record(&state, 6)).unwrap();
        let claim = |n: u32| Request::Claim {
            ticket: 6,
            worker: format!("worker 1 (pid {n})").into(),
            limit: 2,
        };
        let now = Timestamp::now();
        let mut batch = Batch::new(&state);
        assert!(matches!(batch.decide(&claim(1), now), Outcome::Changed(o) if o.deliveries == 1));
        assert!(matches!(
            batch.decide(&claim(2), now),
            Outcome::ClaimedAgain { order: o, .. } if o.deliveries == 2
        ));
        assert!(
            matches!(batch.decide(&claim(3), now), Outcome::OverLimit(o) if o.deliveries == 2),
            "the third delivery of two allowed"
        );
        let cancel = Request::Customer {
            ticket: 6,
            to: Status::Cancelled,
            code: Some(code()),
        };
        assert!(
            matches!(batch.decide(&cancel, now), Outcome::WrongStatus(_)),
            "the customer cannot cancel it once PREPARING"
        );
        let aside = batch.decide(&Request::SetAside(6), now);
        assert!(matches!(&aside, Outcome::Changed(o)
            if o.status == Status::Cancelled
                && o.cancelled_by == Some(CancelledBy::Kitchen)
                && o.dropped_by == ["worker 1 (pid 1)", "worker 1 (pid 2)"]));
        assert_eq!(batch.decide(&claim(4), now), Outcome::Cancelled);
        assert_eq!(batch.decide(&Request::SetAside(6), now), Outcome::Cancelled);
        let records = batch.records;
        assert_eq!(records.len(), 3);
        let mut replayed = state.clone();
        for r in &records {
            replayed.apply(r).unwrap();
        }
        assert_eq!(replayed.lookup(6), Lookup::Cancelled);
        assert_eq!(replayed.cancelled_by(6), Some(CancelledBy::Kitchen));
        // PREPARING → CANCELLED by anyone but the kitchen breaks the rules.
        let mut forged = records[2].clone();
        forged.order.cancelled_by = Some(CancelledBy::Customer);
        let mut partial = state.clone();
        partial.apply(&records[0]).unwrap();
        partial.apply(&records[1]).unwrap();
        assert_eq!(
            partial.apply(&forged),
            Err(ApplyError::Backward {
                ticket: 6,
                from: Status::Preparing,
                to: Status::Cancelled
            })
        );
        forged.order.cancelled_by = None;
        assert!(partial.apply(&forged).is_err());
        // And the kitchen never cancels a TAKEN order.
        let mut early = records[2].clone();
        early.version = 2;
        assert!(state.clone().apply(&early).is_err());
        // A first claim may be answered before its fsync; a claim again may not.
        assert!(claim(1).answers_before_sync(&Outcome::Changed(records[0].order.clone())));
        assert!(!claim(2).answers_before_sync(&Outcome::ClaimedAgain {
            order: records[1].order.clone(),
            from: None
        }));
    }

    #[test]
    fn marking_an_order_queued_or_lost_restates_it_once() {
        let mut state = State::default();
        state.apply(&record(&state, 4)).unwrap();
        let mut batch = Batch::new(&state);
        let mark = Request::Queued {
            ticket: 4,
            queued: true,
        };
        assert!(matches!(batch.decide(&mark, Timestamp::now()), Outcome::Changed(o) if o.queued));
        assert!(matches!(
            batch.decide(&mark, Timestamp::now()),
            Outcome::Unchanged(_)
        ));
        let records = batch.records;
        state.apply(&records[0]).unwrap();
        assert!(
            matches!(state.lookup(4), Lookup::Live(o) if o.queued && o.status == Status::Taken)
        );
        // The line loses it: no longer queued, once, then queued again.
        let mut batch = Batch::new(&state);
        let lost = Request::Queued {
            ticket: 4,
            queued: false,
        };
        assert!(matches!(batch.decide(&lost, Timestamp::now()), Outcome::Changed(o) if !o.queued));
        assert!(matches!(
            batch.decide(&lost, Timestamp::now()),
            Outcome::Unchanged(_)
        ));
        assert!(matches!(batch.decide(&mark, Timestamp::now()), Outcome::Changed(o) if o.queued));
        for record in batch.records {
            state.apply(&record).unwrap();
        }
        assert!(matches!(state.lookup(4), Lookup::Live(o) if o.queued));
        let mut repeated = match state.lookup(4) {
            Lookup::Live(order) => Change {
                version: state.version + 1,
                order,
                pickup_code: None,
            },
            other => panic!("{other:?}"),
        };
        assert_eq!(state.apply(&repeated), Err(ApplyError::TakenTwice(4)));
        repeated.order.queued = false;
        state.apply(&repeated).unwrap();
        let mut other = record(&State::default(), 4);
        other.version = state.version + 1;
        other.order.content = "something else".into();
        assert_eq!(state.apply(&other), Err(ApplyError::TakenTwice(4)));
    }

    #[test]
    fn replay_refuses_gaps_repeats_and_backward_steps() {
        let mut state = State::default();
        let first = record(&state, 1);
        state.apply(&first).unwrap();
        let mut again = first.clone();
        again.version = 2;
        assert_eq!(state.apply(&again), Err(ApplyError::TakenTwice(1)));
        let mut gap = record(&state, 2);
        gap.version = 5;
        assert_eq!(
            state.apply(&gap),
            Err(ApplyError::Gap {
                expected_after: 1,
                got: 5
            })
        );
        let mut ready = first.clone();
        ready.version = 2;
        ready.order.status = Status::Ready;
        assert_eq!(
            state.apply(&ready),
            Err(ApplyError::Backward {
                ticket: 1,
                from: Status::Taken,
                to: Status::Ready
            })
        );
        let mut ghost = first;
        ghost.version = 2;
        ghost.order.ticket = 3;
        ghost.order.status = Status::Preparing;
        assert_eq!(
            state.apply(&ghost),
            Err(ApplyError::NeverTaken {
                ticket: 3,
                to: Status::Preparing
            })
        );
    }

    #[test]
    fn only_a_claim_that_moved_the_order_is_answered_before_it_is_durable() {
        let mut state = State::default();
        state.apply(&record(&state, 1)).unwrap();
        state.apply(&record(&state, 2)).unwrap();
        let now = Timestamp::now();
        let mut first = Batch::new(&state);
        let cancel = Request::Customer {
            ticket: 2,
            to: Status::Cancelled,
            code: Some(code()),
        };
        assert!(matches!(first.decide(&cancel, now), Outcome::Changed(_)));
        assert!(!cancel.answers_before_sync(&Outcome::Cancelled));
        // The cancel is in flight; a claim decided on top of it finds it.
        let in_flight = first.records;
        let mut next = Batch::on_top(&state, &in_flight);
        let claim = |ticket| Request::Claim {
            ticket,
            worker: "worker 1 (pid 1)".into(),
            limit: 5,
        };
        let moved = next.decide(&claim(1), now);
        assert!(claim(1).answers_before_sync(&moved), "{moved:?}");
        let found_cancelled = next.decide(&claim(2), now);
        assert_eq!(found_cancelled, Outcome::Cancelled);
        assert!(
            !claim(2).answers_before_sync(&found_cancelled),
            "a worker skips a cancelled order only once the cancel is durable"
        );
        let again = next.decide(&claim(1), now);
        assert!(matches!(again, Outcome::ClaimedAgain { .. }));
        assert!(
            !claim(1).answers_before_sync(&again),
            "a claim again waits: its delivery count sets a poison order aside"
        );
        let ready = Request::Advance {
            ticket: 1,
            to: Status::Ready,
            repeat: Repeat::Allow,
        };
        let readied = next.decide(&ready, now);
        assert!(!ready.answers_before_sync(&readied));
        let redelivered = next.decide(&claim(1), now);
        assert!(matches!(redelivered, Outcome::Unchanged(_)));
        assert!(!claim(1).answers_before_sync(&redelivered));
        for gone in [Outcome::NotFound, Outcome::Collected] {
            assert!(!claim(9).answers_before_sync(&gone));
        }
    }

    #[test]
    fn the_ticket_set_remembers_what_it_holds() {
        let mut set = TicketSet::default();
        for t in [0, 1, 63, 64, 100_000, u32::MAX] {
            set.insert(t);
        }
        assert!(
            [0, 1, 63, 64, 100_000, u32::MAX]
                .iter()
                .all(|t| set.contains(*t))
        );
        assert!(
            ![2, 62, 65, 99_999, u32::MAX - 1]
                .iter()
                .any(|t| set.contains(*t))
        );
    }
}
