//! The broker's side of the queue: publishing an order to the `orders`
//! queue (and waiting for RabbitMQ's confirm), and one worker's view of it:
//! its own channel with prefetch 1 by default (so RabbitMQ hands each worker
//! one order at a time, fairly; `--prefetch` trades that for speed), opened
//! again after every reconnection. A message is a
//! ticket number in [`crate::ticket`]'s encoding. And how many workers
//! consume the queue, which only RabbitMQ knows in complex mode.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Acker, BasicProperties, Confirmation};

use super::{
    Broker, DEAD_QUEUE, ORDERS_QUEUE, ORPHANS_QUEUE, PRIORITY_GIVEN_BACK, PUBLISH_TIMEOUT,
    QueueType, RESTAURANT_HEADER, WHY_HEADER,
};
use crate::backoff;
use crate::order::Ticket;
use crate::queue::{
    Backend, BackendConsumer, BackendDelivery, BackendSlot, Health, QueueError, SetAside,
};
use crate::restaurant::{RestaurantId, Stamp};
use crate::ticket;

impl Broker {
    /// Names the restaurant whose orders this process publishes (in each
    /// message's `restaurant_id` header) and takes; once, when its store is
    /// open. Until then no order can be published.
    pub fn serve_restaurant(&self, restaurant: RestaurantId) {
        if let Err(again) = self.shared.restaurant.set(restaurant) {
            debug_assert_eq!(Some(&again), self.shared.restaurant.get());
        }
    }

    /// How many workers consume the `orders` queue now, in every process;
    /// `None` while disconnected or when RabbitMQ does not answer.
    pub async fn workers_at_work(&self) -> Option<usize> {
        Some(self.inspect_orders().await?.consumer_count() as usize)
    }

    /// The `orders` queue as RabbitMQ sees it now (its message and consumer
    /// counts), from a passive declare on a channel of its own: it asks and
    /// changes nothing, and a failed declare closes that channel, never the
    /// publisher's. `None` while disconnected, or after [`PUBLISH_TIMEOUT`].
    async fn inspect_orders(&self) -> Option<lapin::Queue> {
        let session = self.shared.session.borrow().clone()?;
        let asked = tokio::time::timeout(PUBLISH_TIMEOUT, async {
            let channel = session.connection.create_channel().await?;
            let queue = channel
                .queue_declare(
                    ORDERS_QUEUE.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await;
            let _ = channel.close(200, "inspected".into()).await;
            queue
        })
        .await;
        match asked {
            Ok(Ok(queue)) => Some(queue),
            Ok(Err(e)) => {
                tracing::debug!("could not inspect the orders queue: {e}");
                None
            }
            Err(_) => None,
        }
    }

    /// Publishes `ticket` to the `orders` queue and waits until RabbitMQ has
    /// confirmed it (persisted, routed, not returned), within [`PUBLISH_TIMEOUT`].
    async fn publish_order(&self, ticket: Ticket, priority: u8) -> Result<(), QueueError> {
        let Some(restaurant) = self.shared.restaurant.get() else {
            return Err(QueueError::Unavailable(
                "no order can be queued before the store names its restaurant".into(),
            ));
        };
        let mut headers = FieldTable::default();
        headers.insert(
            RESTAURANT_HEADER.into(),
            AMQPValue::LongString(restaurant.as_str().into()),
        );
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_priority(priority)
            .with_headers(headers);
        self.publish(ORDERS_QUEUE, ticket, &ticket::to_bytes(ticket), properties)
            .await
    }

    /// Publishes `body` (order `ticket`'s message) to `queue` and waits until
    /// RabbitMQ has confirmed it, within [`PUBLISH_TIMEOUT`].
    async fn publish(
        &self,
        queue: &str,
        ticket: Ticket,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), QueueError> {
        let session = self.publishable()?;
        let confirmed = tokio::time::timeout(PUBLISH_TIMEOUT, async {
            session
                .publisher
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    body,
                    properties,
                )
                .await?
                .await
        })
        .await;
        match confirmed {
            Ok(Ok(Confirmation::Ack(None))) => {
                session.confirmed_now();
                Ok(())
            }
            Ok(Ok(_)) => Err(QueueError::Unavailable(format!(
                "the message broker refused order {ticket}"
            ))),
            // The answer says what happened; the log line keeps the detail
            // (an OS error, an address).
            Ok(Err(e)) => {
                tracing::warn!("publishing order {ticket}: {e}");
                Err(QueueError::Unavailable(
                    "the message broker failed to take it".into(),
                ))
            }
            Err(_) => {
                if session.stalled() {
                    self.replace_stalled(&session);
                }
                Err(QueueError::Unavailable(format!(
                    "the message broker did not confirm within {PUBLISH_TIMEOUT:?}"
                )))
            }
        }
    }
}

