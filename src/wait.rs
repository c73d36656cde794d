//! The wait: how many orders the kitchen will start before a given one
//! (`ahead`) and when it should be READY (`estimated_ready_at`). This module
//! owns the estimate and what it is made of; it is a store [`Observer`], so
//! it sees every change from every process sharing the data directory
//! (worker processes behind RabbitMQ included), and the server asks it.
//!
//! It keeps the line as the store's changes show it: the TAKEN orders by
//! number, the PREPARING ones with the time they started, and the last few
//! preparation times (`ready_at - preparing_at`). Before the first READY it
//! assumes the configured preparation time. How many workers are at work
//! is set from outside: the configured count without a broker, the
//! consumers of the broker's `orders` queue with one (see [`crate::app`]).
//!
//! The estimate simulates the kitchen: each of the W workers is busy until
//! its PREPARING order's remaining time has passed; orders PREPARING beyond
//! W were given back by a worker that failed and wait at the front of the
//! line; then each order ahead takes the earliest free worker in turn, and
//! this one starts at the next free slot and is ready one preparation time
//! later. With steady preparation times that is what happens.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;

use crate::order::{Order, Status, Ticket, Timestamp};
use crate::store::{Observer, Origin, Record};

/// How many recent preparation times the average is made of.
const RECENT: usize = 16;

/// How long an order should wait, as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// Orders the kitchen will start before this one.
    pub ahead: usize,
    /// When it should be READY.
    pub estimated_ready_at: Timestamp,
}

/// The kitchen's line as the store's changes show it.
pub struct Wait {
    line: Mutex<Line>,
    /// Workers at work; at least one is assumed.
    workers: AtomicUsize,
    /// The preparation time assumed before any order was seen to finish.
    configured: Duration,
}

#[derive(Default)]
struct Line {
    taken: BTreeSet<Ticket>,
    /// PREPARING orders and when they started.
    preparing: BTreeMap<Ticket, SystemTime>,
    /// The last few preparation times seen.
    recent: VecDeque<Duration>,
}

impl Wait {
    /// An empty line, `workers` at work, preparation taking `prep_time`
    /// until orders are seen to take something else.
    pub fn new(workers: usize, prep_time: Duration) -> Wait {
        Wait {
            line: Mutex::new(Line::default()),
            workers: AtomicUsize::new(workers),
            configured: prep_time,
        }
    }

    /// How many workers are at work now.
    pub fn set_workers(&self, workers: usize) {
        self.workers.store(workers, Ordering::Relaxed);
    }

    pub fn workers(&self) -> usize {
        self.workers.load(Ordering::Relaxed)
    }

    /// The wait of `order`, while it is TAKEN or PREPARING (`None` after).
    pub fn estimate(&self, order: &Order) -> Option<Estimate> {
        self.estimate_at(order, SystemTime::now())
    }

    fn estimate_at(&self, order: &Order, now: SystemTime) -> Option<Estimate> {
        if !matches!(order.status, Status::Taken | Status::Preparing) {
            return None;
        }
        let line = self.line.lock();
        let prep = line.prep_time().unwrap_or(self.configured);
        let workers = self.workers().max(1);
        let mut starts: Vec<(SystemTime, Ticket)> =
            line.preparing.iter().map(|(t, at)| (*at, *t)).collect();
        starts.sort();
        // Each worker is free once its order's remaining time has passed.
        let mut free: Vec<SystemTime> = (0..workers)
            .map(|i| {
                let done = starts.get(i).map_or(now, |(at, _)| *at + prep);
                done.max(now)
            })
            .collect();
        free.sort();
        let given_back = starts.len().saturating_sub(workers);
        let ahead = match order.status {
            Status::Preparing => match starts.iter().position(|(_, t)| *t == order.ticket) {
                Some(i) if i < workers => {
                    let started = starts[i].0;
                    return Some(Estimate {
                        ahead: 0,
                        estimated_ready_at: Timestamp((started + prep).max(now)),
                    });
                }
                // Given back: behind the given-back orders that started earlier.
                Some(i) => i - workers,
                None => 0,
            },
            _ => given_back + line.taken.range(..order.ticket).count(),
        };
        drop(line);
        // Every worker is free within one preparation time from now, and
        // every order takes one preparation time: so the orders ahead take
        // the workers in turn, in the order they come free, and this one
        // starts on the (ahead mod W)-th, (ahead div W) rounds later. Constant
        // time however long the line, on the path of every `201`.
        let rounds = u32::try_from(ahead / workers).unwrap_or(u32::MAX);
        let start = free[ahead % workers] + prep.saturating_mul(rounds);
        Some(Estimate {
            ahead,
            estimated_ready_at: Timestamp(start + prep),
        })
    }
}

impl Line {
    /// The average of the recent preparation times, if any were seen.
    fn prep_time(&self) -> Option<Duration> {
        let n = self.recent.len() as u32;
        (n > 0).then(|| self.recent.iter().sum::<Duration>() / n)
    }

