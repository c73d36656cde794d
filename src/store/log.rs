//! `orders.log`: a header line `{"base": V}`, then one line per change
//! since the snapshot, `{"version": N, "order": {...}}` (plus
//! `"pickup_code"` on the line that takes a new order). Appending is
//! [`super::disk::Disk`]'s; this module reads it and writes a fresh one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::disk::{CrashPoints, LOG, corrupt, cut_torn_tail, io_error, write_atomically};
use super::state::Change;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    base: u64,
}

/// What [`read_log`] found.
pub(super) struct LogRead {
    /// The header's base (0 when reading past the header).
    pub(super) base: u64,
    /// Each record with its line number (counted from where reading began).
    pub(super) records: Vec<(usize, Change)>,
    /// Where the complete lines end.
    pub(super) end: u64,
}

/// Reads log lines from `offset` on (from the header when it is 0). A last
/// line cut short by a crash is cut off the file.
pub(super) fn read_log(path: &Path, log: &mut File, offset: u64) -> Result<LogRead, StoreError> {
    let io = io_error(path);
    let mut bytes = Vec::new();
    log.seek(SeekFrom::Start(offset)).map_err(&io)?;
    log.read_to_end(&mut bytes).map_err(&io)?;
    let complete = cut_torn_tail(path, log, offset, &bytes)?;
    let mut lines = bytes[..complete].split(|b| *b == b'\n').enumerate();
    let mut base = 0;
    if offset == 0 {
        let header = lines.next().map(|(_, l)| l).unwrap_or_default();
        base = serde_json::from_slice::<Header>(header)
            .map_err(|e| {
                corrupt(
                    path,
                    format!("line 1 should be a header like {{\"base\":0}}: {e}"),
                )
            })?
            .base;
    }
    let mut records = Vec::new();
    for (i, line) in lines {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = serde_json::from_slice::<Change>(line)
            .map_err(|e| corrupt(path, format!("line {}: not a valid change: {e}", i + 1)))?;
        records.push((i + 1, record));
    }
    Ok(LogRead {
        base,
        records,
        end: offset + complete as u64,
    })
}

/// A fresh log starting after change `base`, put in place atomically.
pub(super) fn create_log(dir: &Path, base: u64, points: &CrashPoints) -> Result<File, StoreError> {
    let header = serde_json::to_string(&Header { base }).expect("a header serialises") + "\n";
    write_atomically(dir, LOG, header.as_bytes(), points)?;
    let path = dir.join(LOG);
    OpenOptions::new()
        .read(true)
        .append(true)
        .open(&path)
        .map_err(io_error(&path))
}
