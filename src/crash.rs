//! Crash points, for the tests that prove nothing is lost: with
//! `FASTFOOD_CRASH_AT=<point>` in its environment, the process aborts at once
//! when it reaches that point, as abruptly as `kill -9` (no cleanup, no
//! flush). Unset, a crash point costs one load of a cached flag.

use std::sync::OnceLock;

/// The points a test may name.
pub mod point {
    /// An order was stored TAKEN but not queued yet.
    pub const AFTER_STORE: &str = "after-store";
    /// A worker marked an order READY but has not acknowledged it yet.
    pub const AFTER_READY: &str = "after-ready";
}

/// Aborts the process if `FASTFOOD_CRASH_AT` names `point`.
pub fn here(point: &str) {
    static CHOSEN: OnceLock<Option<String>> = OnceLock::new();
    let chosen = CHOSEN.get_or_init(|| std::env::var("FASTFOOD_CRASH_AT").ok());
    if chosen.as_deref() == Some(point) {
        eprintln!("FASTFOOD_CRASH_AT={point}: aborting here");
        std::process::abort();
    }
}
