//! The pickup-code throttle, so a million codes cannot be tried one after
//! the other, and so a stranger cannot keep a customer from their order:
//!
//! - [`LIMIT`] wrong codes for one order from one client address within a
//!   window (a minute) close that order to that address until the window
//!   has passed;
//! - [`CLIENT_LIMIT`] wrong codes from one address, whatever the orders,
//!   close every order to that address: one client cannot lock out
//!   everyone's orders, nor try a few codes on each;
//! - [`ORDER_CEILING`] wrong codes for one order, from all addresses
//!   together, close it to everyone: far above what one address may try, so
//!   its owner, with the right code, is locked out only by many addresses
//!   at once.
//!
//! Refused attempts (`429`) are not counted. An IPv6 client is counted by
//! its /64, which one customer usually holds whole. Behind a reverse proxy
//! every client has the proxy's address: the per-address limits then apply
//! to everyone together (the docs say so).
//!
//! Kept in this process's memory: several servers sharing a data directory
//! each count their own attempts. Nothing is evicted to make room: a wrong
//! code is remembered for a whole window, and the memory is bounded by the
//! wrong codes a window can hold, which only orders in the restaurant can
//! get (the store checks codes of live orders only), at most
//! [`ORDER_CEILING`] each. Each attempt costs a few hash-map steps, plus
//! forgetting the counts whose window has passed, oldest first, each once.
//!
//! Attempts on one order are checked one at a time (a lock per order), so
//! many requests sent at once cannot get more wrong codes checked than the
//! limits allow, while many customers with the right code at once are
//! simply answered in turn.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::order::Ticket;

/// Wrong codes allowed per order per client address per window.
pub const LIMIT: u32 = 5;
/// Wrong codes allowed per client address per window, whatever the orders.
pub const CLIENT_LIMIT: u32 = 20;
/// Wrong codes allowed per order per window, from every address together.
pub const ORDER_CEILING: u32 = 100;
/// The window, unless [`WINDOW_ENV`] says otherwise.
const WINDOW: Duration = Duration::from_secs(60);

/// `FASTFOOD_CODE_WINDOW=2s` shortens the window, for tests that watch it
/// pass. Not a flag: a restaurant has no reason to change it.
pub const WINDOW_ENV: &str = "FASTFOOD_CODE_WINDOW";

/// Who is trying a code: the client's address (an IPv6 one by its /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    pub fn new(ip: IpAddr) -> Client {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                Client(IpAddr::V6(Ipv6Addr::from(bits)))
            }
            v4 => Client(v4),
        }
    }
}

/// The client's address from the connection; unspecified when the router
/// is called without a socket (`oneshot` in tests).
impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        Ok(Client::new(ip))
    }
}

/// Wrong codes counted since the first of a window.
#[derive(Clone, Copy)]
struct Count {
    since: Instant,
    wrong: u32,
}

impl Count {
    fn new(now: Instant) -> Count {
        Count {
            since: now,
            wrong: 0,
        }
    }

    /// The wrong codes of the current window (a passed one counts none).
    fn current(&mut self, now: Instant, window: Duration) -> u32 {
        if now >= self.since + window {
            *self = Count::new(now);
        }
        self.wrong
    }

    fn add(&mut self, now: Instant, window: Duration) {
        if self.current(now, window) == 0 {
            self.since = now;
        }
        self.wrong += 1;
    }

    /// How long until this count's window has passed.
    fn wait(&self, now: Instant, window: Duration) -> Duration {
        (self.since + window).saturating_duration_since(now)
    }
}

