//! Disk faults injected into the real binary: [`SyncFaults`] slows down and
//! fails chosen fsyncs through a small `LD_PRELOAD` shim (`sync_fault.c`,
//! compiled here with `cc`); libfiu (Debian's `fiu-utils`), which fails
//! POSIX calls on command, is driven by the tests themselves. Without `cc`
//! a test skips loudly, unless `FASTFOOD_REQUIRE_ROOT=1` (CI) makes that a
//! failure.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tempfile::TempDir;

/// EIO, as the shim's faults name it.
pub const EIO: i32 = 5;

/// Whether a missing fault tool is a failure rather than a skip.
fn required() -> bool {
    std::env::var("FASTFOOD_REQUIRE_ROOT").as_deref() == Ok("1")
}

fn skip(test: &str, why: &str) {
    assert!(!required(), "FASTFOOD_REQUIRE_ROOT=1 but {why}");
    eprintln!("SKIPPED {test}: {why}");
}

/// The shim, compiled once per test run.
fn shim() -> Result<PathBuf, String> {
    static SHIM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    SHIM.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sync_fault.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sync_fault.so");
        let built = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&out)
            .arg(&source)
            .arg("-ldl")
            .output()
            .map_err(|e| format!("cannot run cc: {e}"))?;
        if !built.status.success() {
            return Err(format!(
                "cc failed: {}",
                String::from_utf8_lossy(&built.stderr)
            ));
        }
        Ok(out)
    })
    .clone()
}

/// Slow or failing fsyncs for one child process: pass [`SyncFaults::env`]
/// to it, then [`SyncFaults::arm`] the faults its next fsyncs meet.
pub struct SyncFaults {
    shim: PathBuf,
    dir: TempDir,
    armed: usize,
}

impl SyncFaults {
    /// `None` (the test skips) when the shim cannot be built.
    pub fn new(test: &str) -> Option<SyncFaults> {
        match shim() {
            Ok(shim) => Some(SyncFaults {
                shim,
                dir: tempfile::tempdir().unwrap(),
                armed: 0,
            }),
            Err(why) => {
                skip(test, &why);
                None
            }
        }
    }

    /// The environment that loads the shim, for the child.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", self.shim.display().to_string()),
            ("SYNC_FAULT_DIR", self.dir.path().display().to_string()),
        ]
    }

    /// The next fsync of a file whose path ends with `suffix` (after the
    /// faults armed before this one are used) waits `delay_ms`, then fails
    /// with `errno` (0: it syncs for real).
    pub fn arm(&mut self, suffix: &str, delay_ms: u64, errno: i32) {
        self.armed += 1;
        assert!(self.armed <= 16, "the shim reads at most 16 faults");
        let path = self.dir.path().join(self.armed.to_string());
        let temp = self.dir.path().join(format!(".{}", self.armed));
        std::fs::write(&temp, format!("{suffix} {delay_ms} {errno}\n")).unwrap();
        std::fs::rename(temp, path).unwrap();
    }

    /// How many armed faults an fsync has met so far.
    pub fn used(&self) -> usize {
        (1..=self.armed)
            .filter(|n| self.dir.path().join(format!("{n}.taken")).exists())
            .count()
    }
}
