//! The ticket counter: `counter` in the data directory, exactly four bytes,
//! the last number handed out as a big-endian `u32` (`0` when new). This
//! module is the only code that opens it.
//!
//! Every increment happens under an exclusive lock and is fsynced before any
//! number is handed out, so any number of processes sharing the directory
//! never hand out one number twice, and the numbers are consecutive. Requests
//! that arrive together share one lock/read/write/fsync cycle (group commit):
//! `k` waiting customers get `k` consecutive numbers for the price of one
//! fsync. Nothing is reserved ahead for customers who have not arrived.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use byteorder::{BigEndian, ReadBytesExt, WriteBytesExt};
use tokio::sync::{mpsc, oneshot};

use crate::durable;
use crate::order::Ticket;

/// The file name inside the data directory.
pub const FILE_NAME: &str = "counter";

/// Most requests served by one fsync.
const MAX_BATCH: usize = 4096;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TicketError {
    #[error("{path}: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("ticket numbers are used up: {path} is at {max}, the largest number a ticket can hold", max = u32::MAX)]
    Exhausted { path: PathBuf },
    #[error("the ticket counter is locked by another process: {0}")]
    Busy(Arc<io::Error>),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: Arc<io::Error>,
    },
    #[error("the ticket counter has stopped")]
    Stopped,
}

/// A handle to the counter; cheap to clone.
#[derive(Clone)]
pub struct Tickets {
    requests: mpsc::Sender<oneshot::Sender<Result<Ticket, TicketError>>>,
}

/// The counter file, opened and checked.
pub struct CounterFile {
    path: PathBuf,
    file: File,
}

