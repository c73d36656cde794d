//! RabbitMQ. This is the only code that speaks AMQP (lapin); everything else
//! sees a [`crate::queue::Queue`] and a store [`Observer`].
//!
//! # Topology
//!
//! - `orders`: a durable classic queue with `x-max-priority`. A message is one
//!   ticket number, four big-endian bytes, persistent, like the original. New
//!   orders have priority 0; an order a worker gives back is published again
//!   with [`PRIORITY_GIVEN_BACK`], so it goes to the front of the line.
//!   Workers take one at a time (prefetch 1) and acknowledge only once the
//!   order is READY in the store, so a worker that dies loses nothing: the
//!   broker hands its order to another worker.
//! - `fastfood.changes`: a fanout exchange. Every process publishes the
//!   changes it commits to the store; every server binds its own exclusive,
//!   server-named queue to it, so every server hears of every change at once,
//!   whoever made it, and refreshes its board from the store.
//!
//! # Outages
//!
//! Each process keeps one connection, watched by a supervisor task that
//! reconnects with backoff whenever it is lost. Meanwhile publishing fails
//! fast (so `/order` answers 503), workers wait, and the board keeps running
//! from the store. A wrong URL, refused credentials, or an `orders` queue
//! declared with other settings are not outages: they are reported at start
//! with what to do.

mod consumer;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ErrorKind, Event,
    ExchangeKind,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use consumer::{OrderConsumer, OrderDelivery};

use crate::order::Ticket;
use crate::queue::QueueError;
use crate::store::{Observer, Record};

pub const ORDERS_QUEUE: &str = "orders";
pub const CHANGES_EXCHANGE: &str = "fastfood.changes";
/// The `orders` queue's `x-max-priority`: two levels are all we use.
const MAX_PRIORITY: i32 = 2;
/// The priority of an order given back by a worker that could not finish it.
pub const PRIORITY_GIVEN_BACK: u8 = 2;
/// How long `/order` waits for the broker to confirm a message.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Change notices waiting to be published; past it they are dropped (the
/// servers also poll the store, so a dropped notice only delays a board).
const CHANGE_BACKLOG: usize = 1024;

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
         x-max-priority={MAX_PRIORITY}. Delete the old one (rabbitmqctl delete_queue {ORDERS_QUEUE}, or in the management UI) and start again"
    )]
    QueueMismatch(String),
}

/// A connection to RabbitMQ that repairs itself; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

struct Shared {
    url: String,
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

impl Broker {
    /// Connects to RabbitMQ at `url` and keeps reconnecting until [`Broker::close`].
    /// If RabbitMQ is down this returns at once and connects later; it fails
    /// only for problems that retrying cannot fix.
    pub async fn start(url: &str, name: &str) -> Result<Broker, BrokerError> {
        AMQPUri::from_str(url).map_err(|_| BrokerError::BadUrl(redact(url)))?;
        let broker = Broker {
            shared: Arc::new(Shared {
                url: url.to_owned(),
                session: watch::channel(None).0,
                blocked: AtomicBool::new(false),
                sessions: AtomicU64::new(0),
                closing: CancellationToken::new(),
                supervisor: Mutex::new(None),
            }),
        };
        let first = match broker.open_session(name).await {
            Ok(first) => Some(first),
            Err(e) => {
                if let Some(fatal) = fatal(&e) {
                    return Err(fatal);
                }
                tracing::warn!(
                    "RabbitMQ at {} is not reachable ({e}); retrying in the background, and /order answers 503 until then",
                    redact(url)
                );
                None
            }
        };
        let supervisor = tokio::spawn(broker.clone().supervise(name.to_owned(), first));
        *broker.shared.supervisor.lock().expect("not poisoned") = Some(supervisor);
        Ok(broker)
    }

    /// Closes the connection, so the broker hands any order still
    /// unacknowledged to another worker at once. Call it after the workers
    /// have stopped: until then they may still be giving orders back.
    pub async fn close(&self) {
        self.shared.closing.cancel();
        let supervisor = self.shared.supervisor.lock().expect("not poisoned").take();
        if let Some(supervisor) = supervisor {
            let _ = supervisor.await;
        }
    }

