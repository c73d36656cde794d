//! The one connection to RabbitMQ of a process: made at start, watched by a
//! supervisor task, and made again with backoff whenever it is lost. Given
//! several URLs (the nodes of one cluster), each attempt tries them in turn,
//! starting after the node that was lost, and keeps the first that answers.
//! Problems that retrying cannot fix (a wrong URL, refused credentials, an
//! `orders` queue declared with other settings) are reported with what to do.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties, ErrorKind, Event, ExchangeKind};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    Broker, CHANGES_EXCHANGE, DEAD_QUEUE, KITCHEN_EXCHANGE, MAX_PRIORITY, ORDERS_QUEUE,
    ORPHANS_QUEUE, PUBLISH_TIMEOUT, QUORUM_DELIVERY_LIMIT, QueueType, Session, Shared, redact,
    redact_all,
};
use crate::backoff;
use crate::queue::QueueError;

/// A problem with the broker that retrying will not fix.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "{0:?} is not a broker URL: use the form amqp://USER:PASSWORD@HOST:5672/VHOST (e.g. amqp://guest:guest@127.0.0.1:5672)"
    )]
    BadUrl(String),
    #[error(
        "RabbitMQ refused the user name or password in the broker URL ({0}); check them (guest/guest only works from localhost)"
    )]
    AccessRefused(String),
    #[error(
        "RabbitMQ has no virtual host as named in the broker URL ({0}); create it (rabbitmqctl add_vhost) or use the default, %2f"
    )]
    NoVhost(String),
    #[error(
        "RabbitMQ already has an `{ORDERS_QUEUE}` queue declared with other settings ({0}); fastfood needs a durable queue with \
         x-max-priority={MAX_PRIORITY} (--queue-type classic), or a quorum queue with x-delivery-limit={QUORUM_DELIVERY_LIMIT} that \
         dead-letters to {DEAD_QUEUE} (--queue-type quorum). Delete the old one (rabbitmqctl delete_queue {ORDERS_QUEUE}, or in the \
         management UI) and start again"
    )]
    QueueMismatch(String),
    #[error(
        "RabbitMQ already has an `{ORDERS_QUEUE}` queue of type {existing}, and this process was started with \
         --queue-type {wanted}; a queue's type never changes. Start every process of the restaurant with \
         --queue-type {existing} (or FASTFOOD_QUEUE_TYPE={existing}), or, to move to {wanted}, stop them all \
         and delete the queue once it is empty (rabbitmqctl delete_queue {ORDERS_QUEUE}, or in the management UI), \
         then start again"
    )]
    QueueTypeMismatch {
        existing: QueueType,
        wanted: QueueType,
    },
}

/// How long one connection attempt to one node may take before the next
/// node is tried (a host that is down may never answer at all).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection could not be made.
enum Failure {
    /// Retrying cannot fix it.
    Fatal(BrokerError),
    /// An outage, perhaps: worth another try.
    Retry(String),
}

impl From<lapin::Error> for Failure {
    fn from(e: lapin::Error) -> Self {
        match fatal(&e) {
            Some(fatal) => Failure::Fatal(fatal),
            None => Failure::Retry(e.to_string()),
        }
    }
}

/// The `orders` queue's arguments for `queue_type`.
fn orders_arguments(queue_type: QueueType) -> FieldTable {
    let mut arguments = FieldTable::default();
    match queue_type {
        QueueType::Classic => {
            arguments.insert("x-max-priority".into(), AMQPValue::LongInt(MAX_PRIORITY));
        }
        QueueType::Quorum => {
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString(QueueType::Quorum.name().into()),
            );
            arguments.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(QUORUM_DELIVERY_LIMIT.into()),
            );
            arguments.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString("".into()),
            );
            arguments.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(DEAD_QUEUE.into()),
            );
        }
    }
    arguments
}