/// What is known of one order.
struct Order {
    /// Its wrong codes, from every address.
    all: Count,
    /// Its wrong codes by address (at most [`ORDER_CEILING`] addresses a
    /// window, since each entry needs a wrong code).
    by_client: HashMap<Client, Count>,
    /// Attempts begun and not finished (waiting for `turn` or holding it).
    in_flight: u32,
    /// Held by the attempt being checked.
    turn: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct Inner {
    orders: HashMap<Ticket, Order>,
    clients: HashMap<Client, Count>,
    /// Every wrong code of the last window, oldest first: when its window
    /// passes, its order and client are looked at once, and forgotten if
    /// nothing newer holds them.
    expiry: VecDeque<(Instant, Ticket, Client)>,
}

/// Wrong codes by order and by client address, in this process.
pub struct Throttle {
    window: Duration,
    inner: Mutex<Inner>,
}

/// An attempt allowed to be checked, holding its order's turn; report how
/// it went with [`Throttle::finish`]. Dropped without (the customer hung
/// up), it counts as not wrong.
#[must_use]
pub struct Attempt<'t> {
    throttle: &'t Throttle,
    ticket: Ticket,
    client: Client,
    wrong: bool,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for Attempt<'_> {
    /// Counts the attempt while it still holds the turn, so the next one
    /// sees it.
    fn drop(&mut self) {
        let now = Instant::now();
        let window = self.throttle.window;
        let mut inner = self.throttle.inner.lock();
        let inner = &mut *inner;
        let Some(order) = inner.orders.get_mut(&self.ticket) else {
            return;
        };
        order.in_flight -= 1;
        if self.wrong {
            order.all.add(now, window);
            order
                .by_client
                .entry(self.client)
                .or_insert_with(|| Count::new(now))
                .add(now, window);
            inner
                .clients
                .entry(self.client)
                .or_insert_with(|| Count::new(now))
                .add(now, window);
            inner.expiry.push_back((now, self.ticket, self.client));
        } else if order.in_flight == 0 && order.by_client.is_empty() {
            inner.orders.remove(&self.ticket);
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
            inner: Mutex::default(),
        }
    }

    /// Waits for `ticket`'s turn, then says whether `client` may have a
    /// code for it checked now; if not, how long until it may.
    pub async fn begin(&self, ticket: Ticket, client: Client) -> Result<Attempt<'_>, Duration> {
        let turn = {
            let mut inner = self.inner.lock();
            self.forget_passed(&mut inner, Instant::now());
            let order = inner.orders.entry(ticket).or_insert_with(|| Order {
                all: Count::new(Instant::now()),
                by_client: HashMap::new(),
                in_flight: 0,
                turn: Arc::default(),
            });
            order.in_flight += 1;
            order.turn.clone()
        };
        let turn = turn.lock_owned().await;
        let now = Instant::now();
        let window = self.window;
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let client_count = inner.clients.get_mut(&client);
        let order = inner.orders.get_mut(&ticket).expect("kept while in flight");
        let shut = |count: Option<&mut Count>, limit: u32| {
            let c = count?;
            (c.current(now, window) >= limit).then(|| c.wait(now, window))
        };
        let closed = [
            shut(client_count, CLIENT_LIMIT),
            shut(order.by_client.get_mut(&client), LIMIT),
            shut(Some(&mut order.all), ORDER_CEILING),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(wait) = closed {
            order.in_flight -= 1;
            return Err(wait);
        }
        Ok(Attempt {
            throttle: self,
            ticket,
            client,
            wrong: false,
            _turn: turn,
        })
    }

    /// How the attempt went: `wrong` when the code was missing or wrong.
    pub fn finish(&self, mut attempt: Attempt<'_>, wrong: bool) {
        attempt.wrong = wrong;
    }

    /// Forgets the counts whose last wrong code is a window old. Each wrong
    /// code is looked at here once: constant time per attempt, amortised.
    fn forget_passed(&self, inner: &mut Inner, now: Instant) {
        while let Some(&(at, ticket, client)) = inner.expiry.front() {
            if now < at + self.window {
                break;
            }
            inner.expiry.pop_front();
            // Forgotten only if no wrong code came since (a newer one is
            // further down the queue and will come back here).
            // A count reset by a later look (none wrong since) goes too.
            let passed = |c: &Count| c.wrong == 0 || c.since <= at;
            if let Some(order) = inner.orders.get_mut(&ticket) {
                if order.by_client.get(&client).is_some_and(passed) {
                    order.by_client.remove(&client);
                }
                if order.by_client.is_empty() && order.in_flight == 0 {
                    inner.orders.remove(&ticket);
                }
            }
            if inner.clients.get(&client).is_some_and(passed) {
                inner.clients.remove(&client);
            }
        }
    }

