//! The in-process queue: a bounded deque shared by the web handlers and the
//! worker tasks of one process. It keeps nothing on disk; after a restart the
//! store's unfinished orders are put back with [`MemoryQueue::restore`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Backend, BackendConsumer, BackendDelivery, BackendSlot, Health, QueueError};
use crate::order::Ticket;
use crate::restaurant::Stamp;

#[derive(Clone)]
pub struct MemoryQueue {
    shared: Arc<Shared>,
}

struct Shared {
    capacity: usize,
    line: Mutex<VecDeque<Ticket>>,
    /// One permit per order in `line`.
    waiting: Semaphore,
    /// One permit per free place; a place is freed when its order is acked,
    /// not when it is handed out, so orders being prepared count too.
    room: Arc<Semaphore>,
}

/// Room for one order.
pub struct Slot {
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
}

/// An order handed to a worker; given back to the front if dropped unsettled.
pub struct Delivery {
    shared: Arc<Shared>,
    ticket: Ticket,
    settled: bool,
}

impl MemoryQueue {
    pub fn new(capacity: usize) -> Self {
        let shared = Shared {
            capacity,
            line: Mutex::new(VecDeque::new()),
            waiting: Semaphore::new(0),
            room: Arc::new(Semaphore::new(capacity)),
        };
        MemoryQueue {
            shared: Arc::new(shared),
        }
    }

    /// Puts back orders found unfinished at start-up, in this order, even past
    /// the capacity (they were accepted; they are not refused now).
    pub fn restore(&self, tickets: impl IntoIterator<Item = Ticket>) {
        for ticket in tickets {
            if let Ok(permit) = self.shared.room.try_acquire() {
                permit.forget();
            }
            self.shared.push(ticket, false);
        }
    }

    pub fn reserve(&self) -> Result<Slot, QueueError> {
        let permit = self
            .shared
            .room
            .clone()
            .try_acquire_owned()
            .map_err(|_| QueueError::Full(self.shared.capacity))?;
        Ok(Slot {
            shared: self.shared.clone(),
            permit,
        })
    }

    pub async fn next(&self) -> Delivery {
        self.shared
            .waiting
            .acquire()
            .await
            .expect("never closed")
            .forget();
        let ticket = self.shared.lock().pop_front().expect("a permit per order");
        Delivery {
            shared: self.shared.clone(),
            ticket,
            settled: false,
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Ticket>> {
        self.line.lock()
    }

    fn push(&self, ticket: Ticket, front: bool) {
        let mut line = self.lock();
        if front {
            line.push_front(ticket);
        } else {
            line.push_back(ticket);
        }
        drop(line);
        self.waiting.add_permits(1);
    }
}

impl Slot {
    pub fn send(self, ticket: Ticket) {
        // The place stays taken until the order is acked.
        self.permit.forget();
        self.shared.push(ticket, false);
    }
}

impl Delivery {
    pub fn ticket(&self) -> Ticket {
        self.ticket
    }

    pub fn ack(mut self) {
        self.settled = true;
        self.shared.room.add_permits(1);
    }

    pub fn give_back(mut self) {
        self.settled = true;
        self.shared.push(self.ticket, true);
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.push(self.ticket, true);
        }
    }
}

impl Backend for MemoryQueue {
    fn reserve(&self) -> Result<Box<dyn BackendSlot>, QueueError> {
        MemoryQueue::reserve(self).map(|slot| Box::new(slot) as Box<dyn BackendSlot>)
    }

    fn consumer(&self, _name: &str, _prefetch: u16) -> Box<dyn BackendConsumer> {
        Box::new(self.clone())
    }

    fn health(&self) -> Health {
        Health {
            state: "none",
            unavailable: None,
        }
    }

    fn depth(&self) -> Option<usize> {
        Some(self.shared.lock().len())
    }

    fn next_up(&self, n: usize) -> Option<Vec<Ticket>> {
        Some(self.shared.lock().iter().take(n).copied().collect())
    }

    fn is_durable(&self) -> bool {
        false
    }

    fn confirm_timeout(&self) -> Duration {
        Duration::ZERO
    }
}

impl BackendSlot for Slot {
    fn send(self: Box<Self>, ticket: Ticket) -> BoxFuture<'static, Result<(), QueueError>> {
        Slot::send(*self, ticket);
        std::future::ready(Ok(())).boxed()
    }
}

impl BackendConsumer for MemoryQueue {
    fn next(&mut self) -> BoxFuture<'_, Box<dyn BackendDelivery>> {
        async move { Box::new(MemoryQueue::next(self).await) as Box<dyn BackendDelivery> }.boxed()
    }
}

impl BackendDelivery for Delivery {
    fn ticket(&self) -> Ticket {
        self.ticket
    }

    /// It never left this process: this restaurant's.
    fn stamp(&self) -> Stamp {
        Stamp::Local
    }

    fn refuse(self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>> {
        Delivery::give_back(*self);
        std::future::ready(Ok(())).boxed()
    }

    /// Nowhere to keep it in this process: its place is freed, and the
    /// worker's log line (an error) is its record.
    fn orphan(self: Box<Self>, _why: String) -> BoxFuture<'static, Result<(), QueueError>> {
        Delivery::ack(*self);
        std::future::ready(Ok(())).boxed()
    }

    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>> {
        Delivery::ack(*self);
        std::future::ready(Ok(())).boxed()
    }

    fn give_back(self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>> {
        Delivery::give_back(*self);
        std::future::ready(Ok(())).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_in_first_out_but_given_back_goes_first() {
        let q = MemoryQueue::new(10);
        for t in [1, 2, 3] {
            q.reserve().unwrap().send(t);
        }
        let first = q.next().await;
        assert_eq!(first.ticket(), 1);
        first.give_back();
        let again = q.next().await;
        assert_eq!(again.ticket(), 1);
        drop(again); // a worker that vanished gives it back too
        let third = q.next().await;
        assert_eq!(third.ticket(), 1);
        third.ack();
        assert_eq!(q.next().await.ticket(), 2);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_until_an_order_is_acked() {
        let q = MemoryQueue::new(2);
        q.reserve().unwrap().send(1);
        let held = q.reserve().unwrap();
        assert!(matches!(q.reserve(), Err(QueueError::Full(2))));
        drop(held); // an unused reservation frees its place
        q.reserve().unwrap().send(2);
        let d = q.next().await;
        assert!(
            q.reserve().is_err(),
            "an order being prepared still takes its place"
        );
        d.ack();
        assert!(q.reserve().is_ok());
    }
}