impl Broker {
    /// Connects to RabbitMQ at `urls` (one URL, or the comma-separated URLs
    /// of one cluster's nodes) with an `orders` queue of `queue_type`, and
    /// keeps reconnecting until [`Broker::close`]. If RabbitMQ is down this
    /// returns at once and connects later; it fails only for problems that
    /// retrying cannot fix. `heartbeat` is the AMQP heartbeat asked for
    /// (RabbitMQ takes the lower of its own and this), unless a URL has a
    /// `heartbeat=` of its own: RabbitMQ closes the connection of a process
    /// silent for about two, and hands its unacknowledged orders to another
    /// worker.
    pub async fn start(
        urls: &str,
        name: &str,
        heartbeat: Duration,
        queue_type: QueueType,
    ) -> Result<Broker, BrokerError> {
        let urls: Vec<String> = urls.split(',').map(|url| url.trim().to_owned()).collect();
        for url in &urls {
            AMQPUri::from_str(url).map_err(|_| BrokerError::BadUrl(redact(url)))?;
        }
        let all = redact_all(&urls.join(","));
        let broker = Broker {
            shared: Arc::new(Shared {
                urls,
                next: AtomicUsize::new(0),
                queue_type,
                heartbeat,
                restaurant: OnceLock::new(),
                session: watch::channel(None).0,
                blocked: AtomicBool::new(false),
                sessions: AtomicU64::new(0),
                stalled: tokio::sync::Notify::new(),
                stalled_session: AtomicU64::new(0),
                closing: CancellationToken::new(),
                supervisor: Mutex::new(None),
            }),
        };
        let first = match broker.open_session(name).await {
            Ok(first) => Some(first),
            Err(Failure::Fatal(fatal)) => return Err(fatal),
            Err(Failure::Retry(e)) => {
                tracing::warn!(
                    "RabbitMQ at {all} is not reachable ({e}); retrying in the background, and no order goes through it until then"
                );
                None
            }
        };
        let supervisor = tokio::spawn(broker.clone().supervise(name.to_owned(), first));
        *broker.shared.supervisor.lock() = Some(supervisor);
        Ok(broker)
    }

    /// Closes the connection, so the broker hands any order still
    /// unacknowledged to another worker at once. Call it after the workers
    /// have stopped: until then they may still be giving orders back.
    pub async fn close(&self) {
        self.shared.closing.cancel();
        let supervisor = self.shared.supervisor.lock().take();
        if let Some(supervisor) = supervisor {
            let _ = supervisor.await;
        }
    }

    /// The session to publish on, or why there is none fit for it.
    pub(super) fn publishable(&self) -> Result<Session, QueueError> {
        let Some(session) = self.shared.session.borrow().clone() else {
            return Err(QueueError::Unavailable(
                "the message broker is not connected".into(),
            ));
        };
        if self.shared.blocked.load(Ordering::Relaxed) {
            return Err(QueueError::Unavailable(
                "the message broker is blocking publishers (low on disk or memory)".into(),
            ));
        }
        Ok(session)
    }

    /// Whether RabbitMQ blocks publishers now (a disk or memory alarm).
    pub(super) fn is_blocked(&self) -> bool {
        self.shared.blocked.load(Ordering::Relaxed)
    }

    /// Tells the supervisor that `session`'s publisher stalled: it closes
    /// that connection (RabbitMQ hands back whatever it delivered there) and
    /// connects again, to the next node first.
    pub(super) fn replace_stalled(&self, session: &Session) {
        self.shared
            .stalled_session
            .store(session.id, Ordering::Relaxed);
        self.shared.stalled.notify_one();
    }

    /// Waits until connected; returns the live session.
    pub(super) async fn connected(&self) -> Session {
        let mut sessions = self.shared.session.subscribe();
        let session = sessions
            .wait_for(Option::is_some)
            .await
            .expect("the sender lives in self");
        session.clone().expect("waited for it")
    }

    /// Connects to one of the nodes, trying each in turn from the one after
    /// the last lost; the first error that retrying cannot fix ends the turn.
    async fn open_session(&self, name: &str) -> Result<Session, Failure> {
        let count = self.shared.urls.len();
        let first = self.shared.next.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for node in (first..first + count).map(|i| i % count) {
            let url = &self.shared.urls[node];
            match tokio::time::timeout(CONNECT_TIMEOUT, self.open_session_at(node, name)).await {
                Ok(Ok(session)) => {
                    self.shared.next.store(node, Ordering::Relaxed);
                    return Ok(session);
                }
                Ok(Err(Failure::Fatal(fatal))) => return Err(Failure::Fatal(fatal)),
                Ok(Err(Failure::Retry(e))) => failures.push((redact(url), e)),
                Err(_) => {
                    failures.push((redact(url), format!("no answer within {CONNECT_TIMEOUT:?}")))
                }
            }
        }
        Err(Failure::Retry(if count == 1 {
            failures.remove(0).1
        } else {
            let each: Vec<String> = failures
                .iter()
                .map(|(url, e)| format!("{url}: {e}"))
                .collect();
            each.join("; ")
        }))
    }

