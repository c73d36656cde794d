//! The one lobby screen a rush follows: a single `GET /updates` stream whose
//! READY changes are handed to the customers waiting for them, so a thousand
//! customers cost the server one screen, not a thousand.
//!
//! A READY can arrive before its customer has the ticket in hand (the kitchen
//! may be faster than the reply): it is kept for a while, and the customer
//! finds it when they start watching. A full board (`"change": null`, on
//! connect or after this screen fell behind) is searched for READY orders
//! this screen might have missed; every other event is one change (the
//! order as it is now), so this screen keeps no copy of the board: it
//! only needs the READY moments.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::history::Tape;
use super::sse;
use crate::backoff::Backoff;
use crate::order::{Status, Ticket};

/// Largest event read: a board of about 300,000 orders.
const EVENT_LIMIT: usize = 64 << 20;
/// How long a READY nobody asked for is kept (another client's order, or a
/// customer about to ask).
const KEEP_UNCLAIMED: Duration = Duration::from_secs(30);
/// How the board stream is followed again after it broke: soon, then less often.
const STREAM_RECONNECT: Backoff =
    Backoff::new(Duration::from_millis(50), Duration::from_secs(2), 2);

#[derive(Deserialize)]
struct Head {
    version: u64,
    change: Option<Change>,
    #[serde(default, rename = "orders")]
    _orders: IgnoredAny,
}

/// The version and change of an event. A whole board can be megabytes, so
/// when the event starts the way the server writes it
/// (`{"version":…,"change":…,"orders":[…]}`) only the part before the
/// orders is parsed.
fn head(data: &[u8]) -> anyhow::Result<Head> {
    const ORDERS: &[u8] = b",\"orders\":";
    let prefix = data.get(..256.min(data.len())).unwrap_or_default();
    if let Some(at) = prefix.windows(ORDERS.len()).position(|w| w == ORDERS) {
        let mut short = Vec::with_capacity(at + 1);
        short.extend_from_slice(&data[..at]);
        short.push(b'}');
        if let Ok(head) = serde_json::from_slice::<Head>(&short) {
            return Ok(head);
        }
    }
    serde_json::from_slice(data).context("an /updates event that is not a board")
}

#[derive(Deserialize)]
struct Change {
    order: Ticket,
    status: Status,
}

#[derive(Deserialize)]
struct Full {
    orders: Vec<Change>,
}

/// What the screen has seen, for the summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    pub events: u64,
    /// Full boards after the first: the screen fell behind or reconnected.
    pub resyncs: u64,
    pub reconnects: u64,
    pub version: u64,
}

#[derive(Default)]
struct Inner {
    /// Customers waiting for their order to be READY.
    waiting: HashMap<Ticket, oneshot::Sender<Instant>>,
    /// READY orders nobody was waiting for yet, and when they were seen.
    unclaimed: HashMap<Ticket, Instant>,
    seen: Seen,
    last_prune: Option<Instant>,
}

/// The shared screen; cheap to clone.
#[derive(Clone, Default)]
pub struct Watch {
    inner: Arc<Mutex<Inner>>,
    /// With `--history`: this screen's server and the tape every event goes to.
    tape: Option<(usize, Arc<Tape>)>,
}

impl Watch {
    /// A screen of `server` that records every event it reads on `tape`.
    pub fn recording(server: usize, tape: Arc<Tape>) -> Watch {
        Watch {
            inner: Arc::default(),
            tape: Some((server, tape)),
        }
    }

