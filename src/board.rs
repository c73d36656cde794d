//! The live board: the orders in the restaurant as every lobby screen sees
//! them, and the fan-out of each change to every connected screen. It is fed
//! by the store (as an [`Observer`]) and read by `/updates` and `/orders`.
//!
//! Each change is serialised once, as a ready-to-send SSE frame, and shared by
//! every screen (a `broadcast` of `Bytes`, so a thousand screens cost a
//! thousand reference counts, not a thousand copies). The broadcast keeps the
//! last [`BACKLOG`] frames: a screen that stops reading costs nothing more,
//! never holds anyone up, and when it reads again it is told it lagged and
//! gets the whole current board instead of the frames it missed.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::order::{Order, Status, Ticket};
use crate::store::{Observer, Record};

/// Frames kept for screens that fall behind.
pub const BACKLOG: usize = 256;

/// One SSE message, framed (`id:` and `data:` lines), ready to write.
#[derive(Clone, Debug)]
pub struct Frame {
    pub version: u64,
    pub bytes: Bytes,
}

pub struct Board {
    inner: Mutex<Inner>,
    frames: broadcast::Sender<Frame>,
}

#[derive(Default)]
struct Inner {
    version: u64,
    /// Each order's status and JSON, serialised once when it changes.
    orders: BTreeMap<Ticket, (Status, Bytes)>,
    /// The whole board as a frame with `"change": null`, built on demand.
    current: Option<Frame>,
}

impl Board {
    pub fn new() -> Arc<Board> {
        Arc::new(Board {
            inner: Mutex::default(),
            frames: broadcast::channel(BACKLOG).0,
        })
    }

    /// The whole board now, and every change after it.
    pub fn subscribe(&self) -> (Frame, broadcast::Receiver<Frame>) {
        let mut inner = self.lock();
        // Subscribing under the lock: no change can slip between the two.
        (inner.current(), self.frames.subscribe())
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
        self.frames.receiver_count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
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
        let watched = self.frames.receiver_count() > 0;
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
                // An error only means every screen left meanwhile.
                let _ = self.frames.send(frame);
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
        if self.frames.receiver_count() > 0 {
            let frame = inner.current();
            let _ = self.frames.send(frame);
        }
    }
}
