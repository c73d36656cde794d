//! The store's files in the data directory. This is the only code that opens
//! them.
//!
//! - `orders.lock`: empty. Whoever reads or writes the others holds an
//!   exclusive lock on it. It is never renamed, so the lock always means the
//!   same file, whatever happens to the others.
//! - `orders.json`: a snapshot, `{"version": V, "orders": [...]}`: the orders
//!   in the restaurant after change `V`, one per line, shaped like `GET /orders`,
//!   and `"pickup_codes"`, the codes of those orders by ticket.
//! - `orders.log`: the changes since the snapshot: a header line
//!   `{"base": V}`, then one line per change, `{"version": N, "order": {...}}`;
//!   the line that takes a new order adds its `"pickup_code"`.
//!   A write appends a few lines and fsyncs, so its cost does not grow with the
//!   orders in the restaurant.
//! - `history.jsonl`: every order that left (collected or cancelled), in the
//!   log's form. Append-only.
//! - `restaurant_id`: the restaurant's identity, read and made by
//!   [`super::identity`] under the lock: with a new store, or for an older
//!   store once the program has checked every file (`Store::identify`).
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
//!
//! Each file's format is read and written by its own module: [`super::log`],
//! [`super::snapshot`], [`super::history`]; [`super::compact`] rewrites them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::history::read_history;
use super::identity;
use super::log::{LogRead, create_log, read_log};
use super::snapshot::{parse_snapshot, snapshot_bytes};
use super::state::{Change, Record, State};
use super::testing::compact_min;
use super::{Opening, StoreError};
use crate::crash;
use crate::durable;
use crate::order::Order;
use crate::restaurant::RestaurantId;

pub const SNAPSHOT: &str = "orders.json";
pub const LOG: &str = "orders.log";
pub const LOCK: &str = "orders.lock";
pub const HISTORY: &str = "history.jsonl";
/// A probe's size: a page, as much as a log append of a few large orders may
/// need. A disk that cannot take it cannot take an order either.
const PROBE_BYTES: usize = 4096;

/// Opens `orders.lock` (creating it) and loads the other files while holding
/// it, with the restaurant's identity. Returns the lock file, for every
/// later cycle to lock again. [`Opening::Create`] creates the store's files
/// (and the identity of a new store) where they are missing; [`Opening::Join`] refuses a
/// directory that holds no restaurant, creating nothing there but the lock.
pub fn open(
    dir: &Path,
    opening: Opening,
) -> Result<(File, Disk, State, Option<RestaurantId>), StoreError> {
    // An identity, once written, never changes: a worker may look before
    // it locks anything.
    if opening == Opening::Join && identity::read(dir)?.is_none() {
        return Err(not_a_restaurant(dir));
    }
    let lock_path = dir.join(LOCK);
    let lock = durable::private()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(io_error(&lock_path))?;
    let (disk, state, id) = {
        let _held = durable::exclusive(&lock, durable::LOCK_WAIT)
            .map_err(|e| StoreError::Busy(e.into()))?;
        let has_store = dir.join(SNAPSHOT).exists() || dir.join(LOG).exists();
        let found = identity::read(dir)?;
        if opening == Opening::Join && (found.is_none() || !has_store) {
            return Err(not_a_restaurant(dir));
        }
        // Loaded first: a store that is refused is left exactly as it was.
        let (disk, state) = Disk::load(dir)?;
        let id = match found {
            Some(id) => Some(id),
            // A new store is born with its identity.
            None if !has_store => Some(identity::create(dir)?),
            // An older store gets one once the program has checked
            // everything else (`Store::identify`).
            None => None,
        };
        (disk, state, id)
    };
    Ok((lock, disk, state, id))
}

/// Why `dir` (which exists) is no restaurant a worker can join.
fn not_a_restaurant(dir: &Path) -> StoreError {
    let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let has_store = dir.join(SNAPSHOT).exists() || dir.join(LOG).exists();
    let what = if has_store {
        format!(
            "the data directory {} holds an order store without a restaurant identity ({})",
            shown.display(),
            identity::IDENTITY
        )
    } else {
        format!(
            "the data directory {} holds no restaurant (no order store)",
            shown.display()
        )
    };
    StoreError::NotARestaurant { what }
}

/// What a catch-up found in the log that this process did not write.
pub enum News {
    Records(Vec<Change>),
    /// Changes were compacted away before we read them: load everything again.
    Reload,
}

