//! Where orders wait between the counter and the kitchen: first in, first
//! out, except that an order a worker gives back goes to the front.
//!
//! Two kinds, behind one type: [`memory`], in this process (nothing to
//! install; the store re-queues unfinished orders after a restart), and
//! RabbitMQ (durable, shared by processes).
//!
//! The server side calls [`Queue::reserve`] before an order is numbered, so a
//! full or unreachable queue costs no ticket, then [`Slot::send`] once the
//! order is stored. The kitchen side calls [`Queue::next`], and settles each
//! [`Delivery`] with `ack` once the order is READY, or `give_back`.

pub mod memory;

use crate::order::Ticket;

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is full: {0} orders are waiting")]
    Full(usize),
    #[error("the order queue is unavailable: {0}")]
    Unavailable(String),
}

/// A queue of either kind; cheap to clone.
#[derive(Clone)]
pub enum Queue {
    Memory(memory::MemoryQueue),
}

/// Room for one order, promised before it was numbered.
pub enum Slot {
    Memory(memory::Slot),
}

/// An order handed to one worker. Dropping it unsettled gives it back.
pub enum Delivery {
    Memory(memory::Delivery),
}

impl Queue {
    /// Room for one more order, or why there is none.
    pub async fn reserve(&self) -> Result<Slot, QueueError> {
        match self {
            Queue::Memory(q) => q.reserve().map(Slot::Memory),
        }
    }

    /// The next order for a worker; waits until there is one.
    pub async fn next(&self) -> Result<Delivery, QueueError> {
        match self {
            Queue::Memory(q) => Ok(Delivery::Memory(q.next().await)),
        }
    }

    /// Orders waiting, not counting those being prepared.
    pub fn waiting(&self) -> usize {
        match self {
            Queue::Memory(q) => q.waiting(),
        }
    }
}

impl Slot {
    /// Queues `ticket` in the reserved room.
    pub async fn send(self, ticket: Ticket) -> Result<(), QueueError> {
        match self {
            Slot::Memory(slot) => {
                slot.send(ticket);
                Ok(())
            }
        }
    }
}

impl Delivery {
    pub fn ticket(&self) -> Ticket {
        match self {
            Delivery::Memory(d) => d.ticket(),
        }
    }

    /// The order is done with (READY, or nothing left to do): forget it.
    pub async fn ack(self) -> Result<(), QueueError> {
        match self {
            Delivery::Memory(d) => {
                d.ack();
                Ok(())
            }
        }
    }

    /// This worker could not finish it: back to the front of the line.
    pub async fn give_back(self) -> Result<(), QueueError> {
        match self {
            Delivery::Memory(d) => {
                d.give_back();
                Ok(())
            }
        }
    }
}
