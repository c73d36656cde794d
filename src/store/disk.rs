//! The store's files in the data directory. This is the only code that opens
//! them.
//!
//! - `orders.lock`: empty. Whoever reads or writes the others holds an
//!   exclusive lock on it. It is never renamed, so the lock always means the
//!   same file, whatever happens to the others.
//! - `orders.json`: a snapshot, `{"version": V, "orders": [...]}`: the orders
//!   in the restaurant after change `V`, one per line, shaped like `GET /orders`.
//! - `orders.log`: the changes since the snapshot: a header line
//!   `{"base": V}`, then one line per change, `{"version": N, "order": {...}}`.
//!   A write appends a few lines and fsyncs, so its cost does not grow with the
//!   orders in the restaurant.
//! - `history.jsonl`: every order that left (collected or cancelled), in the
//!   log's form. Append-only.
//!
//! Once the log holds more changes than twice the live orders (and a
//! minimum), it is compacted: history appended and fsynced, then a new
//! snapshot and then a fresh log, each written to a temp file, fsynced,
//! renamed into place, and the directory fsynced. A crash at any point leaves
//! files that load to the old or the new state: log lines at or below the
//! snapshot's version are skipped, history lines are never written twice, and
//! a last line cut short by a crash (never acknowledged, since replies wait
//! for the fsync) is dropped with a warning. Anything else that does not parse
//! or breaks the rules stops the program with the file name and the reason;
//! nothing is ever reset.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::state::{Record, State, TicketSet};
use super::testing::compact_min;
use crate::crash;
use crate::durable;
use crate::order::{Order, Status, Ticket};

pub const SNAPSHOT: &str = "orders.json";
pub const LOG: &str = "orders.log";
pub const LOCK: &str = "orders.lock";
pub const HISTORY: &str = "history.jsonl";

/// Opens `orders.lock` (creating it) and loads the other files while holding
/// it. Returns the lock file, for every later cycle to lock again.
pub fn open(dir: &Path) -> Result<(File, Disk, State), StoreError> {
    let lock_path = dir.join(LOCK);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(io_error(&lock_path))?;
    let (disk, state) = {
        let _held = durable::exclusive(&lock, durable::LOCK_WAIT)
            .map_err(|e| StoreError::Busy(e.into()))?;
        Disk::load(dir)?
    };
    Ok((lock, disk, state))
}
/// How far back from the end of `history.jsonl` to look for its last line:
/// far more than the longest line (a 1000-character order, all escaped).
const HISTORY_TAIL: u64 = 64 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    base: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Snapshot {
    version: u64,
    orders: Vec<Order>,
}

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
}

/// What a catch-up found in the log that this process did not write.
pub enum News {
    Records(Vec<Record>),
    /// Changes were compacted away before we read them: load everything again.
    Reload,
}

pub struct Disk {
    dir: PathBuf,
    /// `orders.log`, open for reading and appending.
    log: File,
    /// How much of `log` has been read and applied.
    log_offset: u64,
    /// Changes in `log`, to decide when to compact.
    log_records: usize,
    /// Orders that left since the last compaction; history gets them then.
    leaving: Vec<Record>,
    /// Compact no sooner than this many records (raised after a failure).
    compact_at: usize,
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_owned(),
        error: error.into(),
    }
}

fn corrupt(path: &Path, what: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_owned(),
        what: what.into(),
    }
}