/// One worker's end of the `orders` queue.
struct OrderConsumer {
    broker: Broker,
    name: String,
    /// Orders RabbitMQ may hand this worker before its acknowledgements.
    prefetch: u16,
    /// The consumer of the current session and its channel, if one is open.
    current: Option<(u64, lapin::Channel, lapin::Consumer)>,
    /// The pause before opening a consumer again after it failed.
    reopen: backoff::Backoff,
}

/// An order delivered to this worker. If dropped unsettled, it is handed
/// back to the broker, which puts it back where it was: near the front.
struct OrderDelivery {
    ticket: Ticket,
    /// The restaurant its `restaurant_id` header names, if it has one.
    restaurant: Option<String>,
    broker: Broker,
    acker: Option<Acker>,
    /// RabbitMQ delivered it before, to a consumer that did not settle it.
    redelivered: bool,
    /// The message as it came, for its copy in `orders.dead`.
    body: Vec<u8>,
    properties: BasicProperties,
}

impl OrderDelivery {
    /// Publishes a copy of this message (its body, with `properties`) to
    /// `queue` and waits for the confirm, then acknowledges this one; if
    /// the copy is not confirmed, the broker takes this one back instead.
    async fn move_to(
        &self,
        queue: &str,
        acker: Acker,
        properties: BasicProperties,
    ) -> Result<(), QueueError> {
        let copied = self
            .broker
            .publish(queue, self.ticket, &self.body, properties)
            .await;
        let settled = match &copied {
            Ok(()) => acker.ack(BasicAckOptions::default()).await,
            Err(_) => {
                acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await
            }
        };
        copied?;
        settled.map(|_| ()).map_err(|e| {
            QueueError::Unavailable(format!("could not set order {} aside: {e}", self.ticket))
        })
    }
}

impl OrderConsumer {
    fn new(broker: Broker, name: &str, prefetch: u16) -> Self {
        OrderConsumer {
            broker,
            name: name.to_owned(),
            prefetch,
            current: None,
            reopen: backoff::REOPEN,
        }
    }

