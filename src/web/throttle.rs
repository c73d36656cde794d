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
//! Attempts on one order are checked one at a time (a lock per order), so
//! many requests sent at once cannot get more than [`LIMIT`] wrong codes
//! checked, while many customers with the right code at once are simply
//! answered in turn.

use std::collections::HashMap;
use std::sync::Arc;
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
    /// Attempts begun and not finished (waiting for `turn` or holding it).
    in_flight: u32,
    /// Held by the attempt being checked.
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// An attempt allowed to be checked, holding its order's turn; report how
/// it went with [`Throttle::finish`]. Dropped without (the customer hung
/// up), it counts as not wrong.
#[must_use]
pub struct Attempt<'t> {
    throttle: &'t Throttle,
    ticket: Ticket,
    wrong: bool,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for Attempt<'_> {
    /// Counts the attempt while it still holds the turn, so the next one
    /// sees it.
    fn drop(&mut self) {
        let now = Instant::now();
        let mut orders = self.throttle.orders.lock();
        let Some(a) = orders.get_mut(&self.ticket) else {
            return;
        };
        a.in_flight -= 1;
        if self.wrong {
            if a.wrong == 0 {
                a.since = now;
            }
            a.wrong += 1;
        } else if a.wrong == 0 && a.in_flight == 0 {
            orders.remove(&self.ticket);
        }
    }
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

    /// Waits for `ticket`'s turn, then says whether a code for it may be
    /// checked now; if not, how long until it may.
    pub async fn begin(&self, ticket: Ticket) -> Result<Attempt<'_>, Duration> {
        let turn = {
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
            let a = orders.entry(ticket).or_insert_with(|| Attempts {
                since: now,
                wrong: 0,
                in_flight: 0,
                turn: Arc::default(),
            });
            a.in_flight += 1;
            a.turn.clone()
        };
        let turn = turn.lock_owned().await;
        let now = Instant::now();
        let mut orders = self.orders.lock();
        let a = orders.get_mut(&ticket).expect("kept while in flight");
        if a.wrong >= LIMIT && now < a.since + self.window {
            a.in_flight -= 1;
            return Err((a.since + self.window).saturating_duration_since(now));
        }
        if a.wrong >= LIMIT {
            a.wrong = 0; // the window passed while this attempt waited
        }
        Ok(Attempt {
            throttle: self,
            ticket,
            wrong: false,
            _turn: turn,
        })
    }

    /// How the attempt went: `wrong` when the code was missing or wrong.
    pub fn finish(&self, mut attempt: Attempt<'_>, wrong: bool) {
        attempt.wrong = wrong;
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
            let attempt = throttle.begin(7).await.unwrap();
            throttle.finish(attempt, true);
        }
        assert_eq!(throttle.begin(7).await.err(), Some(Duration::from_secs(60)));
        // Other orders are not affected.
        let other = throttle.begin(8).await.unwrap();
        throttle.finish(other, false);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(throttle.begin(7).await.err(), Some(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        let attempt = throttle.begin(7).await.unwrap();
        throttle.finish(attempt, false);
        assert!(throttle.orders.lock().is_empty(), "nothing left to follow");
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_at_once_are_checked_in_turn() {
        let throttle = Arc::new(Throttle::new(Duration::from_secs(60)));
        // Twenty wrong codes at once: five are checked, fifteen refused.
        let tries = (0..20).map(|_| {
            let throttle = throttle.clone();
            tokio::spawn(async move {
                let attempt = throttle.begin(3).await?;
                tokio::task::yield_now().await;
                throttle.finish(attempt, true);
                Ok::<(), Duration>(())
            })
        });
        let checked = futures_util::future::join_all(tries)
            .await
            .into_iter()
            .filter(|r| r.as_ref().unwrap().is_ok())
            .count();
        assert_eq!(checked, LIMIT as usize);
        // Right codes at once all get their turn.
        let tries = (0..8).map(|_| {
            let throttle = throttle.clone();
            tokio::spawn(async move { throttle.begin(4).await.is_ok() })
        });
        let all = futures_util::future::join_all(tries).await;
        assert!(all.into_iter().all(|r| r.unwrap()));
        assert!(!throttle.orders.lock().contains_key(&4), "forgotten");
    }
}
