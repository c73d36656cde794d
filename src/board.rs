//! The live board: the orders in the restaurant as every lobby screen sees
//! them, and the fan-out of each change to every connected screen. It is fed
//! by the store (as an [`Observer`]) and read by `/updates` and `/orders`.
//!
//! Each change is serialised once, as a ready-to-send SSE frame, and shared by
//! every screen (`Bytes`, so a thousand screens cost a thousand reference
//! counts, not a thousand copies). The board keeps the last frames in a ring
//! bounded both in count ([`BACKLOG`]) and in bytes ([`BACKLOG_BYTES`]): each
//! frame holds the whole board, so a count alone would let a big board cost
//! hundreds of megabytes (256 frames of a 10,000-order board is ~500 MB). A
//! screen keeps only its place in the ring; one that stops reading costs
//! nothing more, never holds anyone up, and when it reads again and its place
//! has been overwritten, it gets the whole current board instead of the
//! frames it missed.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

use crate::order::{Order, Status, Ticket};
use crate::store::{Observer, Record};

/// Most frames kept for screens that fall behind.
pub const BACKLOG: usize = 256;
/// Most bytes of frames kept for screens that fall behind (the newest frame
/// is kept whatever its size).
pub const BACKLOG_BYTES: usize = 8 * 1024 * 1024;

/// One SSE message, framed (`id:` and `data:` lines), ready to write.
#[derive(Clone, Debug)]
pub struct Frame {
    pub version: u64,
    pub bytes: Bytes,
}

pub struct Board {
    inner: Mutex<Inner>,
    /// The sequence number after the newest frame: screens wait on it.
    /// Its receivers are the connected screens.
    sent: watch::Sender<u64>,
}

/// A screen's place in the board's frames.
pub struct Cursor {
    /// The sequence number of the next frame this screen needs.
    next: u64,
    changes: watch::Receiver<u64>,
}

/// What a screen gets next.
pub enum Next {
    /// The next change, in order.
    Frame(Frame),
    /// It fell behind: the whole board now, from which it carries on.
    Lagged(Frame),
}

#[derive(Default)]
struct Inner {
    version: u64,
    /// Each order's status and JSON, serialised once when it changes.
    orders: BTreeMap<Ticket, (Status, Bytes)>,
    /// The whole board as a frame with `"change": null`, built on demand.
    current: Option<Frame>,
    /// The last frames sent; the first has sequence number `first`.
    ring: VecDeque<Frame>,
    ring_bytes: usize,
    first: u64,
}

impl Board {
    pub fn new() -> Arc<Board> {
        Arc::new(Board {
            inner: Mutex::default(),
            sent: watch::channel(0).0,
        })
    }

    /// The whole board now, and a place from which every later change follows.
    pub fn subscribe(&self) -> (Frame, Cursor) {
        let mut inner = self.lock();
        // Under the lock: no change can slip between the two.
        let cursor = Cursor {
            next: inner.end(),
            changes: self.sent.subscribe(),
        };
        (inner.current(), cursor)
    }

    /// The frame `cursor` needs next, if there is one yet; `None` means wait
    /// for [`Cursor::changed`].
    pub fn next(&self, cursor: &mut Cursor) -> Option<Next> {
        // Seen before looking, so a frame sent after this look wakes the wait.
        cursor.changes.borrow_and_update();
        let mut inner = self.lock();
        if cursor.next < inner.first {
            cursor.next = inner.end();
            return Some(Next::Lagged(inner.current()));
        }
        let frame = inner
            .ring
            .get((cursor.next - inner.first) as usize)?
            .clone();
        cursor.next += 1;
        Some(Next::Frame(frame))
    }

    /// `{"version": V, "orders": [...]}`: the body of `GET /orders`.
    pub fn snapshot(&self) -> Bytes {
        let inner = self.lock();
        let mut out = Vec::with_capacity(32 + inner.orders_len());
        write!(out, "{{\"version\":{},\"orders\":", inner.version).expect("vec write");
        inner.write_orders(&mut out);
        out.push(b'}');
        out.into()
    }

    /// How many screens are connected.
    pub fn screens(&self) -> usize {
        self.sent.receiver_count()
    }