impl CounterFile {
    /// Opens the counter in `dir`. A missing counter is created at `0` only when
    /// `create` says so (the caller knows whether orders exist already); a
    /// counter of any length but four bytes is refused, never rewritten.
    pub fn open(dir: &Path, create: bool) -> Result<CounterFile, TicketError> {
        let path = dir.join(FILE_NAME);
        if create && !path.exists() {
            create_atomically(dir, &path).map_err(|source| TicketError::Io {
                path: path.clone(),
                source: source.into(),
            })?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| TicketError::Io {
                path: path.clone(),
                source: source.into(),
            })?;
        let counter = CounterFile { path, file };
        counter.read()?;
        Ok(counter)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last number handed out, read under the lock.
    pub fn last(&self) -> Result<Ticket, TicketError> {
        let _lock = durable::exclusive(&self.file, durable::LOCK_WAIT)
            .map_err(|e| TicketError::Busy(e.into()))?;
        self.read()
    }

    fn read(&self) -> Result<Ticket, TicketError> {
        let io = |source: io::Error| TicketError::Io {
            path: self.path.clone(),
            source: source.into(),
        };
        let len = self.file.metadata().map_err(io)?.len();
        if len != 4 {
            return Err(TicketError::Corrupt {
                path: self.path.clone(),
                what: format!(
                    "the counter must be exactly 4 bytes (a big-endian number) but it is {len} bytes long"
                ),
            });
        }
        let mut bytes = [0u8; 4];
        self.file.read_exact_at(&mut bytes, 0).map_err(io)?;
        Ok((&bytes[..]).read_u32::<BigEndian>().expect("four bytes"))
    }

    /// Hands out `count` consecutive numbers in one locked, fsynced step and
    /// returns the first. Fails whole if they would pass `u32::MAX`.
    ///
    /// # Panics
    ///
    /// If `count` is 0: there would be no first number to return (it used to
    /// return the next number without handing it out, so the following
    /// `take` handed it out again, and at `u32::MAX` it overflowed).
    pub fn take(&self, count: u32) -> Result<Ticket, TicketError> {
        assert!(count > 0, "take at least one ticket number");
        let _lock = durable::exclusive(&self.file, durable::LOCK_WAIT)
            .map_err(|e| TicketError::Busy(e.into()))?;
        let last = self.read()?;
        let Some(new_last) = last.checked_add(count) else {
            return Err(TicketError::Exhausted {
                path: self.path.clone(),
            });
        };
        let io = |source: io::Error| TicketError::Io {
            path: self.path.clone(),
            source: source.into(),
        };
        let mut bytes = Vec::with_capacity(4);
        bytes.write_u32::<BigEndian>(new_last).expect("vec write");
        self.file.write_all_at(&bytes, 0).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        Ok(last + 1)
    }
}

/// Creates a counter at `0` so that no other process can ever see it half
/// written: write a private temp file, fsync, then hard-link it into place
/// (which fails, harmlessly, if another process got there first).
fn create_atomically(dir: &Path, path: &Path) -> io::Result<()> {
    let temp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let mut file = File::create(&temp)?;
    file.write_all(&[0, 0, 0, 0])?;
    file.sync_all()?;
    let linked = fs::hard_link(&temp, path);
    fs::remove_file(&temp)?;
    match linked {
        Ok(()) => durable::sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

impl Tickets {
    /// Starts the thread that owns the counter file.
    pub fn start(counter: CounterFile) -> Tickets {
        let (requests, mut inbox) =
            mpsc::channel::<oneshot::Sender<Result<Ticket, TicketError>>>(MAX_BATCH);
        std::thread::Builder::new()
            .name("ticket-counter".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                while inbox.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
                    let count = batch.len() as u32;
                    match counter.take(count) {
                        Ok(first) => {
                            for (i, reply) in batch.drain(..).enumerate() {
                                let _ = reply.send(Ok(first + i as u32));
                            }
                        }
                        Err(e) => {
                            tracing::error!("ticket counter: {e}");
                            for reply in batch.drain(..) {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                }
            })
            .expect("spawn the ticket-counter thread");
        Tickets { requests }
    }

    /// The next ticket number.
    pub async fn next(&self) -> Result<Ticket, TicketError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(reply)
            .await
            .map_err(|_| TicketError::Stopped)?;
        answer.await.map_err(|_| TicketError::Stopped)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_counter_starts_at_zero_and_counts_consecutively() {
        let dir = tempfile::tempdir().unwrap();
        let counter = CounterFile::open(dir.path(), true).unwrap();
        assert_eq!(counter.last().unwrap(), 0);
        assert_eq!(counter.take(1).unwrap(), 1);
        assert_eq!(counter.take(3).unwrap(), 2);
        assert_eq!(fs::read(dir.path().join(FILE_NAME)).unwrap(), [0, 0, 0, 4]);
    }

    #[test]
    fn a_missing_counter_is_not_created_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            CounterFile::open(dir.path(), false),
            Err(TicketError::Io { .. })
        ));
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn a_counter_of_the_wrong_length_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        for bytes in [&[][..], &[0, 0, 1], &[0, 0, 0, 0, 1], &[0; 8]] {
            fs::write(dir.path().join(FILE_NAME), bytes).unwrap();
            let err = CounterFile::open(dir.path(), true).err().expect("refused");
            assert!(
                err.to_string()
                    .contains(&format!("{} bytes long", bytes.len())),
                "{err}"
            );
            assert_eq!(fs::read(dir.path().join(FILE_NAME)).unwrap(), bytes);
        }
    }

    #[test]
    fn the_counter_never_wraps() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), (u32::MAX - 1).to_be_bytes()).unwrap();
        let counter = CounterFile::open(dir.path(), false).unwrap();
        assert_eq!(counter.take(1).unwrap(), u32::MAX);
        assert!(matches!(
            counter.take(1),
            Err(TicketError::Exhausted { .. })
        ));
        assert_eq!(counter.last().unwrap(), u32::MAX);
    }

    #[tokio::test]
    async fn concurrent_requests_get_distinct_consecutive_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let tickets = Tickets::start(CounterFile::open(dir.path(), true).unwrap());
        let handles: Vec<_> = (0..500)
            .map(|_| {
                tokio::spawn({
                    let t = tickets.clone();
                    async move { t.next().await.unwrap() }
                })
            })
            .collect();
        let mut got = Vec::new();
        for h in handles {
            got.push(h.await.unwrap());
        }
        got.sort();
        assert_eq!(got, (1..=500).collect::<Vec<_>>());
    }
}
