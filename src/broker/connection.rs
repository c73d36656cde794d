//! The one connection to RabbitMQ of a process: made at start, watched by a
//! supervisor task, and made again with backoff whenever it is lost. Problems
//! that retrying cannot fix (a wrong URL, refused credentials, an `orders`
//! queue declared with other settings) are reported with what to do.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

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
    ORPHANS_QUEUE, Session, Shared, redact,
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
         x-max-priority={MAX_PRIORITY}. Delete the old one (rabbitmqctl delete_queue {ORDERS_QUEUE}, or in the management UI) and start again"
    )]
    QueueMismatch(String),
}

impl Broker {
    /// Connects to RabbitMQ at `url` and keeps reconnecting until [`Broker::close`].
    /// If RabbitMQ is down this returns at once and connects later; it fails
    /// only for problems that retrying cannot fix.
    /// `heartbeat` is the AMQP heartbeat asked for (RabbitMQ takes the
    /// lower of its own and this), unless the URL has a `heartbeat=` of its
    /// own: RabbitMQ closes the connection of a process silent for about
    /// two, and hands its unacknowledged orders to another worker.
    pub async fn start(url: &str, name: &str, heartbeat: Duration) -> Result<Broker, BrokerError> {
        AMQPUri::from_str(url).map_err(|_| BrokerError::BadUrl(redact(url)))?;
        let broker = Broker {
            shared: Arc::new(Shared {
                url: url.to_owned(),
                heartbeat,
                restaurant: OnceLock::new(),
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
                    "RabbitMQ at {} is not reachable ({e}); retrying in the background, and no order goes through it until then",
                    redact(url)
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

    /// Waits until connected; returns the live session.
    pub(super) async fn connected(&self) -> Session {
        let mut sessions = self.shared.session.subscribe();
        let session = sessions
            .wait_for(Option::is_some)
            .await
            .expect("the sender lives in self");
        session.clone().expect("waited for it")
    }

    async fn open_session(&self, name: &str) -> Result<Session, lapin::Error> {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let mut uri = AMQPUri::from_str(&self.shared.url).expect("checked at start");
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
        // Nobody consumes these two: a person looks at what lands there.
        for queue in [DEAD_QUEUE, ORPHANS_QUEUE] {
            publisher
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions::durable(),
                    FieldTable::default(),
                )
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
            connection: Arc::new(connection),
            publisher,
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
                _ = tokio::time::sleep(backoff.pause()) => {}
            }
            match self.open_session(&name).await {
                Ok(session) => next = Some(session),
                Err(e) => {
                    failures += 1;
                    match fatal(&e) {
                        Some(fatal) => tracing::error!("{fatal}"),
                        None if failures == 1 || failures.is_multiple_of(10) => {
                            tracing::warn!(
                                "RabbitMQ is still not reachable ({e}); retrying every {:?}",
                                backoff.peek()
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
                        tracing::warn!("RabbitMQ blocks publishers: {reason}; no order can be queued until it lifts");
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
