//! `orders.json`: the orders in the restaurant after change `V`,
//! `{"version": V, "orders": [...], "pickup_codes": {...}}`, one order per
//! line, shaped like `GET /orders`, then the pickup codes of those orders by
//! ticket number on the last line (kept apart from the orders so that an
//! order read from here is exactly what the API shows). A snapshot written
//! before there were codes has no `pickup_codes`: its orders need none.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::StoreError;
use super::disk::corrupt;
use super::state::{State, TicketSet};
use crate::order::{Order, Ticket};
use crate::pickup::PickupCode;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Snapshot {
    pub(super) version: u64,
    pub(super) orders: Vec<Order>,
    #[serde(default)]
    pub(super) pickup_codes: HashMap<Ticket, PickupCode>,
}

/// The snapshot of `state`, one order per line so it reads well and diffs well.
pub(super) fn snapshot_bytes(state: &State) -> Vec<u8> {
    let mut out = format!("{{\"version\":{},\"orders\":[", state.version).into_bytes();
    for (i, order) in state.live.values().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
        serde_json::to_writer(&mut out, order).expect("an order serialises");
    }
    out.extend_from_slice(b"\n],\n\"pickup_codes\":");
    // By ticket, so the same state always writes the same bytes.
    let codes: std::collections::BTreeMap<_, _> = state
        .codes
        .iter()
        .filter(|(t, _)| state.live.contains_key(t))
        .collect();
    serde_json::to_writer(&mut out, &codes).expect("codes serialise");
    out.extend_from_slice(b"}\n");
    out
}

pub(super) fn parse_snapshot(path: &Path, bytes: &[u8]) -> Result<Snapshot, StoreError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(corrupt(
            path,
            "is empty; even a new store holds {\"version\":0,\"orders\":[]}",
        ));
    }
    let snapshot: Snapshot = serde_json::from_slice(bytes).map_err(|e| {
        corrupt(
            path,
            format!("is not a valid order snapshot (truncated or damaged?): {e}"),
        )
    })?;
    let mut seen = TicketSet::default();
    for order in &snapshot.orders {
        if !order.status.is_live() {
            return Err(corrupt(
                path,
                format!(
                    "order {} is {}, but the snapshot holds only orders still in the restaurant",
                    order.ticket, order.status
                ),
            ));
        }
        if seen.contains(order.ticket) {
            return Err(corrupt(path, format!("holds order {} twice", order.ticket)));
        }
        seen.insert(order.ticket);
    }
    if let Some(t) = snapshot.pickup_codes.keys().find(|t| !seen.contains(**t)) {
        return Err(corrupt(
            path,
            format!("holds a pickup code for order {t}, which it does not hold"),
        ));
    }
    Ok(snapshot)
}