/// The store's open files and how far this process has read them.
pub struct Disk {
    pub(super) dir: PathBuf,
    /// `orders.log`, open for reading and appending.
    pub(super) log: File,
    /// How much of `log` has been read and applied.
    pub(super) log_offset: u64,
    /// Changes in `log`, to decide when to compact.
    pub(super) log_records: usize,
    /// Orders that left since the last compaction; history gets them then.
    pub(super) leaving: Vec<Record>,
    /// Compact no sooner than this many records (raised after a failure).
    pub(super) compact_at: usize,
    /// Where the log must be cut back to before anything else is written or
    /// read by anyone: a cut-back that failed left lines (or a probe) there
    /// that nobody was told are durable. While it is set the committer keeps
    /// `orders.lock`, so no other process reads those lines, and writes
    /// nothing until the cut succeeds.
    pub(super) uncut: Option<u64>,
    /// The same for `history.jsonl`: lines a failed fsync left, that a
    /// compaction must not count as written.
    pub(super) history_uncut: Option<u64>,
}

pub(super) fn io_error(path: &Path) -> impl Fn(io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_owned(),
        error: error.into(),
    }
}

pub(super) fn corrupt(path: &Path, what: impl Into<String>) -> StoreError {
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
                state.codes = snapshot.pickup_codes;
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
                leaving.push(record.record());
            }
        }
        let disk = Disk {
            dir: dir.to_owned(),
            log,
            log_offset: end,
            log_records,
            leaving,
            compact_at: compact_min(),
            uncut: None,
            history_uncut: None,
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

    fn note_leaving(&mut self, records: &[Change]) {
        self.leaving.extend(
            records
                .iter()
                .filter(|r| !r.order.status.is_live())
                .map(Change::record),
        );
    }

    /// Appends changes to the log, without an fsync (the committer's syncer
    /// makes them durable, see [`Disk::sync_handle`]); returns the offset
    /// where they start. On failure the log is cut back to where it was, so
    /// nothing unacknowledged is left behind.
    pub fn write(&mut self, records: &[Change]) -> Result<u64, StoreError> {
        self.finish_cut()?;
        let log_path = self.dir.join(LOG);
        let mut lines = Vec::with_capacity(records.len() * 192);
        for record in records {
            serde_json::to_writer(&mut lines, record).expect("a record serialises");
            lines.push(b'\n');
        }
        if let Err(e) = self.log.write_all(&lines) {
            self.cut_back(self.log_offset, 0)?;
            return Err(io_error(&log_path)(e));
        }
        let start = self.log_offset;
        self.log_offset += lines.len() as u64;
        self.log_records += records.len();
        Ok(start)
    }

    /// A second handle on the log, for the thread that fsyncs it (an fsync
    /// covers the file, whichever handle asks).
    pub fn sync_handle(&self) -> Result<File, StoreError> {
        self.log.try_clone().map_err(io_error(&self.dir.join(LOG)))
    }

    /// Cuts the log back to `start`: what was written from there on (`records`
    /// changes) never became durable, and nobody was told it did. A log that
    /// is no longer than `start` needs no cut (a write refused whole, as by
    /// an immutable file). When the cut fails, the log is left
    /// [`Disk::is_uncut`]: nothing more is written until a later try
    /// succeeds; the error is the disk's, worth retrying (a 503), not a
    /// damaged store.
    pub fn cut_back(&mut self, start: u64, records: usize) -> Result<(), StoreError> {
        self.log_offset = start;
        self.log_records = self.log_records.saturating_sub(records);
        self.uncut = Some(start);
        self.finish_cut()
    }

    /// Whether a failed cut-back left lines in the log that must go before
    /// anything else happens to it.
    pub fn is_uncut(&self) -> bool {
        self.uncut.is_some() || self.history_uncut.is_some()
    }

    /// Tries again the cut-back that failed, if one did.
    fn finish_cut(&mut self) -> Result<(), StoreError> {
        if let Some(before) = self.history_uncut {
            let path = self.dir.join(HISTORY);
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|history| history.set_len(before))
                .map_err(io_error(&path))?;
            self.history_uncut = None;
            tracing::info!("order store: {}: cut back at last", path.display());
        }
        let Some(start) = self.uncut else {
            return Ok(());
        };
        let log_path = self.dir.join(LOG);
        let longer = self.log.metadata().map_or(true, |m| m.len() > start);
        if longer && let Err(cut) = self.log.set_len(start) {
            tracing::error!(
                "order store: {}: cannot cut back what a failed write left ({cut}); \
                 writing nothing, and keeping other processes out, until it can",
                log_path.display()
            );
            return Err(io_error(&log_path)(cut));
        }
        if self.uncut.take().is_some() && longer {
            tracing::info!("order store: {}: cut back at last", log_path.display());
        }
        Ok(())
    }

    /// `records`, written by [`Disk::write`], are durable now.
    pub fn durable(&mut self, records: &[Change]) {
        self.note_leaving(records);
    }
}