    fn see(&mut self, order: &Order) {
        let t = order.ticket;
        match order.status {
            Status::Taken => {
                self.taken.insert(t);
            }
            Status::Preparing => {
                self.taken.remove(&t);
                let at = order.preparing_at.map_or_else(SystemTime::now, |at| at.0);
                self.preparing.insert(t, at);
            }
            Status::Ready | Status::Collected | Status::Cancelled => {
                self.taken.remove(&t);
                let was_preparing = self.preparing.remove(&t).is_some();
                if order.status == Status::Ready
                    && was_preparing
                    && let (Some(started), Some(ready)) = (order.preparing_at, order.ready_at)
                    && let Ok(took) = ready.0.duration_since(started.0)
                {
                    if self.recent.len() == RECENT {
                        self.recent.pop_front();
                    }
                    self.recent.push_back(took);
                }
            }
        }
    }
}

impl Observer for Wait {
    fn committed(&self, records: &[Record], _origin: Origin) {
        let mut line = self.line.lock();
        for record in records {
            line.see(&record.order);
        }
    }

    fn reloaded(&self, _version: u64, live: &BTreeMap<Ticket, Order>) {
        let mut line = self.line.lock();
        line.taken.clear();
        line.preparing.clear();
        for order in live.values() {
            line.see(order);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: SystemTime, ms: u64) -> Timestamp {
        Timestamp(base + Duration::from_millis(ms))
    }

    fn order(t: Ticket, status: Status, base: SystemTime, preparing_ms: u64) -> Order {
        let mut o = Order::new(t, "x".into(), at(base, 0));
        o.status = status;
        if status != Status::Taken {
            o.preparing_at = Some(at(base, preparing_ms));
        }
        o
    }

    fn see(wait: &Wait, orders: &[Order]) {
        let records: Vec<Record> = orders
            .iter()
            .enumerate()
            .map(|(i, o)| Record {
                version: i as u64 + 1,
                order: o.clone(),
            })
            .collect();
        wait.committed(&records, Origin::Here);
    }

    #[test]
    fn one_worker_takes_the_line_in_turn() {
        let now = SystemTime::now();
        let wait = Wait::new(1, Duration::from_secs(1));
        let orders: Vec<Order> = (1..=4).map(|t| order(t, Status::Taken, now, 0)).collect();
        see(&wait, &orders);
        for (i, o) in orders.iter().enumerate() {
            let e = wait.estimate_at(o, now).unwrap();
            assert_eq!(e.ahead, i);
            assert_eq!(e.estimated_ready_at, at(now, 1000 * (i as u64 + 1)));
        }
        // Order 1 started 400 ms ago: order 2 starts when it is done.
        let started = now - Duration::from_millis(400);
        see(&wait, &[order(1, Status::Preparing, started, 0)]);
        let e = wait.estimate_at(&orders[1], now).unwrap();
        assert_eq!((e.ahead, e.estimated_ready_at), (0, at(now, 1600)));
        let first = order(1, Status::Preparing, started, 0);
        assert_eq!(
            wait.estimate_at(&first, now).unwrap().estimated_ready_at,
            at(now, 600)
        );
    }

    #[test]
    fn more_workers_and_measured_times_shorten_the_wait() {
        let now = SystemTime::now();
        let wait = Wait::new(2, Duration::from_secs(10));
        let mut done = order(9, Status::Ready, now, 0);
        done.ready_at = Some(at(now, 2000));
        see(&wait, &[order(9, Status::Preparing, now, 0), done.clone()]);
        let orders: Vec<Order> = (10..=13).map(|t| order(t, Status::Taken, now, 0)).collect();
        see(&wait, &orders);
        let ready: Vec<_> = orders
            .iter()
            .map(|o| wait.estimate_at(o, now).unwrap().estimated_ready_at)
            .collect();
        assert_eq!(
            ready,
            [at(now, 2000), at(now, 2000), at(now, 4000), at(now, 4000)]
        );
        assert_eq!(wait.estimate_at(&done, now), None);
    }

    #[test]
    fn a_long_line_takes_the_workers_in_the_order_they_come_free() {
        let now = SystemTime::now();
        let wait = Wait::new(2, Duration::from_secs(1));
        // Worker A is free in 300 ms, worker B in 800 ms.
        see(
            &wait,
            &[
                order(1, Status::Preparing, now - Duration::from_millis(700), 0),
                order(2, Status::Preparing, now - Duration::from_millis(200), 0),
            ],
        );
        let line: Vec<Order> = (3..=2002)
            .map(|t| order(t, Status::Taken, now, 0))
            .collect();
        see(&wait, &line);
        // The k-th in line starts on A then B in turn, k / 2 seconds later.
        for k in [0usize, 1, 2, 3, 1998, 1999] {
            let e = wait.estimate_at(&line[k], now).unwrap();
            let first_free = if k % 2 == 0 { 300 } else { 800 };
            assert_eq!(e.ahead, k);
            assert_eq!(
                e.estimated_ready_at,
                at(now, first_free + 1000 * (k as u64 / 2) + 1000),
                "{k}"
            );
        }
    }
}
