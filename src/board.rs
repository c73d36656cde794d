//! The live board: the orders in the restaurant as every lobby screen sees
//! them, and the fan-out of each change to every connected screen. It is fed
//! by the store (as an [`Observer`]) and read by `/updates` and `/orders`.
//!
//! Each order is serialised once, when it changes. Each change becomes an
//! entry in a ring: the change, plus the board right after it as a persistent
//! map (`imbl`), which shares all but a few nodes with its neighbours, so
//! recording a change costs the store's committer next to nothing whatever
//! the size of the board. The SSE frame of an entry (`id:` and `data:` with
//! the whole board) is built by the first screen that reads it, outside any
//! lock, and shared by every other screen as `Bytes`: a thousand screens cost
//! one frame and a thousand reference counts, and a screen that never reads
//! costs nobody anything.
//!
//! The ring is bounded both in count ([`BACKLOG`]) and in the bytes its
//! frames take or would take ([`BACKLOG_BYTES`]), since every frame holds the
//! whole board. A screen keeps only its place in the ring; when it reads
//! again after its place was overwritten, it gets the whole current board
//! instead of the frames it missed.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use imbl::OrdMap;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::watch;

use crate::order::{Order, Status, Ticket};
use crate::store::{Observer, Origin, Record};

/// Most frames kept for screens that fall behind.
pub const BACKLOG: usize = 256;
/// Most bytes of frames kept (or that would be, once built) for screens that
/// fall behind (the newest is kept whatever its size).
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

/// Each order's status and JSON, by ticket.
type Orders = OrdMap<Ticket, (Status, Bytes)>;

/// One change on the ring, with the board as it was right after it.
struct Entry {
    version: u64,
    /// `None` for the whole board (on connect, or after falling behind).
    change: Option<(Ticket, Status)>,
    orders: Orders,
    /// The frame's length, known before it is built.
    size: usize,
    frame: OnceLock<Frame>,
}

impl Entry {
    fn new(inner: &Inner, change: Option<(Ticket, Status)>) -> Arc<Entry> {
        let size = 96 + inner.orders_bytes + inner.orders.len();
        Arc::new(Entry {
            version: inner.version,
            change,
            orders: inner.orders.clone(),
            size,
            frame: OnceLock::new(),
        })
    }

    /// The SSE frame, built by whoever asks first.
    fn frame(&self) -> Frame {
        self.frame
            .get_or_init(|| {
                let v = self.version;
                let mut out = Vec::with_capacity(self.size);
                write!(out, "id: {v}\ndata: {{\"version\":{v},\"change\":").expect("vec write");
                match self.change {
                    Some((ticket, status)) => {
                        write!(out, "{{\"order\":{ticket},\"status\":\"{status}\"}}")
                    }
                    None => write!(out, "null"),
                }
                .expect("vec write");
                out.extend_from_slice(b",\"orders\":");
                write_orders(&self.orders, &mut out);
                out.extend_from_slice(b"}\n\n");
                Frame {
                    version: v,
                    bytes: out.into(),
                }
            })
            .clone()
    }
}

/// `[order,order,...]`, each order's JSON as it was serialised.
fn write_orders(orders: &Orders, out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, (_, json)) in orders.values().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(json);
    }
    out.push(b']');
}