    /// Adds a frame for every screen and wakes them.
    fn send(&self, inner: &mut Inner, frame: Frame) {
        inner.ring_bytes += frame.bytes.len();
        inner.ring.push_back(frame);
        while inner.ring.len() > 1
            && (inner.ring.len() > BACKLOG || inner.ring_bytes > BACKLOG_BYTES)
        {
            let old = inner.ring.pop_front().expect("not empty");
            inner.ring_bytes -= old.bytes.len();
            inner.first += 1;
        }
        self.sent.send_replace(inner.end());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Cursor {
    /// Waits until a frame may be there for this screen (see [`Board::next`]).
    pub async fn changed(&mut self) {
        // An error means the board is gone; the stream ends with shutdown.
        if self.changes.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Inner {
    /// The sequence number the next frame will get.
    fn end(&self) -> u64 {
        self.first + self.ring.len() as u64
    }

    fn orders_len(&self) -> usize {
        self.orders
            .values()
            .map(|(_, json)| json.len() + 1)
            .sum::<usize>()
            + 2
    }

    fn write_orders(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, (_, json)) in self.orders.values().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(json);
        }
        out.push(b']');
    }

    fn frame(&self, change: Option<(Ticket, Status)>) -> Frame {
        let v = self.version;
        let mut out = Vec::with_capacity(96 + self.orders_len());
        write!(out, "id: {v}\ndata: {{\"version\":{v},\"change\":").expect("vec write");
        match change {
            Some((ticket, status)) => write!(out, "{{\"order\":{ticket},\"status\":\"{status}\"}}"),
            None => write!(out, "null"),
        }
        .expect("vec write");
        out.extend_from_slice(b",\"orders\":");
        self.write_orders(&mut out);
        out.extend_from_slice(b"}\n\n");
        Frame {
            version: v,
            bytes: out.into(),
        }
    }

    fn current(&mut self) -> Frame {
        if self
            .current
            .as_ref()
            .is_none_or(|f| f.version != self.version)
        {
            self.current = Some(self.frame(None));
        }
        self.current.clone().expect("just built")
    }
}

impl Observer for Board {
    fn committed(&self, records: &[Record], _here: bool) {
        let mut inner = self.lock();
        let watched = self.screens() > 0;
        if !watched && !inner.ring.is_empty() {
            // Nobody to keep them for: a screen that connects starts afresh.
            inner.first = inner.end();
            inner.ring.clear();
            inner.ring_bytes = 0;
        }
        for record in records {
            let order = &record.order;
            let before = inner.orders.get(&order.order).map(|(status, _)| *status);
            if order.status.is_live() {
                let json = serde_json::to_vec(order).expect("an order serialises");
                inner
                    .orders
                    .insert(order.order, (order.status, json.into()));
            } else {
                inner.orders.remove(&order.order);
            }
            inner.version = record.version;
            if watched && before != Some(order.status) {
                let frame = inner.frame(Some((order.order, order.status)));
                self.send(&mut inner, frame);
            }
        }
    }

    fn reloaded(&self, version: u64, live: &BTreeMap<Ticket, Order>) {
        let mut inner = self.lock();
        inner.version = version;
        inner.orders = live
            .values()
            .map(|o| {
                (
                    o.order,
                    (
                        o.status,
                        serde_json::to_vec(o).expect("an order serialises").into(),
                    ),
                )
            })
            .collect();
        if self.screens() > 0 {
            let frame = inner.current();
            self.send(&mut inner, frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::Timestamp;

    fn taken(version: u64, ticket: Ticket, content: &str) -> Record {
        Record {
            version,
            order: Order::new(ticket, content.into(), Timestamp::now()),
        }
    }

    #[test]
    fn a_screen_gets_every_frame_in_order_then_waits() {
        let board = Board::new();
        let (first, mut cursor) = board.subscribe();
        assert_eq!(first.version, 0);
        for v in 1..=3 {
            board.committed(&[taken(v, v as Ticket, "cola")], true);
        }
        for v in 1..=3 {
            match board.next(&mut cursor) {
                Some(Next::Frame(f)) => assert_eq!(f.version, v),
                _ => panic!("frame {v}"),
            }
        }
        assert!(board.next(&mut cursor).is_none());
    }

    #[test]
    fn the_frames_kept_are_bounded_in_bytes_and_a_stalled_screen_resyncs() {
        let board = Board::new();
        let (_, mut stalled) = board.subscribe();
        // Every frame holds the whole board, which grows by 1000 characters
        // per order: 400 frames would be ~80 MB if all were kept.
        let text = "x".repeat(1000);
        for v in 1..=400 {
            board.committed(&[taken(v, v as Ticket, &text)], true);
            let inner = board.lock();
            assert!(inner.ring.len() <= BACKLOG);
            assert!(inner.ring_bytes <= BACKLOG_BYTES || inner.ring.len() == 1);
        }
        match board.next(&mut stalled) {
            Some(Next::Lagged(frame)) => assert_eq!(frame.version, 400),
            _ => panic!("a screen that fell behind gets the whole board"),
        }
        assert!(board.next(&mut stalled).is_none(), "and then waits");
    }
}
