//! The live board: the orders in the restaurant as every lobby screen sees
//! them, and the fan-out of each change to every connected screen. It is fed
//! by the store (as an [`Observer`]) and read by `/updates` and `/orders`.
//!
//! Each order is serialised once, when it changes. A change becomes an entry
//! in a ring: its SSE frame (`id:` and `data:` with the version and the
//! changed order, a few hundred bytes however full the restaurant is), built
//! once and shared by every screen as `Bytes`, plus the board right after it
//! as a persistent map (`imbl`), which shares all but a few nodes with its
//! neighbours, for the screens that asked for the whole board in every event.
//! So recording a change costs the committer O(log n), and each screen O(1).
//!
//! A whole board (on connect, after falling behind, and for `GET /orders`)
//! is a [`Whole`]: a snapshot of the map, written out in pieces of about
//! [`PIECE`] bytes as the socket takes them. A reader that stalls holds the
//! snapshot (which shares its nodes and its orders' JSON with the live
//! board) and one piece, never a copy of the whole restaurant.
//!
//! The ring is bounded in count ([`BACKLOG`]). A screen keeps only its place
//! in the ring; when it reads again after its place was overwritten, it gets
//! the whole current board instead of the changes it missed.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use imbl::OrdMap;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::watch;

use crate::order::{Order, Status, Ticket};
use crate::store::{Observer, Origin, Record};

/// Most changes kept for screens that fall behind.
pub const BACKLOG: usize = 256;
/// About how many bytes of a whole board are written at a time.
pub const PIECE: usize = 16 * 1024;

pub struct Board {
    inner: Mutex<Inner>,
    /// The sequence number after the newest change: screens wait on it.
    /// Its receivers are the connected screens.
    sent: watch::Sender<u64>,
}

/// A screen's place in the board's changes.
pub struct Cursor {
    /// The sequence number of the next change this screen needs.
    next: u64,
    changes: watch::Receiver<u64>,
}

/// What a screen gets next.
pub enum Next {
    /// The next change, in order.
    Change(Arc<Change>),
    /// It fell behind: the whole board now, from which it carries on.
    Lagged(Whole),
}

/// Each order's status and JSON, by ticket.
type Orders = OrdMap<Ticket, (Status, Bytes)>;

/// One change on the ring, with the board as it was right after it.
pub struct Change {
    pub version: u64,
    /// The changed order's JSON, as `GET /orders/N` shows it.
    json: Bytes,
    /// `id: V` and `data: {"version": V, "change": {...}}`, framed.
    frame: Bytes,
    orders: Orders,
}

impl Change {
    /// The SSE frame of this change alone.
    pub fn frame(&self) -> Bytes {
        self.frame.clone()
    }

    /// The SSE frame of this change with the whole board after it.
    pub fn with_board(&self) -> Whole {
        let v = self.version;
        let mut head = Vec::with_capacity(64 + self.json.len());
        write!(head, "id: {v}\ndata: {{\"version\":{v},\"change\":").expect("vec write");
        head.extend_from_slice(&self.json);
        head.extend_from_slice(b",\"orders\":");
        Whole::new(head, self.orders.clone(), b"}\n\n")
    }
}

/// A whole board, written out a piece at a time: `head`, `[`, the orders'
/// JSON, `]`, `tail`.
pub struct Whole {
    pub version: u64,
    head: Option<Vec<u8>>,
    orders: Orders,
    /// The ticket to write from next.
    from: Ticket,
    /// Whether an order was written (the next needs a comma).
    any: bool,
    tail: &'static [u8],
    done: bool,
}

impl Whole {
    fn new(head: Vec<u8>, orders: Orders, tail: &'static [u8]) -> Whole {
        Whole {
            version: 0,
            head: Some(head),
            orders,
            from: 0,
            any: false,
            tail,
            done: false,
        }
    }

    /// The SSE frame of the whole board, `"change": null`.
    fn frame(version: u64, orders: Orders) -> Whole {
        let mut head = Vec::with_capacity(64);
        write!(
            head,
            "id: {version}\ndata: {{\"version\":{version},\"change\":null,\"orders\":"
        )
        .expect("vec write");
        Whole {
            version,
            ..Whole::new(head, orders, b"}\n\n")
        }
    }