#[derive(Default)]
struct Inner {
    version: u64,
    orders: Orders,
    /// The total length of the orders' JSON.
    orders_bytes: usize,
    /// The whole board with `"change": null`, kept while it is current.
    current: Option<Arc<Entry>>,
    /// The last changes; the first has sequence number `first`.
    ring: VecDeque<Arc<Entry>>,
    /// What the ring's frames take, or will once built.
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
        let (current, cursor) = {
            let mut inner = self.lock();
            // Under the lock: no change can slip between the two.
            let cursor = Cursor {
                next: inner.end(),
                changes: self.sent.subscribe(),
            };
            (inner.current(), cursor)
        };
        (current.frame(), cursor)
    }

    /// The frame `cursor` needs next, if there is one yet; `None` means wait
    /// for [`Cursor::changed`].
    pub fn next(&self, cursor: &mut Cursor) -> Option<Next> {
        // Seen before looking, so a frame sent after this look wakes the wait.
        cursor.changes.borrow_and_update();
        let entry = {
            let mut inner = self.lock();
            if cursor.next < inner.first {
                cursor.next = inner.end();
                let current = inner.current();
                drop(inner);
                return Some(Next::Lagged(current.frame()));
            }
            let entry = inner
                .ring
                .get((cursor.next - inner.first) as usize)?
                .clone();
            cursor.next += 1;
            entry
        };
        Some(Next::Frame(entry.frame()))
    }

    /// `{"version": V, "orders": [...]}`: the body of `GET /orders`.
    pub fn snapshot(&self) -> Bytes {
        let (version, orders, size) = {
            let inner = self.lock();
            (
                inner.version,
                inner.orders.clone(),
                inner.orders_bytes + inner.orders.len(),
            )
        };
        let mut out = Vec::with_capacity(32 + size);
        write!(out, "{{\"version\":{version},\"orders\":").expect("vec write");
        write_orders(&orders, &mut out);
        out.push(b'}');
        out.into()
    }

    /// How many screens are connected.
    pub fn screens(&self) -> usize {
        self.sent.receiver_count()
    }

    /// Adds a change for every screen and wakes them.
    fn send(&self, inner: &mut Inner, entry: Arc<Entry>) {
        inner.ring_bytes += entry.size;
        inner.ring.push_back(entry);
        while inner.ring.len() > 1
            && (inner.ring.len() > BACKLOG || inner.ring_bytes > BACKLOG_BYTES)
        {
            let old = inner.ring.pop_front().expect("not empty");
            inner.ring_bytes -= old.size;
            inner.first += 1;
        }
        self.sent.send_replace(inner.end());
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
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

    /// The whole board as it is now.
    fn current(&mut self) -> Arc<Entry> {
        match &self.current {
            Some(entry) if entry.version == self.version => entry.clone(),
            _ => {
                let entry = Entry::new(self, None);
                self.current = Some(entry.clone());
                entry
            }
        }
    }

    fn put(&mut self, order: &Order) {
        let json: Bytes = serde_json::to_vec(order)
            .expect("an order serialises")
            .into();
        self.orders_bytes += json.len();
        if let Some((_, old)) = self.orders.insert(order.ticket, (order.status, json)) {
            self.orders_bytes -= old.len();
        }
    }

    fn remove(&mut self, ticket: Ticket) {
        if let Some((_, old)) = self.orders.remove(&ticket) {
            self.orders_bytes -= old.len();
        }
    }
}

impl Observer for Board {
    fn committed(&self, records: &[Record], _origin: Origin) {
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
            let before = inner.orders.get(&order.ticket).map(|(status, _)| *status);
            if order.status.is_live() {
                inner.put(order);
            } else {
                inner.remove(order.ticket);
            }
            inner.version = record.version;
            if watched && before != Some(order.status) {
                let entry = Entry::new(&inner, Some((order.ticket, order.status)));
                self.send(&mut inner, entry);
            }
        }
    }

    fn reloaded(&self, version: u64, live: &BTreeMap<Ticket, Order>) {
        let mut inner = self.lock();
        inner.version = version;
        inner.orders = Orders::new();
        inner.orders_bytes = 0;
        for order in live.values() {
            inner.put(order);
        }
        if self.screens() > 0 {
            let entry = inner.current();
            self.send(&mut inner, entry);
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
            board.committed(&[taken(v, v as Ticket, "cola")], Origin::Here);
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
    fn frames_are_built_only_when_read_and_only_once() {
        let board = Board::new();
        let (_, mut reader) = board.subscribe();
        let (_, _never_reads) = board.subscribe();
        for v in 1..=50 {
            board.committed(&[taken(v, v as Ticket, "fries")], Origin::Here);
        }
        let built = |board: &Board| {
            board
                .lock()
                .ring
                .iter()
                .filter(|e| e.frame.get().is_some())
                .count()
        };
        assert_eq!(built(&board), 0, "recording a change builds no frame");
        let Some(Next::Frame(first)) = board.next(&mut reader) else {
            panic!("a frame")
        };
        assert_eq!(built(&board), 1);
        // A second screen reading the same change shares the same bytes.
        let (_, mut other) = {
            let inner = board.lock();
            (
                0,
                Cursor {
                    next: inner.first,
                    changes: board.sent.subscribe(),
                },
            )
        };
        let Some(Next::Frame(again)) = board.next(&mut other) else {
            panic!("a frame")
        };
        assert_eq!(first.bytes.as_ptr(), again.bytes.as_ptr());
        assert!(std::str::from_utf8(&first.bytes).unwrap().starts_with("id: 1\ndata: {\"version\":1,\"change\":{\"order\":1,\"status\":\"TAKEN\"},\"orders\":[{\"order\":1,"));
    }

    #[test]
    fn the_frames_kept_are_bounded_in_bytes_and_a_stalled_screen_resyncs() {
        let board = Board::new();
        let (_, mut stalled) = board.subscribe();
        // Every frame holds the whole board, which grows by 1000 characters
        // per order: 400 frames would be ~80 MB if all were kept.
        let text = "x".repeat(1000);
        for v in 1..=400 {
            board.committed(&[taken(v, v as Ticket, &text)], Origin::Here);
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
