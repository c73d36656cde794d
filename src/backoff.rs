//! The one retry policy: wait `min`, then `factor` times longer after each
//! failure, never longer than `max`, and back to `min` after a success.
//! Every loop that retries (the file-lock wait, the broker's reconnection,
//! a worker's consumer, the front's cancel retry) keeps its own constants
//! here, so each pause is written once. Hand-written rather than a retry
//! crate: the callers pause inside `select!`s, blocking polls and counted
//! loops, which want the next pause, not a wrapped closure.

use std::time::Duration;

/// A pause that grows after each failure. Cheap to copy.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    factor: u32,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`, multiplies by `factor` (1: a steady pace), stops at `max`.
    pub const fn new(min: Duration, max: Duration, factor: u32) -> Self {
        Backoff {
            min,
            max,
            factor,
            next: min,
        }
    }

    /// The same pause every time.
    pub const fn steady(pause: Duration) -> Self {
        Backoff::new(pause, pause, 1)
    }

    /// The pause to take now; the one after it is longer.
    pub fn pause(&mut self) -> Duration {
        let now = self.next;
        self.next = (now * self.factor).min(self.max);
        now
    }

    /// The pause `pause` will return, without moving on.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// After a success: start again from the shortest pause.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Waiting for another process's file lock: fine-grained at first (a lock
/// is usually held for one fsync), at most 20 ms between tries.
pub const LOCK_POLL: Backoff =
    Backoff::new(Duration::from_micros(50), Duration::from_millis(20), 2);

/// Reconnecting to the broker: 100 ms, doubling, at most 5 s.
pub const RECONNECT: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5), 2);

/// Reconnecting to PostgreSQL: 100 ms, doubling, at most 2 s, so that a
/// promoted standby takes orders within seconds of its promotion.
pub const DATABASE_RECONNECT: Backoff =
    Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 2);

/// Opening a consumer or a change listener again after it failed on a live
/// connection (the connection itself is [`RECONNECT`]'s).
pub const REOPEN: Backoff = Backoff::steady(Duration::from_millis(100));

/// A worker whose store cannot be written: it gives the order back and
/// waits 500 ms, then twice as long after each failure in a row, at most
/// 15 s, instead of taking the order again twice a second.
pub const STORE_FAILING: Backoff =
    Backoff::new(Duration::from_millis(500), Duration::from_secs(15), 2);

/// Cancelling an order the queue refused, while the store fails: once a second.
pub const CANCEL_RETRY: Backoff = Backoff::steady(Duration::from_secs(1));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_cap_and_start_again_after_a_reset() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(500), 2);
        let pauses: Vec<_> = (0..5).map(|_| backoff.pause()).collect();
        assert_eq!(pauses, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
        backoff.reset();
        assert_eq!(backoff.pause(), ms(100));
        let mut steady = Backoff::steady(ms(7));
        assert_eq!([steady.pause(), steady.pause()], [ms(7), ms(7)]);
    }
}
