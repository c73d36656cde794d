//! Publishing on and listening to a fanout exchange: notices, not records
//! of truth (the store has those), so publishing never waits for a confirm
//! and a notice that finds no connection or a full backlog is dropped.

use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Broker, Session};
use crate::backoff;

/// Notices waiting to be published; past it they are dropped.
const BACKLOG: usize = 1024;

impl Broker {
    /// A sender whose messages are published on `exchange` while connected.
    pub(super) fn outbox(
        &self,
        exchange: &'static str,
        content_type: &'static str,
    ) -> mpsc::Sender<Vec<u8>> {
        let (notices, mut outbox) = mpsc::channel::<Vec<u8>>(BACKLOG);
        let broker = self.clone();
        tokio::spawn(async move {
            while let Some(body) = outbox.recv().await {
                broker.publish_now(exchange, content_type, &body).await;
            }
        });
        notices
    }

    /// Publishes `body` on `exchange` if connected, without waiting for
    /// the confirm.
    pub(super) async fn publish_now(&self, exchange: &str, content_type: &str, body: &[u8]) {
        let session = self.shared.session.borrow().clone();
        if let Some(session) = session {
            let published = session
                .publisher
                .basic_publish(
                    exchange.into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    body,
                    BasicProperties::default().with_content_type(content_type.into()),
                )
                .await;
            if let Err(e) = published {
                tracing::debug!("could not publish on {exchange}: {e}");
            }
        }
    }

    /// Listens on `exchange` through a queue of this process's own: calls
    /// `connected` after every (re)connection and `heard` with every
    /// message, until `shutdown`.
    pub(super) fn listen(
        &self,
        exchange: &'static str,
        connected: impl Fn() + Send + Sync + 'static,
        heard: impl Fn(&[u8]) + Send + Sync + 'static,
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
                match subscribe(&session, exchange).await {
                    Ok(mut messages) => {
                        reopen.reset();
                        connected();
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                message = messages.next() => match message {
                                    Some(Ok(delivery)) => heard(&delivery.data),
                                    _ => break,
                                },
                            }
                        }
                    }
                    Err(e) => tracing::debug!("could not listen on {exchange}: {e}"),
                }
                tokio::time::sleep(reopen.pause()).await;
            }
        });
    }
}

/// Declares a queue of this process's own on `exchange` and consumes it.
async fn subscribe(session: &Session, exchange: &str) -> Result<lapin::Consumer, lapin::Error> {
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
            exchange.into(),
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
