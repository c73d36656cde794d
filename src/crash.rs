//! Crash points, for the tests that prove nothing is lost: with
//! `FASTFOOD_CRASH_AT=<point>` in its environment, the process aborts at once
//! when it reaches that point, as abruptly as `kill -9` (no cleanup, no
//! flush). Unset, a crash point costs one load of a cached flag.

use std::sync::OnceLock;

/// The points a test may name.
pub mod point {
    /// An order was numbered (the counter is written) but not stored yet.
    pub const AFTER_TICKET: &str = "after-ticket";
    /// An order was stored TAKEN but not queued yet.
    pub const AFTER_STORE: &str = "after-store";
    /// An order was queued (confirmed by the broker, or in this process's
    /// queue) but its `queued` mark is not recorded and no reply has gone out.
    pub const AFTER_QUEUE: &str = "after-queue";
    /// `/order` has its order, stored and queued, but has not answered yet.
    pub const BEFORE_REPLY: &str = "before-reply";
    /// A worker marked an order READY but has not acknowledged it yet.
    pub const AFTER_READY: &str = "after-ready";

    /// Compaction: the collected orders are appended to `history.jsonl` and
    /// fsynced; the snapshot is not rewritten yet.
    pub const HISTORY_WRITTEN: &str = "history-written";
    /// Compaction: the new snapshot is written to its temp file, not fsynced.
    pub const SNAPSHOT_WRITTEN: &str = "snapshot-written";
    /// Compaction: the snapshot's temp file is fsynced, not renamed.
    pub const SNAPSHOT_SYNCED: &str = "snapshot-synced";
    /// Compaction: the new snapshot is renamed into place, the directory not
    /// fsynced yet (and the old log still in place).
    pub const SNAPSHOT_RENAMED: &str = "snapshot-renamed";
    /// Compaction: the fresh log is written to its temp file, not fsynced.
    pub const LOG_WRITTEN: &str = "log-written";
    /// Compaction: the fresh log's temp file is fsynced, not renamed.
    pub const LOG_SYNCED: &str = "log-synced";
    /// Compaction: the fresh log is renamed into place, the directory not
    /// fsynced yet.
    pub const LOG_RENAMED: &str = "log-renamed";
}

/// Aborts the process if `FASTFOOD_CRASH_AT` names `point`. An empty
/// `point` is never reached: code that only sometimes has a crash point
/// passes `""` the other times.
pub fn here(point: &str) {
    static CHOSEN: OnceLock<Option<String>> = OnceLock::new();
    if point.is_empty() {
        return;
    }
    let chosen = CHOSEN.get_or_init(|| std::env::var("FASTFOOD_CRASH_AT").ok());
    if chosen.as_deref() == Some(point) {
        eprintln!("FASTFOOD_CRASH_AT={point}: aborting here");
        std::process::abort();
    }
}