impl Disk {
    /// Loads the files, creating them when the directory is new. The caller
    /// holds the exclusive lock on `orders.lock`.
    pub fn load(dir: &Path) -> Result<(Disk, State), StoreError> {
        let snapshot_path = dir.join(SNAPSHOT);
        let log_path = dir.join(LOG);

        let snapshot = match fs::read(&snapshot_path) {
            Ok(bytes) => Some(parse_snapshot(&snapshot_path, &bytes)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(&snapshot_path)(e)),
        };
        let mut state = State::default();
        // History lines past the snapshot are from a compaction cut short
        // before the snapshot was replaced: the log still holds those changes
        // and replays them, so they must not count as collected already.
        let settled = snapshot.as_ref().map_or(0, |s| s.version);
        let history_version = read_history(dir, &mut state, settled)?;
        let log = match OpenOptions::new().read(true).append(true).open(&log_path) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(&log_path)(e)),
        };

        let mut log = match (snapshot, log) {
            (Some(snapshot), log) => {
                state.version = snapshot.version;
                for order in snapshot.orders {
                    state.highest = state.highest.max(order.ticket);
                    state.live.insert(order.ticket, order);
                }
                match log {
                    Some(log) => log,
                    None => create_log(dir, state.version, &NO_CRASH_POINTS)?,
                }
            }
            (None, None) if history_version > 0 => {
                // Starting afresh would reuse change numbers and forget orders.
                let what = format!(
                    "is missing, and so is {LOG}, but {HISTORY} goes up to change {history_version}: restore them from a backup"
                );
                return Err(corrupt(&snapshot_path, what));
            }
            (None, None) => {
                write_atomically(dir, SNAPSHOT, &snapshot_bytes(&state), &NO_CRASH_POINTS)?;
                create_log(dir, 0, &NO_CRASH_POINTS)?
            }
            (None, Some(log)) => log,
        };

        let LogRead { base, records, end } = read_log(&log_path, &mut log, 0)?;
        if base > state.version {
            let what = if state.version == 0 && !snapshot_path.exists() {
                format!(
                    "{SNAPSHOT} is missing, but {LOG} continues from change {base}: the orders before it are lost"
                )
            } else {
                format!(
                    "starts after change {base}, but {SNAPSHOT} ends at change {}: the changes in between are missing",
                    state.version
                )
            };
            return Err(corrupt(&log_path, what));
        }
        if !snapshot_path.exists() {
            write_atomically(dir, SNAPSHOT, &snapshot_bytes(&state), &NO_CRASH_POINTS)?;
        }
        let mut leaving = Vec::new();
        let log_records = records.len();
        let mut previous = base;
        for (line, record) in records {
            // Only a crash between the new snapshot and the new log leaves
            // lines the snapshot already holds, and those still go up one by
            // one. A line that repeats or goes back is damage: skipping it
            // would hide it (and whatever change it stands for).
            if record.version <= previous {
                let what = format!(
                    "line {line}: change {} comes after change {previous}, but the changes in the log only go up",
                    record.version
                );
                return Err(corrupt(&log_path, what));
            }
            previous = record.version;
            if record.version <= state.version {
                continue;
            }
            state
                .apply(&record)
                .map_err(|e| corrupt(&log_path, format!("line {line}: {e}")))?;
            if !record.order.status.is_live() && record.version > history_version {
                leaving.push(record);
            }
        }
        let disk = Disk {
            dir: dir.to_owned(),
            log,
            log_offset: end,
            log_records,
            leaving,
            compact_at: compact_min(),
        };
        Ok((disk, state))
    }

    /// Whether another process has written since we last looked. Cheap: two
    /// `stat`s, no lock.
    pub fn has_news(&self) -> bool {
        let ours = self.log.metadata();
        let named = fs::metadata(self.dir.join(LOG));
        match (ours, named) {
            (Ok(ours), Ok(named)) => ours.len() != self.log_offset || ours.ino() != named.ino(),
            _ => true,
        }
    }

    /// Reads what other processes appended since we last looked, following the
    /// log across a compaction. The caller holds the lock.
    pub fn catch_up(&mut self, version: u64) -> Result<News, StoreError> {
        let log_path = self.dir.join(LOG);
        let mut news = Vec::new();
        let mut latest = version;
        let LogRead { records, end, .. } = read_log(&log_path, &mut self.log, self.log_offset)?;
        self.log_offset = end;
        self.log_records += records.len();
        for (_, record) in records {
            if record.version > latest {
                latest = record.version;
                news.push(record);
            }
        }

        let ours = self.log.metadata().map_err(io_error(&log_path))?.ino();
        let named = fs::metadata(&log_path).map_err(io_error(&log_path))?.ino();
        if ours != named {
            // Another process compacted. Our descriptor still reads the old
            // log, which we have just finished; carry on in the new one.
            let mut log = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&log_path)
                .map_err(io_error(&log_path))?;
            let LogRead { base, records, end } = read_log(&log_path, &mut log, 0)?;
            if base > latest {
                return Ok(News::Reload);
            }
            self.leaving.retain(|r| r.version > base);
            self.log = log;
            self.log_offset = end;
            self.log_records = records.len();
            for (_, record) in records {
                if record.version > latest {
                    latest = record.version;
                    news.push(record);
                }
            }
        }
        self.note_leaving(&news);
        Ok(News::Records(news))
    }

    fn note_leaving(&mut self, records: &[Record]) {
        self.leaving.extend(
            records
                .iter()
                .filter(|r| !r.order.status.is_live())
                .cloned(),
        );
    }

    /// Appends changes to the log and fsyncs. On failure the log is cut back
    /// to where it was, so nothing unacknowledged is left behind.
    pub fn append(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let log_path = self.dir.join(LOG);
        let mut lines = Vec::with_capacity(records.len() * 192);
        for record in records {
            serde_json::to_writer(&mut lines, record).expect("a record serialises");
            lines.push(b'\n');
        }
        let written = self
            .log
            .write_all(&lines)
            .and_then(|()| self.log.sync_data());
        if let Err(e) = written {
            if let Err(cut) = self.log.set_len(self.log_offset) {
                return Err(corrupt(
                    &log_path,
                    format!(
                        "a write failed ({e}) and cutting it back failed too ({cut}); restart to recover"
                    ),
                ));
            }
            return Err(io_error(&log_path)(e));
        }
        self.log_offset += lines.len() as u64;
        self.log_records += records.len();
        self.note_leaving(records);
        Ok(())
    }

    /// Compacts when the log has grown enough. A failure (a full disk, say)
    /// only postpones it: the log is still whole.
    pub fn maybe_compact(&mut self, state: &State) {
        if self.log_records < self.compact_at.max(2 * state.live.len()) {
            return;
        }
        match self.compact(state) {
            Ok(()) => self.compact_at = compact_min(),
            Err(e) => {
                tracing::warn!("compaction postponed: {e}");
                self.compact_at = self.log_records + compact_min() / 4;
            }
        }
    }

    fn compact(&mut self, state: &State) -> Result<(), StoreError> {
        let history_path = self.dir.join(HISTORY);
        let io = io_error(&history_path);
        let mut history = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&history_path)
            .map_err(&io)?;
        let written = history_tail(&history_path, &mut history)?;
        let mut lines = Vec::new();
        for record in self.leaving.iter().filter(|r| r.version > written) {
            serde_json::to_writer(&mut lines, record).expect("a record serialises");
            lines.push(b'\n');
        }
        history
            .write_all(&lines)
            .and_then(|()| history.sync_data())
            .map_err(&io)?;
        crash::here(crash::point::HISTORY_WRITTEN);

        write_atomically(
            &self.dir,
            SNAPSHOT,
            &snapshot_bytes(state),
            &SNAPSHOT_CRASH_POINTS,
        )?;
        self.log = create_log(&self.dir, state.version, &LOG_CRASH_POINTS)?;
        self.log_offset = self
            .log
            .metadata()
            .map_err(io_error(&self.dir.join(LOG)))?
            .len();
        self.log_records = 0;
        self.leaving.clear();
        Ok(())
    }
}

