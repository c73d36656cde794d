//! `history.jsonl`: every order that left the restaurant (collected or
//! cancelled), in the log's form. Append-only: compaction appends to it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;

use super::StoreError;
use super::disk::{HISTORY, corrupt, cut_torn_tail, io_error};
use super::state::State;
use crate::order::{CancelledBy, Status, Ticket};

/// How far back from the end of `history.jsonl` to look for its last line:
/// far more than the longest line (a 1000-character order, all escaped).
const HISTORY_TAIL: u64 = 64 * 1024;

/// The little of a history line that loading needs.
#[derive(Deserialize)]
struct HistoryLine {
    version: u64,
    order: HistoryOrder,
}

#[derive(Deserialize)]
struct HistoryOrder {
    #[serde(rename = "order")]
    ticket: Ticket,
    status: Status,
    #[serde(default)]
    cancelled_by: Option<CancelledBy>,
}

/// Reads `history.jsonl` into the collected set, up to change `settled` (the
/// snapshot's); returns its last version.
pub(super) fn read_history(dir: &Path, state: &mut State, settled: u64) -> Result<u64, StoreError> {
    let path = dir.join(HISTORY);
    let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_error(&path)(e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io_error(&path))?;
    let complete = cut_torn_tail(&path, &file, 0, &bytes)?;
    let mut last = 0;
    for (i, line) in bytes[..complete].split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let entry: HistoryLine = serde_json::from_slice(line)
            .map_err(|e| corrupt(&path, format!("line {}: not a valid entry: {e}", i + 1)))?;
        if entry.version <= settled {
            match entry.order.status {
                Status::Collected => state.collected.insert(entry.order.ticket),
                Status::Cancelled => {
                    state.note_cancelled(entry.order.ticket, entry.order.cancelled_by)
                }
                _ => {}
            }
        }
        state.highest = state.highest.max(entry.order.ticket);
        last = last.max(entry.version);
    }
    Ok(last)
}

/// The version of the last complete line of the history (0 when empty),
/// cutting off a line a crash left half written.
pub(super) fn history_tail(path: &Path, file: &mut File) -> Result<u64, StoreError> {
    let len = file.metadata().map_err(io_error(path))?.len();
    let start = len.saturating_sub(HISTORY_TAIL);
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(start)).map_err(io_error(path))?;
    file.read_to_end(&mut bytes).map_err(io_error(path))?;
    let complete = cut_torn_tail(path, file, start, &bytes)?;
    let last_line = bytes[..complete]
        .split(|b| *b == b'\n')
        .rfind(|l| !l.iter().all(u8::is_ascii_whitespace));
    match last_line {
        None => Ok(0),
        Some(line) => serde_json::from_slice::<HistoryLine>(line)
            .map(|entry| entry.version)
            .map_err(|e| corrupt(path, format!("the last line is not a valid entry: {e}"))),
    }
}