    /// Connects to node `node` and declares the topology.
    async fn open_session_at(&self, node: usize, name: &str) -> Result<Session, Failure> {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let mut uri = AMQPUri::from_str(&self.shared.urls[node]).expect("checked at start");
        if uri.query.heartbeat.is_none() {
            let seconds = self
                .shared
                .heartbeat
                .as_secs()
                .clamp(1, u64::from(u16::MAX));
            uri.query.heartbeat = Some(seconds as u16);
        }
        let connection = Connection::connect_uri(uri, properties).await?;
        let publisher = connection.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let queue_type = self.shared.queue_type;
        let declared = publisher
            .queue_declare(
                ORDERS_QUEUE.into(),
                QueueDeclareOptions::durable(),
                orders_arguments(queue_type),
            )
            .await;
        if let Err(e) = declared {
            let failure = match Failure::from(e) {
                Failure::Fatal(BrokerError::QueueMismatch(text)) => {
                    Failure::Fatal(match other_type(&connection, queue_type).await {
                        Some(existing) => BrokerError::QueueTypeMismatch {
                            existing,
                            wanted: queue_type,
                        },
                        None => BrokerError::QueueMismatch(text),
                    })
                }
                other => other,
            };
            let _ = connection.close(200, "bye".into()).await;
            return Err(failure);
        }
        // Nobody consumes these two: a person looks at what lands there. A
        // new one takes the type of `orders`: on a cluster, a classic queue
        // would live on one node, and every process would fail to declare
        // it while that node is down (`orders.dead` is also where a quorum
        // `orders` queue dead-letters what passes its delivery limit). One
        // that exists is used as it is, whatever its type: a restaurant
        // that changed its queue type (deleting `orders` as told) keeps the
        // letters it already had.
        for queue in [DEAD_QUEUE, ORPHANS_QUEUE] {
            if exists(&connection, queue).await {
                continue;
            }
            let mut arguments = FieldTable::default();
            if queue_type == QueueType::Quorum {
                arguments.insert(
                    "x-queue-type".into(),
                    AMQPValue::LongString(QueueType::Quorum.name().into()),
                );
            }
            publisher
                .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
                .await?;
        }
        for exchange in [CHANGES_EXCHANGE, KITCHEN_EXCHANGE] {
            publisher
                .exchange_declare(
                    exchange.into(),
                    ExchangeKind::Fanout,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
        }
        let id = self.shared.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Session {
            id,
            node,
            connection: Arc::new(connection),
            publisher,
            confirmed: Arc::new(Mutex::new(Instant::now())),
        })
    }

    /// Keeps the connection up until [`Broker::close`], then closes it.
    async fn supervise(self, name: String, mut next: Option<Session>) {
        let shutdown = self.shared.closing.clone();
        let mut backoff = backoff::RECONNECT;
        let mut failures = 0u32;
        loop {
            if let Some(session) = next.take() {
                backoff.reset();
                failures = 0;
                let connection = session.connection.clone();
                let events = connection.events_listener();
                self.shared
                    .blocked
                    .store(connection.status().blocked(), Ordering::Relaxed);
                let (node, count) = (session.node, self.shared.urls.len());
                let id = session.id;
                let url = redact(&self.shared.urls[node]);
                self.shared.session.send_replace(Some(session));
                tracing::info!("connected to RabbitMQ at {url}");
                let ended = self.watch(id, &connection, events, &shutdown).await;
                self.shared.session.send_replace(None);
                match ended {
                    Ended::Shutdown => {
                        let _ = connection.close(200, "shutting down".into()).await;
                        return;
                    }
                    Ended::Stalled => {
                        tracing::warn!(
                            "RabbitMQ at {url} confirmed nothing for {PUBLISH_TIMEOUT:?}; leaving that connection"
                        );
                        let closing = connection.close(200, "no confirms".into());
                        let _ = tokio::time::timeout(PUBLISH_TIMEOUT, closing).await;
                    }
                    Ended::Lost => {}
                }
                // The next attempt starts with another node, if there is one.
                self.shared
                    .next
                    .store((node + 1) % count, Ordering::Relaxed);
                if count > 1 {
                    tracing::warn!(
                        "lost the connection to RabbitMQ at {url}; reconnecting to another node"
                    );
                } else {
                    tracing::warn!("lost the connection to RabbitMQ; reconnecting");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff.pause()) => {}
            }
            match self.open_session(&name).await {
                Ok(session) => next = Some(session),
                Err(e) => {
                    failures += 1;
                    match e {
                        Failure::Fatal(fatal) => tracing::error!("{fatal}"),
                        Failure::Retry(e) if failures == 1 || failures.is_multiple_of(10) => {
                            tracing::warn!(
                                "RabbitMQ is still not reachable ({e}); retrying every {:?}",
                                backoff.peek()
                            )
                        }
                        Failure::Retry(e) => tracing::debug!("reconnect failed: {e}"),
                    }
                }
            }
        }
    }

