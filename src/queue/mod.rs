//! Where orders wait between the counter and the kitchen: first in, first
//! out, except that an order a worker gives back goes to the front.
//!
//! This module says what a queue does ([`Backend`] and the traits of its
//! slots, consumers and deliveries), what goes wrong ([`QueueError`]) and what
//! a queue tells about itself ([`Health`], depth); the handles the rest of
//! the program holds ([`Queue`], [`Slot`], [`Consumer`], [`Delivery`]) work
//! the same whatever is behind them. Two kinds implement it: [`memory`], in
//! this process (nothing to install; after a restart the store's unfinished
//! orders are put back), and the broker (RabbitMQ: durable, shared by any
//! number of processes), which depends on this module, never the reverse.
//!
//! The server side calls [`Queue::reserve`] before an order is numbered, so a
//! full or unreachable queue costs no ticket, then [`Slot::send`] once the
//! order is stored. Each worker has its own [`Consumer`] and settles every
//! [`Delivery`] with `ack` once the order is READY, or `give_back`.

pub mod memory;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::order::Ticket;
use crate::restaurant::Stamp;

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is full: {0} orders are waiting")]
    Full(usize),
    #[error("{0}")]
    Unavailable(String),
}

/// What a queue can tell about itself right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// One word for a readiness check: `none` (the queue is in this process:
    /// nothing to reach), `connected`, `disconnected` or `blocked`.
    pub state: &'static str,
    /// Why an order cannot be queued now, or `None` when it can.
    pub unavailable: Option<String>,
}

/// A kind of queue.
pub trait Backend: Send + Sync + 'static {
    /// Room for one more order, or why there is none.
    fn reserve(&self) -> Result<Box<dyn BackendSlot>, QueueError>;
    /// A consumer for one worker, handed at most `prefetch` orders at a
    /// time where the queue can tell (a broker; the in-process queue hands
    /// out one when asked).
    fn consumer(&self, name: &str, prefetch: u16) -> Box<dyn BackendConsumer>;
    /// Whether it can take orders now, and if not why.
    fn health(&self) -> Health;
    /// Orders waiting for a worker, or `None` if the queue cannot tell.
    fn depth(&self) -> Option<usize>;
    /// Orders waiting for a worker, asked now even if that costs a round trip
    /// to a broker (for a metrics scrape); by default [`Backend::depth`].
    fn count_waiting(&self) -> BoxFuture<'_, Option<usize>> {
        Box::pin(std::future::ready(self.depth()))
    }
    /// The first `n` orders of the line, in the order workers will get
    /// them, or `None` if the queue cannot show them (a broker's queue
    /// cannot be read without taking the messages).
    fn next_up(&self, _n: usize) -> Option<Vec<Ticket>> {
        None
    }
    /// Whether the queue outlives this process (so it needs no restoring).
    fn is_durable(&self) -> bool;
    /// The longest [`Slot::send`] waits for the queue to confirm an order.
    fn confirm_timeout(&self) -> Duration;
}

/// Room for one order, promised by [`Backend::reserve`].
pub trait BackendSlot: Send {
    fn send(self: Box<Self>, ticket: Ticket) -> BoxFuture<'static, Result<(), QueueError>>;
}

/// One worker's end of a queue.
pub trait BackendConsumer: Send + Sync {
    fn next(&mut self) -> BoxFuture<'_, Box<dyn BackendDelivery>>;
}

