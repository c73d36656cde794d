//! A lobby screen's view of `GET /updates`: [`SseClient`] reads the stream
//! with the library's one SSE reader (`fastfood::rush::sse`), [`SseEvent`]
//! is one event with its data parsed.
//! Every test that reads `/updates` (one screen, thousands, or a watcher
//! that follows restarting servers) reads it through this one client.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fastfood::rush::sse;
pub use fastfood::rush::sse::Event;
use futures_util::{Stream, StreamExt};
use serde_json::Value;

use super::{Board, EVENT_DEADLINE, header};

/// One event from `/updates`.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// The `id:` field.
    pub id: String,
    /// The `event:` type ("message" when none was given).
    pub event: String,
    pub data: Value,
    /// The board after this event, as the client's copy has it: the whole
    /// board an event carries, or the copy with the event's change applied.
    pub copy: Arc<BTreeMap<u32, Value>>,
}

impl SseEvent {
    pub fn version(&self) -> u64 {
        self.data["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("no version in {}", self.data))
    }

    /// `(ticket, status)` of the change, or `None` for a whole-board event.
    pub fn change(&self) -> Option<(u32, String)> {
        let change = &self.data["change"];
        if change.is_null() {
            return None;
        }
        Some((
            change["order"].as_u64().unwrap() as u32,
            change["status"].as_str().unwrap().to_owned(),
        ))
    }

    /// The board after this event (see [`SseEvent::copy`]).
    pub fn board(&self) -> Board {
        Board {
            version: self.version(),
            orders: self.copy.values().cloned().collect(),
        }
    }

    /// Whether this event carries the whole board.
    pub fn is_whole(&self) -> bool {
        self.data["orders"].is_array()
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, sse::Error>> + Send>>;

/// The largest event a test screen accepts: a board of tens of thousands of
/// orders fits.
const EVENT_LIMIT: usize = 64 << 20;

/// A lobby screen on `/updates`.
pub struct SseClient {
    events: EventStream,
    /// The board as the events so far make it, by ticket (shared with the
    /// last event, copied only when that event is still held).
    copy: Arc<BTreeMap<u32, Value>>,
}

/// A client for streams, one or thousands at once: no overall timeout (each
/// event has its own deadline), never through a proxy.
pub fn streams_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

impl SseClient {
    /// Connects; returns once the server has answered with the stream's
    /// headers, so every change after this is sent to it.
    pub async fn connect(url: &str) -> SseClient {
        SseClient::from_request(streams_client().get(url)).await
    }

    /// Connects with a prepared request (a shared client for thousands of
    /// screens, extra headers such as `Last-Event-ID`); like [`SseClient::connect`].
    pub async fn from_request(request: reqwest::RequestBuilder) -> SseClient {
        match SseClient::open(request).await {
            Ok(client) => client,
            Err(e) => panic!("GET /updates: {e}"),
        }
    }

    /// Connects, or says why not (for a watcher that keeps reconnecting to
    /// servers that come and go).
    pub async fn open(request: reqwest::RequestBuilder) -> Result<SseClient, String> {
        let response = request.send().await.map_err(|e| e.to_string())?;
        if response.status() != 200 {
            return Err(format!("answered {}", response.status()));
        }
        let content_type = header(&response, "content-type");
        if content_type != "text/event-stream" {
            return Err(format!("content-type {content_type:?}"));
        }
        Ok(SseClient {
            events: Box::pin(sse::events(response.bytes_stream(), EVENT_LIMIT)),
            copy: Arc::default(),
        })
    }

    /// The next event; panics if none comes within [`EVENT_DEADLINE`].
    pub async fn next_event(&mut self) -> SseEvent {
        match self.try_next_event(EVENT_DEADLINE).await {
            Some(event) => event,
            None => panic!("no SSE event within {EVENT_DEADLINE:?}"),
        }
    }

    /// The next event, or `None` after `timeout`; panics if the stream ends or
    /// breaks.
    pub async fn try_next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        let event = self.try_next_raw(timeout).await?;
        let data = serde_json::from_str(&event.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", event.data));
        let copy = self.apply(&data);
        Some(SseEvent {
            id: event.id,
            event: event.event,
            data,
            copy,
        })
    }

    /// The next event unparsed (for screens that read thousands of big
    /// boards); panics if none comes within [`EVENT_DEADLINE`].
    /// Applies one event to the copy of the board, as a board page does: a
    /// whole board replaces it; a change puts or removes its order.
    fn apply(&mut self, data: &Value) -> Arc<BTreeMap<u32, Value>> {
        if let Some(orders) = data["orders"].as_array() {
            Board::from_value(data); // checks the order
            self.copy = Arc::new(
                orders
                    .iter()
                    .map(|o| (o["order"].as_u64().unwrap() as u32, o.clone()))
                    .collect(),
            );
            return self.copy.clone();
        }
        // Another stream (`/kitchen/updates`): no board to keep.
        if data.get("change").is_none() {
            return self.copy.clone();
        }
        let change = &data["change"];
        let ticket = change["order"]
            .as_u64()
            .unwrap_or_else(|| panic!("an event with neither orders nor a change: {data}"))
            as u32;
        let copy = Arc::make_mut(&mut self.copy);
        match change["status"].as_str() {
            Some("TAKEN" | "PREPARING" | "READY") => {
                copy.insert(ticket, change.clone());
            }
            _ => {
                copy.remove(&ticket);
            }
        }
        self.copy.clone()
    }

    pub async fn next_raw(&mut self) -> Event {
        match self.try_next_raw(EVENT_DEADLINE).await {
            Some(event) => event,
            None => panic!("no SSE event within {EVENT_DEADLINE:?}"),
        }
    }

    async fn try_next_raw(&mut self, timeout: Duration) -> Option<Event> {
        match tokio::time::timeout(timeout, self.events.next()).await {
            Err(_) => None,
            Ok(None) => panic!("the /updates stream ended"),
            Ok(Some(Err(e))) => panic!("the /updates stream broke: {e}"),
            Ok(Some(Ok(event))) => Some(event),
        }
    }

    /// The next event unparsed, however long it takes; `None` once the
    /// stream has ended or broken (a server killed under a watcher).
    pub async fn next_until_end(&mut self) -> Option<Event> {
        self.events.next().await?.ok()
    }

    /// Reads (and drops) events until the stream ends: `Some(true)` when the
    /// server ended it cleanly, `Some(false)` when the connection broke,
    /// `None` if it is still open after `timeout`.
    pub async fn wait_end(&mut self, timeout: Duration) -> Option<bool> {
        tokio::time::timeout(timeout, async {
            while let Some(item) = self.events.next().await {
                if item.is_err() {
                    return false;
                }
            }
            true
        })
        .await
        .ok()
    }
}