impl Disk {
    /// Whether `orders.log` itself takes a write now: a page appended
    /// without a line end, fsynced, and cut off again (a crash in between
    /// leaves a torn last line, which loading drops). First the cut-back a
    /// failed write left, if any. The caller holds the lock.
    pub fn probe(&mut self) -> Result<(), StoreError> {
        self.finish_cut()?;
        let log_path = self.dir.join(LOG);
        let io = io_error(&log_path);
        let end = self.log.metadata().map_err(&io)?.len();
        let written = self
            .log
            .write_all(&[b' '; PROBE_BYTES])
            .and_then(|()| self.log.sync_data())
            .map_err(&io);
        self.uncut = Some(end);
        let cut = self.finish_cut();
        written.and(cut)
    }
}

/// Where the last complete line of `bytes` (read at `offset`) ends. Anything
/// after it is a write cut short by a crash: removed, with a warning.
pub(super) fn cut_torn_tail(
    path: &Path,
    file: &File,
    offset: u64,
    bytes: &[u8],
) -> Result<usize, StoreError> {
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

/// The crash points of one [`write_atomically`]: after the temp file is
/// written, after it is fsynced, after it is renamed (see [`crate::crash`]).
pub(super) type CrashPoints = [&'static str; 3];

/// The files written when a store is created or repaired at start-up (an
/// empty point is never reached).
pub(super) const NO_CRASH_POINTS: CrashPoints = [""; 3];

/// Replaces `dir/name` with `bytes` so that a crash leaves the old file or
/// the new one, never a mix: temp file, fsync, rename, directory fsync.
pub(super) fn write_atomically(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    [written, synced, renamed]: &CrashPoints,
) -> Result<(), StoreError> {
    let path = dir.join(name);
    let temp = dir.join(format!(".{name}.tmp"));
    let io = io_error(&path);
    let mut file = durable::create_private(&temp).map_err(&io)?;
    file.write_all(bytes).map_err(&io)?;
    crash::here(written);
    file.sync_all().map_err(&io)?;
    crash::here(synced);
    fs::rename(&temp, &path).map_err(&io)?;
    crash::here(renamed);
    durable::sync_dir(dir).map_err(&io)
}

/// A restaurant read from its files for `fastfood import`, with the store's
/// lock held until it is dropped, so nothing changes while it is copied.
pub struct Exported {
    _lock: File,
    /// Orders still in the restaurant, each with its pickup code (if any).
    pub live: Vec<(Order, Option<crate::pickup::PickupCode>)>,
    /// Orders that left (collected or cancelled), as they left.
    pub left: Vec<Order>,
    /// The highest ticket number the files mention.
    pub highest: crate::order::Ticket,
    /// The restaurant's identity, if the files have one (a store from
    /// before identities has none): the database takes it over, so the
    /// orders already in RabbitMQ stay this restaurant's.
    pub restaurant: Option<RestaurantId>,
}

/// Reads every order in `dir`: the live ones from the snapshot and log, the
/// ones that left from the history and from the log not yet compacted.
/// Refused while another process has the store open (on Linux, any process
/// holding `orders.lock` open), and the lock is held until the result is
/// dropped.
pub fn export(dir: &Path) -> Result<Exported, StoreError> {
    let lock_path = dir.join(LOCK);
    if !lock_path.exists() {
        return Err(corrupt(
            dir,
            format!(
                "holds no order store ({LOCK} is missing): give the data directory the restaurant ran with"
            ),
        ));
    }
    if let Some(pid) = holders_of(&lock_path).into_iter().next() {
        return Err(StoreError::Busy(std::sync::Arc::new(io::Error::other(
            format!(
                "process {pid} is using the data directory {}: stop every server and worker of this restaurant first",
                dir.display()
            ),
        ))));
    }
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(io_error(&lock_path))?;
    let held =
        durable::exclusive(&lock, durable::LOCK_WAIT).map_err(|e| StoreError::Busy(e.into()))?;
    std::mem::forget(held);
    let (disk, state) = Disk::load(dir)?;
    let restaurant = super::identity::read(dir)?;
    let mut left: std::collections::BTreeMap<crate::order::Ticket, Order> = Default::default();
    let history = dir.join(HISTORY);
    match fs::read(&history) {
        Ok(bytes) => {
            for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let record: Change = serde_json::from_slice(line).map_err(|e| {
                    corrupt(&history, format!("line {}: not a valid entry: {e}", i + 1))
                })?;
                left.insert(record.order.ticket, record.order);
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&history)(e)),
    }
    for record in disk.leaving {
        left.insert(record.order.ticket, record.order);
    }
    let live = state
        .live
        .values()
        .map(|o| (o.clone(), state.codes.get(&o.ticket).copied()))
        .collect();
    Ok(Exported {
        _lock: lock,
        live,
        left: left.into_values().collect(),
        highest: state.highest,
        restaurant,
    })
}

/// The other processes that hold `path` open (Linux: `/proc/PID/fd`).
fn holders_of(path: &Path) -> Vec<u32> {
    let Ok(target) = fs::canonicalize(path) else {
        return Vec::new();
    };
    let me = std::process::id();
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten()
                    .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l == target))
            })
        })
        .collect()
}