/// An order handed to one worker. Dropping it unsettled gives it back.
pub trait BackendDelivery: Send {
    fn ticket(&self) -> Ticket;
    /// Whether the queue says it was delivered before, to a worker that did
    /// not settle it (a broker's `redelivered` flag). By default the queue
    /// cannot tell, and the store's view is all there is.
    fn redelivered(&self) -> bool {
        false
    }
    /// What it says of its restaurant.
    fn stamp(&self) -> Stamp;
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>>;
    fn give_back(self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>>;
    /// Back to the queue untouched, where it was (not republished).
    fn refuse(self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>>;
    /// An order no store here knows: out of the line, but kept where a
    /// person can find it (`why` says why), instead of being acknowledged.
    fn orphan(self: Box<Self>, why: String) -> BoxFuture<'static, Result<(), QueueError>>;
    /// A poison order, set aside: done with here, and kept where an
    /// operator can look at it. By default the queue keeps nothing: the
    /// store's CANCELLED order (cancelled by the kitchen) and the log are
    /// its record (the in-process queue). The broker copies the message to
    /// its dead-letter queue first. Answers where the copy went, if anywhere.
    fn set_aside(
        self: Box<Self>,
        _why: SetAside,
    ) -> BoxFuture<'static, Result<Option<&'static str>, QueueError>> {
        let acked = self.ack();
        Box::pin(async move { acked.await.map(|()| None) })
    }
}

/// Why an order was set aside, for its dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// How many times workers took it, when known (not when a worker
    /// found it set aside already, by a process that died before copying
    /// its message).
    pub deliveries: Option<u32>,
    /// The workers that had it and did not finish it, oldest first.
    pub dropped_by: Vec<String>,
    /// The worker that set it aside.
    pub by: String,
}

/// A queue of any kind; cheap to clone.
#[derive(Clone)]
pub struct Queue(Arc<dyn Backend>);

/// Room for one order, promised before it was numbered.
pub struct Slot(Box<dyn BackendSlot>);

/// One worker's end of the queue.
pub struct Consumer(Box<dyn BackendConsumer>);

/// An order handed to one worker. Dropping it unsettled gives it back.
pub struct Delivery(Box<dyn BackendDelivery>);

impl Queue {
    pub fn new(backend: impl Backend) -> Self {
        Queue(Arc::new(backend))
    }

    /// Room for one more order, or why there is none.
    pub fn reserve(&self) -> Result<Slot, QueueError> {
        self.0.reserve().map(Slot)
    }

    /// A consumer for one worker, handed at most `prefetch` orders ahead.
    pub fn consumer(&self, name: &str, prefetch: u16) -> Consumer {
        Consumer(self.0.consumer(name, prefetch))
    }

    /// Whether it can take orders now, and if not why.
    pub fn health(&self) -> Health {
        self.0.health()
    }

    /// Orders waiting for a worker, or `None` if the queue cannot tell.
    pub fn depth(&self) -> Option<usize> {
        self.0.depth()
    }

    /// Orders waiting for a worker, asked now (a round trip to a broker).
    pub async fn count_waiting(&self) -> Option<usize> {
        self.0.count_waiting().await
    }

    /// The first `n` orders of the line, if the queue can show them.
    pub fn next_up(&self, n: usize) -> Option<Vec<Ticket>> {
        self.0.next_up(n)
    }

    /// Whether the queue outlives this process (so it needs no restoring).
    pub fn is_durable(&self) -> bool {
        self.0.is_durable()
    }

    /// The longest [`Slot::send`] waits for the queue to confirm an order.
    pub fn confirm_timeout(&self) -> Duration {
        self.0.confirm_timeout()
    }
}

impl Slot {
    /// Queues `ticket` in the reserved room; with a broker, returns once the
    /// broker has confirmed it.
    pub async fn send(self, ticket: Ticket) -> Result<(), QueueError> {
        self.0.send(ticket).await
    }
}

impl Consumer {
    /// The next order; waits until there is one.
    pub async fn next(&mut self) -> Delivery {
        Delivery(self.0.next().await)
    }
}

impl Delivery {
    pub fn ticket(&self) -> Ticket {
        self.0.ticket()
    }

    /// Whether the queue says it was delivered before and not settled.
    pub fn redelivered(&self) -> bool {
        self.0.redelivered()
    }

    /// What it says of its restaurant.
    pub fn stamp(&self) -> Stamp {
        self.0.stamp()
    }

    /// Not this restaurant's: back to the queue untouched, for another.
    pub async fn refuse(self) -> Result<(), QueueError> {
        self.0.refuse().await
    }

    /// An order nobody can account for: out of the line, but kept where a
    /// person can find it (RabbitMQ's `orders.orphaned`), never simply
    /// acknowledged.
    pub async fn orphan(self, why: String) -> Result<(), QueueError> {
        self.0.orphan(why).await
    }

    /// The order is done with (READY, or nothing left to do): forget it.
    pub async fn ack(self) -> Result<(), QueueError> {
        self.0.ack().await
    }

    /// This worker could not finish it: back to the front of the line.
    pub async fn give_back(self) -> Result<(), QueueError> {
        crate::metrics::given_back();
        self.0.give_back().await
    }

    /// A poison order that the store has set aside: out of the line, to the
    /// dead letters where the queue keeps them (see [`BackendDelivery::set_aside`]).
    /// Answers where the message went (`orders.dead`), or `None` when the
    /// queue keeps no dead letters (the in-process queue).
    pub async fn set_aside(self, why: SetAside) -> Result<Option<&'static str>, QueueError> {
        self.0.set_aside(why).await
    }
}
