//! Compaction: once the log holds more changes than twice the live orders
//! (and a minimum), the orders that left are appended to the history and
//! fsynced, then a new snapshot and a fresh log are each written to a temp
//! file, fsynced and renamed into place. The crash tests stop at every step.

use std::io::Write;

use super::StoreError;
use super::disk::{CrashPoints, Disk, HISTORY, LOG, SNAPSHOT, io_error, write_atomically};
use super::history::history_tail;
use super::log::create_log;
use super::snapshot::snapshot_bytes;
use super::state::State;
use super::testing::compact_min;
use crate::{crash, durable};

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

impl Disk {
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
        let mut history = durable::private()
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
        let before = history.metadata().map_err(&io)?.len();
        let appended = history.write_all(&lines).and_then(|()| history.sync_data());
        if let Err(e) = appended {
            // The lines may still sit in the page cache, never written, and
            // a later fsync may report success all the same: cut them off,
            // so that the next compaction writes them again and fsyncs them
            // rather than count them as written.
            if let Err(cut) = history.set_len(before) {
                tracing::error!(
                    "{}: cannot cut back what a failed fsync left ({cut}); \
                     writing nothing, and keeping other processes out, until it can",
                    history_path.display()
                );
                self.history_uncut = Some(before);
            }
            return Err(io(e));
        }
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