    /// How many orders and clients are followed now (for tests).
    #[cfg(test)]
    fn followed(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.orders.len(), inner.clients.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(n: u8) -> Client {
        Client::new(IpAddr::from([10, 0, 0, n]))
    }

    async fn wrong(throttle: &Throttle, ticket: Ticket, who: Client) -> Result<(), Duration> {
        let attempt = throttle.begin(ticket, who).await?;
        throttle.finish(attempt, true);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn five_wrong_codes_close_an_order_to_that_client_until_the_window_passes() {
        let throttle = Throttle::new(Duration::from_secs(60));
        let (stranger, owner) = (client(1), client(2));
        for _ in 0..LIMIT {
            wrong(&throttle, 7, stranger).await.unwrap();
        }
        assert_eq!(
            throttle.begin(7, stranger).await.err(),
            Some(Duration::from_secs(60))
        );
        // The owner, from another address, is not locked out by the stranger.
        let attempt = throttle.begin(7, owner).await.unwrap();
        throttle.finish(attempt, false);
        // Other orders are not affected.
        let other = throttle.begin(8, stranger).await.unwrap();
        throttle.finish(other, false);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(
            throttle.begin(7, stranger).await.err(),
            Some(Duration::from_secs(1))
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let attempt = throttle.begin(7, stranger).await.unwrap();
        throttle.finish(attempt, false);
        assert_eq!(throttle.followed(), (0, 0), "nothing left to follow");
    }

    #[tokio::test(start_paused = true)]
    async fn one_client_cannot_try_codes_on_every_order() {
        let throttle = Throttle::new(Duration::from_secs(60));
        let stranger = client(1);
        // Four wrong codes on each of five orders: the client's own limit.
        for ticket in 1..=5 {
            for _ in 0..4 {
                wrong(&throttle, ticket, stranger).await.unwrap();
            }
        }
        assert_eq!(CLIENT_LIMIT, 20);
        assert!(throttle.begin(6, stranger).await.is_err(), "closed to it");
        // Everyone else still gets every order.
        for ticket in 1..=6 {
            let attempt = throttle.begin(ticket, client(2)).await.unwrap();
            throttle.finish(attempt, false);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn many_addresses_together_reach_an_orders_ceiling() {
        let throttle = Throttle::new(Duration::from_secs(60));
        let mut addresses = 0;
        for n in 0..=(ORDER_CEILING / LIMIT) as u8 {
            for _ in 0..LIMIT {
                if wrong(&throttle, 9, client(n)).await.is_ok() {
                    addresses = n + 1;
                }
            }
        }
        assert_eq!(addresses as u32, ORDER_CEILING / LIMIT);
        // The ceiling is reached: even the owner waits out the window.
        assert!(throttle.begin(9, client(200)).await.is_err());
        tokio::time::advance(Duration::from_secs(60)).await;
        let attempt = throttle.begin(9, client(200)).await.unwrap();
        throttle.finish(attempt, false);
        assert_eq!(throttle.followed(), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_codes_on_other_orders_never_make_it_forget_one() {
        // The old throttle forgot the oldest of its orders once it followed
        // 65,536: 95,000 wrong codes elsewhere reopened order 1.
        let throttle = Throttle::new(Duration::from_secs(60));
        let stranger = client(1);
        for _ in 0..4 {
            wrong(&throttle, 1, stranger).await.unwrap();
        }
        for ticket in 2..100_002u32 {
            let who = Client::new(IpAddr::from((ticket + 1000).to_be_bytes()));
            wrong(&throttle, ticket, who).await.unwrap();
        }
        wrong(&throttle, 1, stranger).await.unwrap();
        assert!(
            throttle.begin(1, stranger).await.is_err(),
            "the fifth wrong code still closes order 1"
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        let attempt = throttle.begin(1, stranger).await.unwrap();
        throttle.finish(attempt, false);
        assert_eq!(throttle.followed(), (0, 0), "all forgotten once passed");
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_at_once_are_checked_in_turn() {
        let throttle = Arc::new(Throttle::new(Duration::from_secs(60)));
        // Twenty wrong codes at once: five are checked, fifteen refused.
        let tries = (0..20).map(|_| {
            let throttle = throttle.clone();
            tokio::spawn(async move {
                let attempt = throttle.begin(3, client(1)).await?;
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
            tokio::spawn(async move { throttle.begin(4, client(2)).await.is_ok() })
        });
        let all = futures_util::future::join_all(tries).await;
        assert!(all.into_iter().all(|r| r.unwrap()));
        assert!(!throttle.inner.lock().orders.contains_key(&4), "forgotten");
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Client::new(a), Client::new(b));
        assert_ne!(Client::new(a), Client::new(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Client::new(mapped), client(1));
    }
}
