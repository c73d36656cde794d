//! RabbitMQ. This is the only code that speaks AMQP (lapin); everything else
//! sees a [`crate::queue::Queue`] and a store [`Observer`](crate::store::Observer).
//! One module per job: `connection` keeps the connection up, `orders`
//! publishes and consumes orders (the broker's side of the queue),
//! `changes` publishes this process's commits and listens to the others',
//! `kitchen` carries the kitchen crews' reports, and `fanout` is how both
//! of those publish on and listen to a fanout exchange.
//!
//! # Topology
//!
//! - `orders`: a durable classic queue with `x-max-priority`. A message is one
//!   ticket number, four big-endian bytes, persistent, like the original, with
//!   the restaurant's identity in its `restaurant_id` header. New
//!   orders have priority 0; an order a worker gives back is published again
//!   with `PRIORITY_GIVEN_BACK`, so it goes to the front of the line.
//!   Workers take one at a time (prefetch 1) and acknowledge only once the
//!   order is READY in the store, so a worker that dies loses nothing: the
//!   broker hands its order to another worker.
//! - `orders.dead`: a durable classic queue that nobody consumes. A poison
//!   order (delivered `--max-deliveries` times and never finished) is set
//!   aside in the store, then its message is published here, with headers
//!   that say why, before the original is acknowledged: the `orders` queue
//!   keeps its arguments (RabbitMQ refuses to redeclare a queue with new
//!   ones, such as `x-dead-letter-exchange`), and the same code serves
//!   every queue type.
//! - `orders.orphaned`: a durable queue where a worker sets aside, untouched,
//!   an order message of its own restaurant (or one carrying no identity)
//!   whose ticket the store does not know, instead of acknowledging it: a
//!   person looks at it (see [`crate::kitchen`]).
//! - `fastfood.changes`: a fanout exchange. Every process publishes the
//!   changes it commits to the store; every server binds its own exclusive,
//!   server-named queue to it, so every server hears of every change at once,
//!   whoever made it, and refreshes its board from the store.
//! - `fastfood.kitchen`: a fanout exchange. Every process with kitchen
//!   workers publishes what they are doing, at least every second (a
//!   heartbeat); every server listens the same way, for its `/kitchen` page.
//!
//! # Outages
//!
//! Each process keeps one connection, watched by a supervisor task that
//! reconnects with backoff whenever it is lost. Meanwhile publishing fails
//! fast (so a server's `/order` answers 503), workers wait, and the board
//! keeps running from the store. A wrong URL, refused credentials, or an `orders` queue
//! declared with other settings are not outages: they are reported at start
//! with what to do.

mod changes;
mod connection;
mod fanout;
mod kitchen;
mod orders;

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lapin::{Channel, Connection};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use connection::BrokerError;

use crate::restaurant::RestaurantId;

const ORDERS_QUEUE: &str = "orders";
/// Where a poison order's message goes when the kitchen sets it aside: a
/// durable classic queue with no arguments, which nobody consumes, for a
/// person to look at (the management UI's "Get messages").
pub const DEAD_QUEUE: &str = "orders.dead";
/// Where order messages that no store knows are set aside.
const ORPHANS_QUEUE: &str = "orders.orphaned";
/// The header of an order message that names its restaurant.
const RESTAURANT_HEADER: &str = "restaurant_id";
/// The header of a set-aside message that says why.
const WHY_HEADER: &str = "set_aside_because";
const CHANGES_EXCHANGE: &str = "fastfood.changes";
const KITCHEN_EXCHANGE: &str = "fastfood.kitchen";
/// The `orders` queue's `x-max-priority`: two levels are all we use.
const MAX_PRIORITY: i32 = 2;
/// The priority of an order given back by a worker that could not finish it.
const PRIORITY_GIVEN_BACK: u8 = 2;
/// How long publishing an order waits for the broker to confirm it.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection to RabbitMQ that repairs itself; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

struct Shared {
    url: String,
    /// The AMQP heartbeat asked for, unless the URL names one.
    heartbeat: Duration,
    /// The restaurant whose orders this process publishes and takes: set
    /// once its store is open ([`Broker::serve_restaurant`]).
    restaurant: OnceLock<RestaurantId>,
    /// The live session, or `None` while disconnected.
    session: watch::Sender<Option<Session>>,
    /// Whether RabbitMQ blocks publishers (a disk or memory alarm).
    blocked: AtomicBool,
    sessions: AtomicU64,
    /// Cancelled by [`Broker::close`].
    closing: CancellationToken,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Clone)]
struct Session {
    /// Changes each time the connection is made again.
    id: u64,
    connection: Arc<Connection>,
    /// A channel in confirm mode, for orders and change notices.
    publisher: Channel,
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact("amqp://host"), "amqp://host");
    }
}
