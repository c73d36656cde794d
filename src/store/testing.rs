//! Test hooks, and nothing the restaurant itself uses: how soon the log is
//! compacted (so tests see compactions without writing 20,000 changes), and
//! [`check`], which loads a store's files without starting it. Kept in this
//! one module, hidden from the docs, rather than behind a cargo feature: the
//! crash tests set [`COMPACT_AFTER_ENV`] on child processes running the
//! ordinary binary, which a feature enabled only for tests would not reach.

use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::StoreError;
use crate::order::Ticket;

/// Fewest changes in the log before it is worth compacting.
const COMPACT_MIN_RECORDS: usize = 20_000;
/// [`COMPACT_MIN_RECORDS`] unless a test lowered it with [`compact_sooner`].
static COMPACT_MIN: AtomicUsize = AtomicUsize::new(COMPACT_MIN_RECORDS);

/// Read once: `FASTFOOD_COMPACT_AFTER=N` in a process's environment does
/// what [`compact_sooner`]`(N)` does in a test's own, so the crash tests see
/// a child process compact after a few orders. Not a flag: nobody should
/// need it in a restaurant.
pub const COMPACT_AFTER_ENV: &str = "FASTFOOD_COMPACT_AFTER";

/// Compact once the log holds `records` changes (and twice the live orders)
/// instead of 20,000, for every store this process opens from now on. The
/// program never calls it.
pub fn compact_sooner(records: usize) {
    compact_after_env();
    COMPACT_MIN.store(records.max(1), Ordering::Relaxed);
}

/// The fewest changes the log must hold before a compaction.
pub(super) fn compact_min() -> usize {
    compact_after_env();
    COMPACT_MIN.load(Ordering::Relaxed)
}

/// Applies [`COMPACT_AFTER_ENV`] the first time it is called.
fn compact_after_env() {
    static READ: Once = Once::new();
    READ.call_once(|| {
        let Ok(value) = std::env::var(COMPACT_AFTER_ENV) else {
            return;
        };
        match value.trim().parse::<usize>() {
            Ok(records) => {
                tracing::warn!(
                    "{COMPACT_AFTER_ENV}={records}: compacting the order log after {records} changes (a test knob)"
                );
                COMPACT_MIN.store(records.max(1), Ordering::Relaxed);
            }
            Err(_) => tracing::warn!(
                "{COMPACT_AFTER_ENV}={value:?} is not a number of changes; ignored"
            ),
        }
    });
}

/// What [`check`] found in a store's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The number of the last change.
    pub version: u64,
    /// Orders still in the restaurant.
    pub live: usize,
    /// The highest ticket number any file mentions.
    pub highest: Ticket,
}

/// Loads the store's files in `dir` under the lock, exactly as opening the
/// store does (so it creates a new store where there is none, and cuts off a
/// last line a crash left half written), without starting anything: what
/// they hold, or the error that would stop the program. For the fuzz targets
/// and tests of the loading path.
pub fn check(dir: &Path) -> Result<Checked, StoreError> {
    let (_, _, state, _) = super::disk::open(dir, super::Opening::Create)?;
    Ok(Checked {
        version: state.version,
        live: state.live.len(),
        highest: state.highest,
    })
}