    /// The next order; waits through outages.
    async fn next(&mut self) -> OrderDelivery {
        loop {
            let session = self.broker.connected().await;
            if self
                .current
                .as_ref()
                .is_none_or(|(id, _, _)| *id != session.id)
            {
                self.close_current().await;
                let channel = match session.connection.create_channel().await {
                    Ok(channel) => channel,
                    Err(e) => {
                        tracing::debug!("{}: could not open a channel: {e}", self.name);
                        tokio::time::sleep(self.reopen.pause()).await;
                        continue;
                    }
                };
                match self.open(&channel).await {
                    Ok(consumer) => {
                        self.reopen.reset();
                        self.current = Some((session.id, channel, consumer));
                    }
                    Err(e) => {
                        tracing::debug!("{}: could not consume orders: {e}", self.name);
                        // The consume may yet take effect at the broker (a
                        // quorum queue electing a leader answers late): a
                        // consumer nobody reads would hold an order unacked
                        // for as long as the connection lives. Closing its
                        // channel cancels it and hands back what it held.
                        let closing = channel.close(200, "could not consume".into());
                        let _ = tokio::time::timeout(PUBLISH_TIMEOUT, closing).await;
                        tokio::time::sleep(self.reopen.pause()).await;
                        continue;
                    }
                }
            }
            let (_, _, consumer) = self.current.as_mut().expect("just opened");
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    let Some(ticket) = ticket::from_bytes(&delivery.data) else {
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
                    };
                    let restaurant = delivery
                        .properties
                        .headers()
                        .as_ref()
                        .and_then(|headers| headers.inner().get(RESTAURANT_HEADER))
                        .map(text_of);
                    return OrderDelivery {
                        ticket,
                        restaurant,
                        broker: self.broker.clone(),
                        acker: Some(delivery.acker),
                        redelivered: delivery.redelivered,
                        body: delivery.data,
                        properties: delivery.properties,
                    };
                }
                Some(Err(e)) => {
                    tracing::debug!("{}: the order consumer stopped: {e}", self.name);
                    self.close_current().await;
                }
                None => self.close_current().await,
            }
        }
    }

    /// Closes the current consumer's channel, if any: the broker then hands
    /// back whatever it had delivered there and nobody settled.
    async fn close_current(&mut self) {
        if let Some((_, channel, _)) = self.current.take()
            && channel.status().connected()
        {
            let closing = channel.close(200, "consuming again".into());
            let _ = tokio::time::timeout(PUBLISH_TIMEOUT, closing).await;
        }
    }

    async fn open(&self, channel: &lapin::Channel) -> Result<lapin::Consumer, lapin::Error> {
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
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

/// A header's value as text, whatever AMQP type it was sent as.
fn text_of(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        other => format!("{other:?}"),
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

/// Room for an order: with a broker, nothing to hold, only a check that it
/// can be published now.
struct BrokerSlot(Broker);

impl Backend for Broker {
    fn reserve(&self) -> Result<Box<dyn BackendSlot>, QueueError> {
        self.publishable()?;
        Ok(Box::new(BrokerSlot(self.clone())))
    }

    fn consumer(&self, name: &str, prefetch: u16) -> Box<dyn BackendConsumer> {
        Box::new(OrderConsumer::new(self.clone(), name, prefetch))
    }

    fn health(&self) -> Health {
        let unavailable = self.publishable().err().map(|e| e.to_string());
        let state = match (&unavailable, self.is_blocked()) {
            (None, _) => "connected",
            (Some(_), true) => "blocked",
            (Some(_), false) => "disconnected",
        };
        Health { state, unavailable }
    }

    fn depth(&self) -> Option<usize> {
        // Only RabbitMQ knows, and asking it costs a round trip.
        None
    }

    /// The `orders` queue's message count (ready to deliver; not those a
    /// worker holds unacknowledged).
    fn count_waiting(&self) -> BoxFuture<'_, Option<usize>> {
        async move { Some(self.inspect_orders().await?.message_count() as usize) }.boxed()
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn confirm_timeout(&self) -> Duration {
        PUBLISH_TIMEOUT
    }
}

impl BackendSlot for BrokerSlot {
    fn send(self: Box<Self>, ticket: Ticket) -> BoxFuture<'static, Result<(), QueueError>> {
        async move { self.0.publish_order(ticket, 0).await }.boxed()
    }
}

impl BackendConsumer for OrderConsumer {
    fn next(&mut self) -> BoxFuture<'_, Box<dyn BackendDelivery>> {
        async move { Box::new(OrderConsumer::next(self).await) as Box<dyn BackendDelivery> }.boxed()
    }
}

impl BackendDelivery for OrderDelivery {
    fn ticket(&self) -> Ticket {
        self.ticket
    }

    fn redelivered(&self) -> bool {
        self.redelivered
    }

    fn stamp(&self) -> Stamp {
        Stamp::Carried(self.restaurant.clone())
    }