    /// When `ticket` became READY, as soon as this screen sees it.
    pub fn ready(&self, ticket: Ticket) -> oneshot::Receiver<Instant> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        match inner.unclaimed.remove(&ticket) {
            Some(at) => {
                let _ = tx.send(at);
            }
            None => {
                inner.waiting.insert(ticket, tx);
            }
        }
        rx
    }

    pub fn seen(&self) -> Seen {
        self.lock().seen
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Takes in one event's data (`id` and `connection` for the tape).
    fn event(&self, data: &[u8], at: Instant, id: &str, connection: u32) -> anyhow::Result<()> {
        let head = head(data)?;
        let full = match head.change {
            None => Some(
                serde_json::from_slice::<Full>(data).context("an /updates board without orders")?,
            ),
            Some(_) => None,
        };
        if let Some((server, tape)) = &self.tape {
            let change = head.change.as_ref().map(|c| (c.order, c.status));
            let board = full
                .as_ref()
                .map(|f| f.orders.iter().map(|c| (c.order, c.status)).collect());
            tape.board(*server, connection, at, id, head.version, change, board);
        }
        let mut inner = self.lock();
        let first = inner.seen.events == 0;
        inner.seen.events += 1;
        inner.seen.version = head.version;
        match (head.change, full) {
            (
                Some(Change {
                    order,
                    status: Status::Ready,
                }),
                _,
            ) => inner.became_ready(order, at),
            (Some(_), _) => {}
            (None, full) => {
                if !first {
                    inner.seen.resyncs += 1;
                }
                for change in full
                    .iter()
                    .flat_map(|f| &f.orders)
                    .filter(|c| c.status == Status::Ready)
                {
                    if inner.waiting.contains_key(&change.order) {
                        inner.became_ready(change.order, at);
                    }
                }
            }
        }
        if inner
            .last_prune
            .is_none_or(|t| at.duration_since(t) > Duration::from_secs(1))
        {
            inner
                .unclaimed
                .retain(|_, seen| at.duration_since(*seen) < KEEP_UNCLAIMED);
            inner.last_prune = Some(at);
        }
        Ok(())
    }

    /// Follows `{base}/updates` until `stop`, reconnecting when the stream
    /// ends. Fails only if it cannot connect at all at first.
    pub async fn follow(
        self,
        client: reqwest::Client,
        base: String,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let url = format!("{base}/updates");
        let mut connected_once = false;
        let mut connection = 0u32;
        let mut backoff = STREAM_RECONNECT;
        while !stop.is_cancelled() {
            let response = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                r = client.get(&url).header("accept", "text/event-stream").send() => r,
            };
            let response = match response.and_then(|r| r.error_for_status()) {
                Ok(r) => r,
                Err(e) if !connected_once => {
                    return Err(e).with_context(|| format!("cannot follow {url}"));
                }
                Err(e) => {
                    tracing::warn!("{url}: {e}; reconnecting");
                    tokio::time::sleep(backoff.pause()).await;
                    continue;
                }
            };
            if connected_once {
                self.lock().seen.reconnects += 1;
            }
            connected_once = true;
            connection += 1;
            backoff.reset();
            let mut events = std::pin::pin!(sse::events(response.bytes_stream(), EVENT_LIMIT));
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    e = events.next() => e,
                };
                match event {
                    Some(Ok(event)) => {
                        if let Err(e) =
                            self.event(event.data.as_bytes(), Instant::now(), &event.id, connection)
                        {
                            bail!("{url}: {e:#}");
                        }
                    }
                    // The connection ended or broke: reconnect.
                    None | Some(Err(sse::Error::Transport(_))) => break,
                    Some(Err(e)) => bail!("{url}: {e}"),
                }
            }
        }
        Ok(())
    }
}

impl Inner {
    fn became_ready(&mut self, ticket: Ticket, at: Instant) {
        match self.waiting.remove(&ticket) {
            Some(tx) => {
                let _ = tx.send(at);
            }
            None => {
                self.unclaimed.entry(ticket).or_insert(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_seen_before_the_customer_asks_is_kept_for_them() {
        let tape = Arc::new(Tape::new(vec!["http://a".into()], Duration::from_secs(1)));
        let watch = Watch::recording(0, tape.clone());
        let now = Instant::now();
        watch
            .event(br#"{"version":1,"change":null,"orders":[]}"#, now, "1", 1)
            .unwrap();
        watch
            .event(
                br#"{"version":4,"change":{"order":7,"status":"READY"},"orders":[]}"#,
                now,
                "4",
                1,
            )
            .unwrap();
        let mut early = watch.ready(7);
        assert_eq!(early.try_recv().unwrap(), now);
        let mut late = watch.ready(8);
        assert!(late.try_recv().is_err());
        // A full board after falling behind catches the READY this screen missed.
        let full = br#"{"version":9,"change":null,"orders":[{"order":8,"status":"READY","content":"x","taken_at":"2026-11-21T12:00:00.000Z"}]}"#;
        watch.event(full, now, "9", 2).unwrap();
        assert_eq!(late.try_recv().unwrap(), now);
        // Only the part before the orders is read when it can be.
        let odd = br#"{"change":{"order":9,"status":"READY"},"version":10,"orders":[]}"#;
        watch.event(odd, now, "10", 2).unwrap();
        assert!(watch.event(b"not json", now, "11", 2).is_err());
        let seen = watch.seen();
        assert_eq!((seen.events, seen.resyncs, seen.version), (4, 1, 10));
        // Every event that parsed is on the tape, whole boards with their orders.
        let boards = tape.history().boards;
        let recorded: Vec<_> = boards
            .iter()
            .map(|e| (e.connection, e.id, e.version, e.change))
            .collect();
        assert_eq!(
            recorded,
            vec![
                (1, Some(1), 1, None),
                (1, Some(4), 4, Some((7, Status::Ready))),
                (2, Some(9), 9, None),
                (2, Some(10), 10, Some((9, Status::Ready))),
            ]
        );
        assert_eq!(boards[2].board, Some(vec![(8, Status::Ready)]));
    }
}
