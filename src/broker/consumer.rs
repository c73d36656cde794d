//! One worker's view of the `orders` queue: its own channel with prefetch 1
//! (so RabbitMQ hands each worker one order at a time, fairly), opened again
//! after every reconnection.

use byteorder::{BigEndian, ByteOrder};
use futures_util::StreamExt;
use lapin::Acker;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;

use super::{BACKOFF_MIN, Broker, ORDERS_QUEUE, PRIORITY_GIVEN_BACK};
use crate::order::Ticket;
use crate::queue::QueueError;

pub struct OrderConsumer {
    broker: Broker,
    name: String,
    /// The consumer of the current session, if one is open.
    current: Option<(u64, lapin::Consumer)>,
}

/// An order delivered to this worker. If dropped unsettled, it is handed
/// back to the broker, which puts it back where it was: near the front.
pub struct OrderDelivery {
    pub ticket: Ticket,
    /// Whether the broker delivered it before (to a worker that died).
    pub redelivered: bool,
    broker: Broker,
    acker: Option<Acker>,
}

impl OrderConsumer {
    pub(super) fn new(broker: Broker, name: &str) -> Self {
        OrderConsumer {
            broker,
            name: name.to_owned(),
            current: None,
        }
    }

    /// The next order; waits through outages.
    pub async fn next(&mut self) -> OrderDelivery {
        loop {
            let session = self.broker.connected().await;
            if self
                .current
                .as_ref()
                .is_none_or(|(id, _)| *id != session.id)
            {
                match self.open(&session).await {
                    Ok(consumer) => self.current = Some((session.id, consumer)),
                    Err(e) => {
                        tracing::debug!("{}: could not consume orders: {e}", self.name);
                        self.current = None;
                        tokio::time::sleep(BACKOFF_MIN).await;
                        continue;
                    }
                }
            }
            let (_, consumer) = self.current.as_mut().expect("just opened");
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    if delivery.data.len() != 4 {
                        tracing::warn!(
                            "{}: dropping a message that is not a ticket number ({} bytes)",
                            self.name,
                            delivery.data.len()
                        );
                        let _ = delivery
                            .acker
                            .reject(BasicRejectOptions { requeue: false })
                            .await;
                        continue;
                    }
                    return OrderDelivery {
                        ticket: BigEndian::read_u32(&delivery.data),
                        redelivered: delivery.redelivered,
                        broker: self.broker.clone(),
                        acker: Some(delivery.acker),
                    };
                }
                Some(Err(e)) => {
                    tracing::debug!("{}: the order consumer stopped: {e}", self.name);
                    self.current = None;
                }
                None => self.current = None,
            }
        }
    }

    async fn open(&self, session: &super::Session) -> Result<lapin::Consumer, lapin::Error> {
        let channel = session.connection.create_channel().await?;
        channel.basic_qos(1, BasicQosOptions::default()).await?;
        channel
            .basic_consume(
                ORDERS_QUEUE.into(),
                self.name.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
    }
}

impl OrderDelivery {
    /// Done with: the broker forgets it.
    pub async fn ack(mut self) -> Result<(), QueueError> {
        let acker = self.acker.take().expect("settled once");
        acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| {
                QueueError::Unavailable(format!("could not acknowledge order {}: {e}", self.ticket))
            })
    }

    /// Not finished: published again at high priority, so it goes to the
    /// front, then this copy is acknowledged. If that publish fails, the
    /// broker takes this copy back instead (to where it was, near the front).
    pub async fn give_back(mut self) -> Result<(), QueueError> {
        let acker = self.acker.take().expect("settled once");
        match self
            .broker
            .publish_order(self.ticket, PRIORITY_GIVEN_BACK)
            .await
        {
            Ok(()) => acker.ack(BasicAckOptions::default()).await.map(|_| ()),
            Err(_) => acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        }
        .map_err(|e| {
            QueueError::Unavailable(format!("could not give back order {}: {e}", self.ticket))
        })
    }
}

impl Drop for OrderDelivery {
    fn drop(&mut self) {
        if let Some(acker) = self.acker.take() {
            tokio::spawn(async move {
                let _ = acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await;
            });
        }
    }
}