/// The snapshot of `state`, one order per line so it reads well and diffs well.
fn snapshot_bytes(state: &State) -> Vec<u8> {
    let mut out = format!("{{\"version\":{},\"orders\":[", state.version).into_bytes();
    for (i, order) in state.live.values().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
        serde_json::to_writer(&mut out, order).expect("an order serialises");
    }
    out.extend_from_slice(b"\n]}\n");
    out
}

fn parse_snapshot(path: &Path, bytes: &[u8]) -> Result<Snapshot, StoreError> {
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
    Ok(snapshot)
}

/// What [`read_log`] found.
struct LogRead {
    /// The header's base (0 when reading past the header).
    base: u64,
    /// Each record with its line number (counted from where reading began).
    records: Vec<(usize, Record)>,
    /// Where the complete lines end.
    end: u64,
}

/// Reads log lines from `offset` on (from the header when it is 0). A last
/// line cut short by a crash is cut off the file.
fn read_log(path: &Path, log: &mut File, offset: u64) -> Result<LogRead, StoreError> {
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
        let record = serde_json::from_slice::<Record>(line)
            .map_err(|e| corrupt(path, format!("line {}: not a valid change: {e}", i + 1)))?;
        records.push((i + 1, record));
    }
    Ok(LogRead {
        base,
        records,
        end: offset + complete as u64,
    })
}