    /// Not this restaurant's: back to RabbitMQ untouched, where it was.
    fn refuse(mut self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>> {
        async move {
            let acker = self.acker.take().expect("settled once");
            acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(|e| {
                    QueueError::Unavailable(format!(
                        "could not give back order {}: {e}",
                        self.ticket
                    ))
                })
        }
        .boxed()
    }

    /// Published, as it came (its headers and why), to `orders.orphaned`,
    /// then this copy acknowledged. If that publish fails, the broker takes
    /// this copy back instead.
    fn orphan(mut self: Box<Self>, why: String) -> BoxFuture<'static, Result<(), QueueError>> {
        async move {
            let acker = self.acker.take().expect("settled once");
            let mut headers = FieldTable::default();
            if let Some(restaurant) = &self.restaurant {
                headers.insert(
                    RESTAURANT_HEADER.into(),
                    AMQPValue::LongString(restaurant.as_str().into()),
                );
            }
            headers.insert(WHY_HEADER.into(), AMQPValue::LongString(why.into()));
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers);
            self.move_to(ORPHANS_QUEUE, acker, properties).await
        }
        .boxed()
    }

    /// Done with: the broker forgets it.
    fn ack(mut self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>> {
        async move {
            let acker = self.acker.take().expect("settled once");
            acker
                .ack(BasicAckOptions::default())
                .await
                .map(|_| ())
                .map_err(|e| {
                    QueueError::Unavailable(format!(
                        "could not acknowledge order {}: {e}",
                        self.ticket
                    ))
                })
        }
        .boxed()
    }

    /// A poison order: a copy of its message goes to `orders.dead`, with
    /// headers that say why (`x-fastfood-deliveries`,
    /// `x-fastfood-dropped-by`, `x-fastfood-set-aside-by`), then this one is
    /// acknowledged. If the copy is not confirmed, the broker takes this one
    /// back (the store has it CANCELLED: the next worker copies it again).
    fn set_aside(
        mut self: Box<Self>,
        why: SetAside,
    ) -> BoxFuture<'static, Result<Option<&'static str>, QueueError>> {
        async move {
            let acker = self.acker.take().expect("settled once");
            let mut headers = self.properties.headers().clone().unwrap_or_default();
            if let Some(deliveries) = why.deliveries {
                headers.insert(
                    "x-fastfood-deliveries".into(),
                    AMQPValue::LongUInt(deliveries),
                );
            }
            let dropped_by: Vec<AMQPValue> = why
                .dropped_by
                .iter()
                .map(|w| AMQPValue::LongString(w.as_str().into()))
                .collect();
            headers.insert(
                "x-fastfood-dropped-by".into(),
                AMQPValue::FieldArray(dropped_by.into()),
            );
            headers.insert(
                "x-fastfood-set-aside-by".into(),
                AMQPValue::LongString(why.by.as_str().into()),
            );
            let properties = self
                .properties
                .clone()
                .with_delivery_mode(2)
                .with_headers(headers);
            self.move_to(DEAD_QUEUE, acker, properties)
                .await
                .map(|()| Some(DEAD_QUEUE))
        }
        .boxed()
    }

    /// Not finished. On a classic queue: published again at high priority,
    /// so it goes to the front, then this copy is acknowledged; if that
    /// publish fails, the broker takes this copy back instead (to where it
    /// was, near the front). On a quorum queue, which has no priorities:
    /// nacked, and the queue serves it before the orders waiting.
    fn give_back(mut self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>> {
        async move {
            let acker = self.acker.take().expect("settled once");
            let republished = match self.broker.shared.queue_type {
                QueueType::Classic => self
                    .broker
                    .publish_order(self.ticket, PRIORITY_GIVEN_BACK)
                    .await
                    .is_ok(),
                QueueType::Quorum => false,
            };
            match republished {
                true => acker.ack(BasicAckOptions::default()).await.map(|_| ()),
                false => acker
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
        .boxed()
    }
}
