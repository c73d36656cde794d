//! Durable-file primitives for the modules that own a file: an exclusive
//! advisory lock with a bounded wait, a directory fsync, and private
//! creation: the data directory is made 0700 and every file in it 0600,
//! since `orders.log` holds every live pickup code.
//!
//! fs2's own `lock_exclusive` waits forever; a process that holds a lock and
//! hangs would hang us too. We poll `try_lock_exclusive` instead and give up
//! after a deadline, so callers can answer `503` and stay responsive.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::backoff;

/// How long a request may wait for another process's lock before it fails.
pub const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Held while the lock is held; unlocks on drop.
pub struct Guard<'a>(&'a File);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // Closing the file would unlock too; the file stays open for reuse.
        let _ = fs2::FileExt::unlock(self.0);
    }
}

/// Takes the exclusive lock on `file`, waiting at most `wait`.
/// Fails with `ErrorKind::WouldBlock` when another holder keeps it longer.
pub fn exclusive(file: &File, wait: Duration) -> io::Result<Guard<'_>> {
    let deadline = Instant::now() + wait;
    let mut backoff = backoff::LOCK_POLL;
    loop {
        match fs2::FileExt::try_lock_exclusive(file) {
            Ok(()) => return Ok(Guard(file)),
            Err(e) if e.kind() == fs2::lock_contended_error().kind() => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!("another process held the lock for more than {wait:?}"),
                    ));
                }
                thread::sleep(backoff.pause());
            }
            Err(e) => return Err(e),
        }
    }
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &std::path::Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The mode of every file the counter and the store create.
pub const FILE_MODE: u32 = 0o600;
/// The mode of a data directory they create.
pub const DIR_MODE: u32 = 0o700;

/// Options that create a file readable and writable by its owner alone
/// (an existing file keeps its mode).
pub fn private() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// `File::create`, owner only.
pub fn create_private(path: &Path) -> io::Result<File> {
    private().write(true).create(true).truncate(true).open(path)
}

/// `fs::create_dir`, owner only.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().mode(DIR_MODE).create(dir)
}