    /// The next piece, about [`PIECE`] bytes (or one order, if larger);
    /// `None` once all was written.
    pub fn next_piece(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut out = match self.head.take() {
            Some(mut head) => {
                head.push(b'[');
                head
            }
            None => Vec::with_capacity(PIECE + 1024),
        };
        let range = self
            .orders
            .range((Bound::Included(self.from), Bound::Unbounded));
        for (ticket, (_, json)) in range {
            if out.len() >= PIECE {
                self.from = *ticket;
                return Some(out.into());
            }
            if self.any {
                out.push(b',');
            }
            out.extend_from_slice(json);
            self.any = true;
        }
        out.push(b']');
        out.extend_from_slice(self.tail);
        self.done = true;
        Some(out.into())
    }

    /// All of it at once (for tests and small boards).
    pub fn to_vec(mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(piece) = self.next_piece() {
            out.extend_from_slice(&piece);
        }
        out
    }
}

#[derive(Default)]
struct Inner {
    version: u64,
    orders: Orders,
    /// The last changes; the first has sequence number `first`.
    ring: VecDeque<Arc<Change>>,
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
    pub fn subscribe(&self) -> (Whole, Cursor) {
        let inner = self.lock();
        // Under the lock: no change can slip between the two.
        let cursor = Cursor {
            next: inner.end(),
            changes: self.sent.subscribe(),
        };
        (Whole::frame(inner.version, inner.orders.clone()), cursor)
    }

    /// What `cursor` needs next, if there is anything yet; `None` means wait
    /// for [`Cursor::changed`].
    pub fn next(&self, cursor: &mut Cursor) -> Option<Next> {
        // Seen before looking, so a change sent after this look wakes the wait.
        cursor.changes.borrow_and_update();
        let inner = self.lock();
        if cursor.next < inner.first {
            cursor.next = inner.end();
            return Some(Next::Lagged(Whole::frame(
                inner.version,
                inner.orders.clone(),
            )));
        }
        let change = inner
            .ring
            .get((cursor.next - inner.first) as usize)?
            .clone();
        cursor.next += 1;
        Some(Next::Change(change))
    }

    /// `{"version": V, "orders": [...]}`: the body of `GET /orders`, to be
    /// written a piece at a time.
    pub fn snapshot(&self) -> Whole {
        let inner = self.lock();
        let head = format!("{{\"version\":{},\"orders\":", inner.version).into_bytes();
        Whole {
            version: inner.version,
            ..Whole::new(head, inner.orders.clone(), b"}")
        }
    }

    /// How many screens are connected.
    pub fn screens(&self) -> usize {
        self.sent.receiver_count()
    }

    /// Adds a change for every screen and wakes them.
    fn send(&self, inner: &mut Inner, change: Arc<Change>) {
        inner.ring.push_back(change);
        while inner.ring.len() > BACKLOG {
            inner.ring.pop_front();
            inner.first += 1;
        }
        self.sent.send_replace(inner.end());
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }
}

