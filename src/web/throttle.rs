//! The pickup-code throttle: after [`LIMIT`] wrong codes for one order
//! within a window (a minute), `/take` and `/cancel` of that order answer
//! `429` with `Retry-After` until the window has passed, so a million codes
//! cannot be tried one after the other.
//!
//! It is kept in this process's memory, per order: several servers sharing
//! a data directory each count their own attempts (the docs say so). The
//! memory is bounded: an order is forgotten once its window has passed, and
//! at most [`MAX_ORDERS`] orders are followed at once (past that the
//! followed order whose window started first is forgotten).
//!
//! Attempts in flight count against the limit too, so many requests sent
//! at once cannot get more than [`LIMIT`] codes checked.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::order::Ticket;

/// Wrong codes allowed per order per window.
pub const LIMIT: u32 = 5;
/// The window, unless [`WINDOW_ENV`] says otherwise.
const WINDOW: Duration = Duration::from_secs(60);
/// Most orders followed at once.
const MAX_ORDERS: usize = 65_536;

/// `FASTFOOD_CODE_WINDOW=2s` shortens the window, for tests that watch it
/// pass. Not a flag: a restaurant has no reason to change it.
pub const WINDOW_ENV: &str = "FASTFOOD_CODE_WINDOW";

/// Wrong codes by order, in this process.
pub struct Throttle {
    window: Duration,
    orders: Mutex<HashMap<Ticket, Attempts>>,
}

struct Attempts {
    /// When the first wrong code of this window came.
    since: Instant,
    wrong: u32,
    in_flight: u32,
}

/// An attempt allowed to be checked; report how it went with
/// [`Throttle::finish`].
#[must_use]
pub struct Attempt {
    ticket: Ticket,
}

impl Throttle {
    /// The window from [`WINDOW_ENV`], or a minute.
    pub fn from_env() -> Throttle {
        let window = match std::env::var(WINDOW_ENV) {
            Ok(text) => match humantime::parse_duration(&text) {
                Ok(window) if !window.is_zero() => {
                    tracing::warn!(
                        "{WINDOW_ENV}={text}: pickup codes are throttled per {window:?}"
                    );
                    window
                }
                _ => {
                    tracing::warn!("{WINDOW_ENV}={text:?} is not a duration; using a minute");
                    WINDOW
                }
            },
            Err(_) => WINDOW,
        };
        Throttle::new(window)
    }

    pub fn new(window: Duration) -> Throttle {
        Throttle {
            window,
            orders: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a code for `ticket` may be checked now; if not, how long
    /// until it may.
    pub fn begin(&self, ticket: Ticket) -> Result<Attempt, Duration> {
        let now = Instant::now();
        let mut orders = self.orders.lock();
        if let Some(a) = orders.get(&ticket)
            && now >= a.since + self.window
            && a.in_flight == 0
        {
            orders.remove(&ticket);
        }
        if !orders.contains_key(&ticket) && orders.len() >= MAX_ORDERS {
            self.make_room(&mut orders, now);
        }
        let a = orders.entry(ticket).or_insert(Attempts {
            since: now,
            wrong: 0,
            in_flight: 0,
        });
        if a.wrong + a.in_flight >= LIMIT {
            return Err((a.since + self.window).saturating_duration_since(now));
        }
        a.in_flight += 1;
        Ok(Attempt { ticket })
    }

    /// How the attempt went: `wrong` when the code was missing or wrong.
    pub fn finish(&self, attempt: Attempt, wrong: bool) {
        let now = Instant::now();
        let mut orders = self.orders.lock();
        let Some(a) = orders.get_mut(&attempt.ticket) else {
            return;
        };
        a.in_flight -= 1;
        if wrong {
            if a.wrong == 0 {
                a.since = now;
            }
            a.wrong += 1;
        } else if a.wrong == 0 && a.in_flight == 0 {
            orders.remove(&attempt.ticket);
        }
    }

    /// Forgets the orders whose window passed; if none did, the oldest.
    fn make_room(&self, orders: &mut HashMap<Ticket, Attempts>, now: Instant) {
        orders.retain(|_, a| a.in_flight > 0 || now < a.since + self.window);
        if orders.len() >= MAX_ORDERS
            && let Some(oldest) = orders
                .iter()
                .filter(|(_, a)| a.in_flight == 0)
                .min_by_key(|(_, a)| a.since)
                .map(|(t, _)| *t)
        {
            orders.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn five_wrong_codes_close_an_order_until_the_window_passes() {
        let throttle = Throttle::new(Duration::from_secs(60));
        for _ in 0..LIMIT {
            let attempt = throttle.begin(7).unwrap();
            throttle.finish(attempt, true);
        }
        assert_eq!(throttle.begin(7).err(), Some(Duration::from_secs(60)));
        // Other orders are not affected.
        let other = throttle.begin(8).unwrap();
        throttle.finish(other, false);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(throttle.begin(7).err(), Some(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        let attempt = throttle.begin(7).unwrap();
        throttle.finish(attempt, false);
        assert!(throttle.orders.lock().is_empty(), "nothing left to follow");
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_in_flight_count_too() {
        let throttle = Throttle::new(Duration::from_secs(60));
        let held: Vec<_> = (0..LIMIT).map(|_| throttle.begin(3).unwrap()).collect();
        assert!(throttle.begin(3).is_err());
        for attempt in held {
            throttle.finish(attempt, false);
        }
        assert!(throttle.begin(3).is_ok());
    }
}
