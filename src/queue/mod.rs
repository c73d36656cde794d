//! Where orders wait between the counter and the kitchen: first in, first
//! out, except that an order a worker gives back goes to the front.
//!
//! Two kinds behind one type: [`memory`], in this process (nothing to
//! install; after a restart the store's unfinished orders are put back), and
//! RabbitMQ ([`crate::broker`]: durable, shared by any number of processes).
//!
//! The server side calls [`Queue::reserve`] before an order is numbered, so a
//! full or unreachable queue costs no ticket, then [`Slot::send`] once the
//! order is stored. Each worker has its own [`Consumer`] and settles every
//! [`Delivery`] with `ack` once the order is READY, or `give_back`.

pub mod memory;

use crate::broker::{Broker, OrderConsumer, OrderDelivery};
use crate::order::Ticket;

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is full: {0} orders are waiting")]
    Full(usize),
    #[error("{0}")]
    Unavailable(String),
}

/// A queue of either kind; cheap to clone.
#[derive(Clone)]
pub enum Queue {
    Memory(memory::MemoryQueue),
    Amqp(Broker),
}

/// Room for one order, promised before it was numbered.
pub enum Slot {
    Memory(memory::Slot),
    Amqp(Broker),
}

/// One worker's end of the queue.
pub enum Consumer {
    Memory(memory::MemoryQueue),
    Amqp(OrderConsumer),
}

/// An order handed to one worker. Dropping it unsettled gives it back.
pub enum Delivery {
    Memory(memory::Delivery),
    Amqp(OrderDelivery),
}

impl Queue {
    /// Room for one more order, or why there is none.
    pub fn reserve(&self) -> Result<Slot, QueueError> {
        match self {
            Queue::Memory(q) => q.reserve().map(Slot::Memory),
            Queue::Amqp(broker) => match broker.unavailable() {
                Some(e) => Err(e),
                None => Ok(Slot::Amqp(broker.clone())),
            },
        }
    }

    /// A consumer for one worker.
    pub fn consumer(&self, name: &str) -> Consumer {
        match self {
            Queue::Memory(q) => Consumer::Memory(q.clone()),
            Queue::Amqp(broker) => Consumer::Amqp(broker.consumer(name)),
        }
    }

    /// Whether the queue outlives this process (so it needs no restoring).
    pub fn is_durable(&self) -> bool {
        matches!(self, Queue::Amqp(_))
    }
}

impl Slot {
    /// Queues `ticket` in the reserved room; with a broker, returns once the
    /// broker has confirmed it.
    pub async fn send(self, ticket: Ticket) -> Result<(), QueueError> {
        match self {
            Slot::Memory(slot) => {
                slot.send(ticket);
                Ok(())
            }
            Slot::Amqp(broker) => broker.publish_order(ticket, 0).await,
        }
    }
}

impl Consumer {
    /// The next order; waits until there is one.
    pub async fn next(&mut self) -> Delivery {
        match self {
            Consumer::Memory(q) => Delivery::Memory(q.next().await),
            Consumer::Amqp(c) => Delivery::Amqp(c.next().await),
        }
    }
}

impl Delivery {
    pub fn ticket(&self) -> Ticket {
        match self {
            Delivery::Memory(d) => d.ticket(),
            Delivery::Amqp(d) => d.ticket,
        }
    }

    /// The order is done with (READY, or nothing left to do): forget it.
    pub async fn ack(self) -> Result<(), QueueError> {
        match self {
            Delivery::Memory(d) => {
                d.ack();
                Ok(())
            }
            Delivery::Amqp(d) => d.ack().await,
        }
    }

    /// This worker could not finish it: back to the front of the line.
    pub async fn give_back(self) -> Result<(), QueueError> {
        match self {
            Delivery::Memory(d) => {
                d.give_back();
                Ok(())
            }
            Delivery::Amqp(d) => d.give_back().await,
        }
    }
}