impl Cursor {
    /// Waits until a change may be there for this screen (see [`Board::next`]).
    pub async fn changed(&mut self) {
        // An error means the board is gone; the stream ends with shutdown.
        if self.changes.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Inner {
    /// The sequence number the next change will get.
    fn end(&self) -> u64 {
        self.first + self.ring.len() as u64
    }

    /// Records `order`; its JSON as `GET /orders/N` shows it.
    fn put(&mut self, order: &Order) -> Bytes {
        if order.status.is_live() {
            let json: Bytes = serde_json::to_vec(order)
                .expect("an order serialises")
                .into();
            self.orders
                .insert(order.ticket, (order.status, json.clone()));
            json
        } else {
            self.orders.remove(&order.ticket);
            // Gone from the board: `GET /orders/N` shows its number and status.
            format!(
                "{{\"order\":{},\"status\":\"{}\"}}",
                order.ticket, order.status
            )
            .into()
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
        }
        for record in records {
            let order = &record.order;
            let before = inner.orders.get(&order.ticket).map(|(status, _)| *status);
            let json = inner.put(order);
            inner.version = record.version;
            if watched && before != Some(order.status) {
                let v = record.version;
                let mut frame = Vec::with_capacity(48 + json.len());
                write!(frame, "id: {v}\ndata: {{\"version\":{v},\"change\":").expect("vec write");
                frame.extend_from_slice(&json);
                frame.extend_from_slice(b"}\n\n");
                let change = Change {
                    version: v,
                    json,
                    frame: frame.into(),
                    orders: inner.orders.clone(),
                };
                self.send(&mut inner, Arc::new(change));
            }
        }
    }

    fn reloaded(&self, version: u64, live: &BTreeMap<Ticket, Order>) {
        let mut inner = self.lock();
        inner.version = version;
        inner.orders = Orders::new();
        for order in live.values() {
            inner.put(order);
        }
        if self.screens() > 0 {
            // Every screen resyncs: its place is now behind the ring.
            inner.first = inner.end() + 1;
            inner.ring.clear();
            self.sent.send_replace(inner.first);
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

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_screen_gets_every_change_in_order_then_waits() {
        let board = Board::new();
        let (first, mut cursor) = board.subscribe();
        assert_eq!(first.version, 0);
        assert_eq!(
            text(&first.to_vec()),
            "id: 0\ndata: {\"version\":0,\"change\":null,\"orders\":[]}\n\n"
        );
        for v in 1..=3 {
            board.committed(&[taken(v, v as Ticket, "cola")], Origin::Here);
        }
        for v in 1..=3 {
            match board.next(&mut cursor) {
                Some(Next::Change(c)) => assert_eq!(c.version, v),
                _ => panic!("change {v}"),
            }
        }
        assert!(board.next(&mut cursor).is_none());
    }

    #[test]
    fn a_change_costs_the_same_however_full_the_board_is() {
        let board = Board::new();
        let (_, mut reader) = board.subscribe();
        let text_1000 = "x".repeat(1000);
        // Read as they come: the 1st change and the 2,000th cost the same.
        let mut sizes = Vec::new();
        for v in 1..=2000 {
            board.committed(&[taken(v, v as Ticket, &text_1000)], Origin::Here);
            match board.next(&mut reader) {
                Some(Next::Change(c)) => sizes.push(c.frame().len()),
                _ => panic!("change {v}"),
            }
        }
        let (least, most) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(*most < 1200 && most - least < 10, "{least}..{most} bytes");
        // A second screen shares the same bytes.
        let (_, mut other) = board.subscribe();
        board.committed(&[taken(2001, 2001, "fries")], Origin::Here);
        let (Some(Next::Change(a)), Some(Next::Change(b))) =
            (board.next(&mut reader), board.next(&mut other))
        else {
            panic!("a change for both")
        };
        assert_eq!(a.frame().as_ptr(), b.frame().as_ptr());
        assert!(text(&a.frame()).starts_with(
            "id: 2001\ndata: {\"version\":2001,\"change\":{\"order\":2001,\"status\":\"TAKEN\",\"content\":\"fries\""
        ));
        // Who asked for the whole board in every event gets it.
        let whole = a.with_board().to_vec();
        let data = text(&whole).strip_prefix("id: 2001\ndata: ").unwrap();
        let value: serde_json::Value = serde_json::from_str(data.trim_end()).unwrap();
        assert_eq!(value["orders"].as_array().unwrap().len(), 2001);
        assert_eq!(value["change"]["order"], 2001);
    }

    #[test]
    fn a_whole_board_is_written_in_pieces() {
        let board = Board::new();
        let text_1000 = "y".repeat(1000);
        for v in 1..=100 {
            board.committed(&[taken(v, v as Ticket, &text_1000)], Origin::Here);
        }
        let mut whole = board.snapshot();
        // Later changes do not reach a snapshot being written.
        board.committed(&[taken(101, 101, "late")], Origin::Here);
        let mut pieces = Vec::new();
        while let Some(piece) = whole.next_piece() {
            assert!(piece.len() < PIECE + 1200, "{} bytes", piece.len());
            pieces.extend_from_slice(&piece);
        }
        assert!(pieces.len() > 5 * PIECE);
        let value: serde_json::Value = serde_json::from_slice(&pieces).unwrap();
        assert_eq!(value["version"], 100);
        let tickets: Vec<u64> = value["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["order"].as_u64().unwrap())
            .collect();
        assert_eq!(tickets, (1..=100).collect::<Vec<_>>());
    }

    #[test]
    fn a_stalled_screen_resyncs_to_the_whole_board() {
        let board = Board::new();
        let (_, mut stalled) = board.subscribe();
        for v in 1..=400 {
            board.committed(&[taken(v, v as Ticket, "z")], Origin::Here);
            assert!(board.lock().ring.len() <= BACKLOG);
        }
        match board.next(&mut stalled) {
            Some(Next::Lagged(whole)) => assert_eq!(whole.version, 400),
            _ => panic!("a screen that fell behind gets the whole board"),
        }
        assert!(board.next(&mut stalled).is_none(), "and then waits");
    }
}