/// Where the last complete line of `bytes` (read at `offset`) ends. Anything
/// after it is a write cut short by a crash: removed, with a warning.
fn cut_torn_tail(path: &Path, file: &File, offset: u64, bytes: &[u8]) -> Result<usize, StoreError> {
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if complete < bytes.len() {
        tracing::warn!(
            "{}: dropping {} bytes at the end, a write cut short by a crash (it was never acknowledged)",
            path.display(),
            bytes.len() - complete
        );
        file.set_len(offset + complete as u64)
            .map_err(io_error(path))?;
        file.sync_data().map_err(io_error(path))?;
    }
    Ok(complete)
}

/// Reads `history.jsonl` into the collected set, up to change `settled` (the
/// snapshot's); returns its last version.
fn read_history(dir: &Path, state: &mut State, settled: u64) -> Result<u64, StoreError> {
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
        if entry.order.status == Status::Collected && entry.version <= settled {
            state.collected.insert(entry.order.ticket);
        }
        state.highest = state.highest.max(entry.order.ticket);
        last = last.max(entry.version);
    }
    Ok(last)
}

/// The version of the last complete line of the history (0 when empty),
/// cutting off a line a crash left half written.
fn history_tail(path: &Path, file: &mut File) -> Result<u64, StoreError> {
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

/// A fresh log starting after change `base`, put in place atomically.
fn create_log(dir: &Path, base: u64, points: &CrashPoints) -> Result<File, StoreError> {
    let header = serde_json::to_string(&Header { base }).expect("a header serialises") + "\n";
    write_atomically(dir, LOG, header.as_bytes(), points)?;
    let path = dir.join(LOG);
    OpenOptions::new()
        .read(true)
        .append(true)
        .open(&path)
        .map_err(io_error(&path))
}

/// The crash points of one [`write_atomically`]: after the temp file is
/// written, after it is fsynced, after it is renamed (see [`crate::crash`]).
type CrashPoints = [&'static str; 3];

/// Compaction's snapshot and log rewrites: the crash tests stop there.
const SNAPSHOT_CRASH_POINTS: CrashPoints = [
    crash::point::SNAPSHOT_WRITTEN,
    crash::point::SNAPSHOT_SYNCED,
    crash::point::SNAPSHOT_RENAMED,
];
const LOG_CRASH_POINTS: CrashPoints = [
    crash::point::LOG_WRITTEN,
    crash::point::LOG_SYNCED,
    crash::point::LOG_RENAMED,
];
/// The files written when a store is created or repaired at start-up (an
/// empty point is never reached).
const NO_CRASH_POINTS: CrashPoints = [""; 3];

/// Replaces `dir/name` with `bytes` so that a crash leaves the old file or
/// the new one, never a mix: temp file, fsync, rename, directory fsync.
fn write_atomically(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    [written, synced, renamed]: &CrashPoints,
) -> Result<(), StoreError> {
    let path = dir.join(name);
    let temp = dir.join(format!(".{name}.tmp"));
    let io = io_error(&path);
    let mut file = File::create(&temp).map_err(&io)?;
    file.write_all(bytes).map_err(&io)?;
    crash::here(written);
    file.sync_all().map_err(&io)?;
    crash::here(synced);
    fs::rename(&temp, &path).map_err(&io)?;
    crash::here(renamed);
    durable::sync_dir(dir).map_err(&io)
}