    /// Waits until session `id`'s connection is lost, its publisher stalls,
    /// or shutdown, keeping track of the broker's publisher block meanwhile.
    async fn watch(
        &self,
        id: u64,
        connection: &Connection,
        events: impl futures_util::Stream<Item = Event> + Send,
        shutdown: &CancellationToken,
    ) -> Ended {
        let mut events = std::pin::pin!(events);
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ended::Shutdown,
                _ = check.tick() => if !connection.status().connected() { return Ended::Lost },
                // A notice about an earlier session is stale: ignored.
                _ = self.shared.stalled.notified() => {
                    if self.shared.stalled_session.load(Ordering::Relaxed) == id {
                        return Ended::Stalled;
                    }
                }
                event = events.next() => match event {
                    Some(Event::ConnectionBlocked(reason)) => {
                        tracing::warn!("RabbitMQ blocks publishers: {reason}; no order can be queued until it lifts");
                        self.shared.blocked.store(true, Ordering::Relaxed);
                    }
                    Some(Event::ConnectionUnblocked) => {
                        tracing::info!("RabbitMQ accepts publishers again");
                        self.shared.blocked.store(false, Ordering::Relaxed);
                    }
                    Some(Event::Error(e)) => {
                        tracing::debug!("connection error: {e}");
                        return Ended::Lost;
                    }
                    Some(_) => {}
                    None => return Ended::Lost,
                },
            }
        }
    }
}

/// Why a session ended.
enum Ended {
    Shutdown,
    Lost,
    /// Its publisher had no confirm for longer than [`PUBLISH_TIMEOUT`].
    Stalled,
}

/// The type of the existing `orders` queue when it is the other one than
/// `wanted`: a declare with the other type's arguments, on a channel of its
/// own, succeeds then (and changes nothing: the queue exists with exactly
/// those), and fails otherwise.
/// Whether `queue` exists, from a passive declare on a channel of its own
/// (a passive declare of a missing queue closes its channel).
async fn exists(connection: &Connection, queue: &str) -> bool {
    let Ok(channel) = connection.create_channel().await else {
        return false;
    };
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let found = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .is_ok();
    if found {
        let _ = channel.close(200, "bye".into()).await;
    }
    found
}

async fn other_type(connection: &Connection, wanted: QueueType) -> Option<QueueType> {
    let other = wanted.other();
    let channel = connection.create_channel().await.ok()?;
    let declared = channel
        .queue_declare(
            ORDERS_QUEUE.into(),
            QueueDeclareOptions::durable(),
            orders_arguments(other),
        )
        .await;
    let _ = channel.close(200, "asked".into()).await;
    declared.ok().map(|_| other)
}

/// The problem behind `e` if retrying cannot fix it.
fn fatal(e: &lapin::Error) -> Option<BrokerError> {
    let ErrorKind::ProtocolError(amqp) = e.kind() else {
        return None;
    };
    let text = amqp.get_message().to_string();
    match amqp.kind() {
        AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => Some(BrokerError::AccessRefused(text)),
        AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) => {
            Some(BrokerError::QueueMismatch(text))
        }
        AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => Some(BrokerError::NoVhost(text)),
        _ => None,
    }
}