    pub fn is_connected(&self) -> bool {
        self.shared.session.borrow().is_some()
    }

    /// Why publishing would fail right now, if it would.
    pub fn unavailable(&self) -> Option<QueueError> {
        self.publishable().err()
    }

    /// The session to publish on, or why there is none fit for it.
    fn publishable(&self) -> Result<Session, QueueError> {
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

    /// Publishes `ticket` to the `orders` queue and waits until RabbitMQ has
    /// confirmed it (persisted, routed, not returned), within [`PUBLISH_TIMEOUT`].
    pub async fn publish_order(&self, ticket: Ticket, priority: u8) -> Result<(), QueueError> {
        let session = self.publishable()?;
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_priority(priority);
        let confirmed = tokio::time::timeout(PUBLISH_TIMEOUT, async {
            session
                .publisher
                .basic_publish(
                    "".into(),
                    ORDERS_QUEUE.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &ticket.to_be_bytes(),
                    properties,
                )
                .await?
                .await
        })
        .await;
        match confirmed {
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(_)) => Err(QueueError::Unavailable(format!(
                "the message broker refused order {ticket}"
            ))),
            Ok(Err(e)) => Err(QueueError::Unavailable(format!(
                "the message broker failed: {e}"
            ))),
            Err(_) => Err(QueueError::Unavailable(format!(
                "the message broker did not confirm within {PUBLISH_TIMEOUT:?}"
            ))),
        }
    }

    /// A consumer of the `orders` queue for one worker.
    pub fn consumer(&self, name: &str) -> OrderConsumer {
        OrderConsumer::new(self.clone(), name)
    }

    /// An observer that publishes every change this process commits to the
    /// `fastfood.changes` exchange.
    pub fn change_publisher(&self) -> Arc<dyn Observer> {
        let (notices, mut outbox) = mpsc::channel::<Vec<u8>>(CHANGE_BACKLOG);
        let broker = self.clone();
        tokio::spawn(async move {
            while let Some(body) = outbox.recv().await {
                let session = broker.shared.session.borrow().clone();
                if let Some(session) = session {
                    // A notice, not a record of truth: the store has that. No need to await the confirm.
                    let published = session
                        .publisher
                        .basic_publish(
                            CHANGES_EXCHANGE.into(),
                            "".into(),
                            BasicPublishOptions::default(),
                            &body,
                            BasicProperties::default()
                                .with_content_type("application/x-ndjson".into()),
                        )
                        .await;
                    if let Err(e) = published {
                        tracing::debug!("could not publish a change notice: {e}");
                    }
                }
            }
        });
        Arc::new(ChangePublisher { notices })
    }

