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
//! - `orders`: a durable queue, of the [`QueueType`] every process is
//!   started with. A message is one ticket number, four big-endian bytes,
//!   persistent, like the original, with the restaurant's identity in its
//!   `restaurant_id` header. Workers take one at a time (prefetch 1)
//!   and acknowledge only once the order is READY in the store, so a worker
//!   that dies loses nothing: the broker hands its order to another worker.
//!   A given-back order goes to the front of the line in both types:
//!   - classic (the default): a queue on one node, with `x-max-priority`.
//!     New orders have priority 0; an order a worker gives back is published
//!     again with `PRIORITY_GIVEN_BACK`.
//!   - quorum: a queue replicated over a cluster's nodes (Raft), which has no
//!     priorities. With an `x-delivery-limit` ([`QUORUM_DELIVERY_LIMIT`]) it
//!     serves a message that came back (nacked with requeue, or left
//!     unacknowledged by a dead connection) before the others, so a worker
//!     gives an order back by nacking it. A message delivered more often than
//!     the limit is dead-lettered to the `orders.dead` queue.
//! - `orders.dead`: a durable queue (of the same type as `orders`) that
//!   nobody consumes. A poison order (delivered `--max-deliveries` times
//!   and never finished) is set aside in the store, then its message is
//!   published here, with headers that say why, before the original is
//!   acknowledged: the same code serves every queue type, and a classic
//!   `orders` queue keeps its arguments (RabbitMQ refuses to redeclare a
//!   queue with new ones, such as `x-dead-letter-exchange`).
//! - `orders.orphaned`: a durable queue (of the same type) where a worker
//!   sets aside, untouched, an order message of its own restaurant (or one
//!   carrying no identity) whose ticket the store does not know, instead of
//!   acknowledging it: a person looks at it (see [`crate::kitchen`]).
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
//! reconnects with backoff whenever it is lost. Given the URLs of several
//! nodes of one cluster, it connects to the first that answers, and after a
//! loss tries the next node first: the rest of the program never learns
//! which node it is on. Meanwhile publishing fails
//! fast (so a server's `/order` answers 503), workers wait, and the board
//! keeps running from the store. A wrong URL, refused credentials, or an `orders` queue
//! declared with other settings are not outages: they are reported at start
//! with what to do.

mod changes;
mod connection;
mod fanout;
mod kitchen;
mod orders;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use lapin::{Channel, Connection};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use connection::BrokerError;

use crate::restaurant::RestaurantId;

const ORDERS_QUEUE: &str = "orders";
/// Where a poison order's message goes when the kitchen sets it aside, and
/// where a quorum `orders` queue dead-letters a message delivered more
/// often than [`QUORUM_DELIVERY_LIMIT`] (through the default exchange): a
/// durable queue nobody consumes, for a person to look at (the management
/// UI's "Get messages").
pub const DEAD_QUEUE: &str = "orders.dead";
/// A quorum `orders` queue's `x-delivery-limit`. The limit is what makes a
/// quorum queue serve a returned message first; its value is a backstop far
/// above any number of give-backs a kitchen makes (and above the largest
/// `--max-deliveries`), so that no order is set aside by the queue alone.
/// Every process must declare the same value (a queue's arguments cannot
/// change once declared).
pub const QUORUM_DELIVERY_LIMIT: u32 = 1000;
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

/// The kind of RabbitMQ queue the `orders` queue is (`--queue-type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueueType {
    /// A queue on one node, with priorities (today's behaviour).
    #[default]
    Classic,
    /// A queue replicated over a cluster's nodes: a confirm means a majority
    /// of them has the order, and it goes on while a majority lives.
    Quorum,
}

impl QueueType {
    /// The name `--queue-type` and RabbitMQ's `x-queue-type` use.
    pub fn name(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }

    /// The other type.
    fn other(self) -> QueueType {
        match self {
            QueueType::Classic => QueueType::Quorum,
            QueueType::Quorum => QueueType::Classic,
        }
    }
}

impl std::fmt::Display for QueueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for QueueType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "classic" => Ok(QueueType::Classic),
            "quorum" => Ok(QueueType::Quorum),
            _ => Err(format!(
                "{text:?} is not a queue type: give classic (one RabbitMQ node) or quorum (a cluster's nodes)"
            )),
        }
    }
}

/// A connection to RabbitMQ that repairs itself; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

struct Shared {
    /// One URL per node of the cluster (often just one).
    urls: Vec<String>,
    /// The index in `urls` of the node to try first at the next connection.
    next: AtomicUsize,
    /// What the `orders` queue is.
    queue_type: QueueType,
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
    /// Told the id of a session whose publisher stalled (see
    /// [`Session::stalled`]): the supervisor replaces it.
    stalled: tokio::sync::Notify,
    stalled_session: AtomicU64,
    /// Cancelled by [`Broker::close`].
    closing: CancellationToken,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Clone)]
struct Session {
    /// Changes each time the connection is made again.
    id: u64,
    /// The index in `urls` of the node it is connected to.
    node: usize,
    connection: Arc<Connection>,
    /// A channel in confirm mode, for orders and change notices.
    publisher: Channel,
    /// When RabbitMQ last confirmed a publish on it (or it opened).
    confirmed: Arc<Mutex<Instant>>,
}

impl Session {
    /// Notes a confirm.
    fn confirmed_now(&self) {
        *self.confirmed.lock() = Instant::now();
    }

    /// Whether the publisher has had no confirm for longer than
    /// [`PUBLISH_TIMEOUT`]: its node or channel is stuck. A quorum queue
    /// whose leader's machine is cut off (not dead: its packets just stop)
    /// can leave a channel waiting on the old leader until the network
    /// heals, while a new channel, or another node, confirms at once.
    fn stalled(&self) -> bool {
        self.confirmed.lock().elapsed() > PUBLISH_TIMEOUT
    }
}

/// Every URL of a comma-separated list without its password, for messages.
fn redact_all(urls: &str) -> String {
    urls.split(',')
        .map(|url| redact(url.trim()))
        .collect::<Vec<_>>()
        .join(",")
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
        assert_eq!(
            redact_all("amqp://a:pw1@h1:5681/v, amqp://b:pw2@h2:5682/v,amqp://h3"),
            "amqp://a:***@h1:5681/v,amqp://b:***@h2:5682/v,amqp://h3"
        );
    }

    #[test]
    fn a_queue_type_is_classic_or_quorum() {
        assert_eq!("quorum".parse::<QueueType>(), Ok(QueueType::Quorum));
        assert_eq!("classic".parse::<QueueType>(), Ok(QueueType::Classic));
        let refused = "stream".parse::<QueueType>().unwrap_err();
        assert!(
            refused.contains("classic") && refused.contains("quorum"),
            "{refused}"
        );
    }
}
