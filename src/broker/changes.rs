//! The changes fan-out: every process publishes the changes it commits to
//! the store on the `fastfood.changes` exchange, and every server listens on
//! its own exclusive queue, so it refreshes its board from the store as soon
//! as anyone changes anything.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Broker, CHANGES_EXCHANGE, Session};
use crate::backoff;
use crate::order::{Order, Ticket};
use crate::store::{Observer, Origin, Record};

/// Change notices waiting to be published; past it they are dropped (the
/// servers also poll the store, so a dropped notice only delays a board).
const CHANGE_BACKLOG: usize = 1024;

impl Broker {
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
        let mut reopen = backoff::REOPEN;
        tokio::spawn(async move {
            loop {
                let session = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    session = broker.connected() => session,
                };
                match listen(&session).await {
                    Ok(mut notices) => {
                        reopen.reset();
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
                tokio::time::sleep(reopen.pause()).await;
            }
        });
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
    fn committed(&self, records: &[Record], origin: Origin) {
        if origin == Origin::Elsewhere {
            return; // their own process announces them
        }
        let mut body = Vec::with_capacity(records.len() * 192);
        for record in records {
            serde_json::to_writer(&mut body, record).expect("a record serialises");
            body.push(b'\n');
        }
        let _ = self.notices.try_send(body);
    }

    fn reloaded(&self, _version: u64, _live: &BTreeMap<Ticket, Order>) {}
}