    /// Calls `heard` whenever any process announces a change, and once after
    /// every (re)connection, until `shutdown`.
    pub fn on_changes(
        &self,
        heard: impl Fn() + Send + Sync + 'static,
        shutdown: CancellationToken,
    ) {
        let broker = self.clone();
        tokio::spawn(async move {
            loop {
                let session = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    session = broker.connected() => session,
                };
                match listen(&session).await {
                    Ok(mut notices) => {
                        // Whatever happened while we were not listening is in the store.
                        heard();
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                notice = notices.next() => match notice {
                                    Some(Ok(_)) => heard(),
                                    _ => break,
                                },
                            }
                        }
                    }
                    Err(e) => tracing::debug!("could not listen for changes: {e}"),
                }
                tokio::time::sleep(BACKOFF_MIN).await;
            }
        });
    }

    /// Waits until connected; returns the live session.
    async fn connected(&self) -> Session {
        let mut sessions = self.shared.session.subscribe();
        let session = sessions
            .wait_for(Option::is_some)
            .await
            .expect("the sender lives in self");
        session.clone().expect("waited for it")
    }

    async fn open_session(&self, name: &str) -> Result<Session, lapin::Error> {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let connection = Connection::connect(&self.shared.url, properties).await?;
        let publisher = connection.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut arguments = FieldTable::default();
        arguments.insert("x-max-priority".into(), AMQPValue::LongInt(MAX_PRIORITY));
        let declared = publisher
            .queue_declare(
                ORDERS_QUEUE.into(),
                QueueDeclareOptions::durable(),
                arguments,
            )
            .await;
        if let Err(e) = declared {
            // The channel is closed by the error; a fresh one tells the rest.
            let _ = connection.close(200, "bye".into()).await;
            return Err(e);
        }
        publisher
            .exchange_declare(
                CHANGES_EXCHANGE.into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let id = self.shared.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Session {
            id,
            connection: Arc::new(connection),
            publisher,
        })
    }

    /// Keeps the connection up until [`Broker::close`], then closes it.
    async fn supervise(self, name: String, mut next: Option<Session>) {
        let shutdown = self.shared.closing.clone();
        let mut backoff = BACKOFF_MIN;
        let mut failures = 0u32;
        loop {
            if let Some(session) = next.take() {
                backoff = BACKOFF_MIN;
                failures = 0;
                let connection = session.connection.clone();
                let events = connection.events_listener();
                self.shared
                    .blocked
                    .store(connection.status().blocked(), Ordering::Relaxed);
                self.shared.session.send_replace(Some(session));
                tracing::info!("connected to RabbitMQ at {}", redact(&self.shared.url));
                let stopping = self.watch(&connection, events, &shutdown).await;
                self.shared.session.send_replace(None);
                if stopping {
                    let _ = connection.close(200, "shutting down".into()).await;
                    return;
                }
                tracing::warn!("lost the connection to RabbitMQ; reconnecting");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            match self.open_session(&name).await {
                Ok(session) => next = Some(session),
                Err(e) => {
                    failures += 1;
                    match fatal(&e) {
                        Some(fatal) => tracing::error!("{fatal}"),
                        None if failures == 1 || failures.is_multiple_of(10) => {
                            tracing::warn!(
                                "RabbitMQ is still not reachable ({e}); retrying every {backoff:?}"
                            )
                        }
                        None => tracing::debug!("reconnect failed: {e}"),
                    }
                }
            }
        }
    }

    /// Waits until the connection is lost (false) or shutdown (true), keeping
    /// track of the broker's publisher block meanwhile.
    async fn watch(
        &self,
        connection: &Connection,
        events: impl futures_util::Stream<Item = Event> + Send,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut events = std::pin::pin!(events);
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return true,
                _ = check.tick() => if !connection.status().connected() { return false },
                event = events.next() => match event {
                    Some(Event::ConnectionBlocked(reason)) => {
                        tracing::warn!("RabbitMQ blocks publishers: {reason}; /order answers 503 until it lifts");
                        self.shared.blocked.store(true, Ordering::Relaxed);
                    }
                    Some(Event::ConnectionUnblocked) => {
                        tracing::info!("RabbitMQ accepts publishers again");
                        self.shared.blocked.store(false, Ordering::Relaxed);
                    }
                    Some(Event::Error(e)) => {
                        tracing::debug!("connection error: {e}");
                        return false;
                    }
                    Some(_) => {}
                    None => return false,
                },
            }
        }
    }
}

/// Declares this server's own queue on the changes exchange and consumes it.
async fn listen(session: &Session) -> Result<lapin::Consumer, lapin::Error> {
    let channel = session.connection.create_channel().await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            CHANGES_EXCHANGE.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Publishes committed changes as JSON lines, one message per commit.
struct ChangePublisher {
    notices: mpsc::Sender<Vec<u8>>,
}

impl Observer for ChangePublisher {
    fn committed(&self, records: &[Record], here: bool) {
        if !here {
            return; // their own process announces them
        }
        let mut body = Vec::with_capacity(records.len() * 192);
        for record in records {
            serde_json::to_writer(&mut body, record).expect("a record serialises");
            body.push(b'\n');
        }
        let _ = self.notices.try_send(body);
    }

    fn reloaded(
        &self,
        _version: u64,
        _live: &std::collections::BTreeMap<Ticket, crate::order::Order>,
    ) {
    }
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
