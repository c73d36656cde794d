//! The ticket counter: `counter` in the data directory, exactly four bytes,
//! the last number handed out as a big-endian `u32` (`0` when new). This
//! module is the only code that opens it.
//!
//! Every increment happens under an exclusive lock, so any number of
//! processes sharing the directory never hand out one number twice, and the
//! numbers are consecutive. Requests that arrive together share one
//! lock/read/write cycle (group commit): `k` waiting customers get `k`
//! consecutive numbers at once. Nothing is reserved ahead for customers who
//! have not arrived.
//!
//! A number is handed out as soon as it is written, and its fsync runs on a
//! thread of its own, in parallel with the store's (one fsync serves every
//! number written before it began): the caller stores its order meanwhile
//! and waits for [`Numbered::durable`] before it answers. So a `201` costs
//! one fsync of latency, not two in a row. Another process reads the written
//! number at once (the page cache is shared), and any later fsync of the
//! file makes it durable too. Only a crash of the machine can lose a written
//! number that was not yet fsynced; then the store may hold an order above
//! the counter, and [`CounterFile::open_after`] raises the counter to the
//! store's highest ticket at start-up, so no number the store holds is ever
//! handed out again. (A number lost that way was never answered with a
//! `201`, which waits for both fsyncs.)
//!
//! It also owns the one encoding of a ticket as four big-endian bytes
//! ([`to_bytes`], [`from_bytes`]): the counter's, and the broker's messages.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use byteorder::{BigEndian, ByteOrder};
use tokio::sync::{mpsc, oneshot, watch};

use crate::durable;
use crate::order::Ticket;

/// The file name inside the data directory.
pub const FILE_NAME: &str = "counter";

/// Most requests served by one fsync.
const MAX_BATCH: usize = 4096;
/// The longest [`Numbered::durable`] waits for the counter's fsync, like
/// every other wait of `/order` (the lock's, the broker's confirm): a disk
/// that takes longer refuses the order rather than hold its customer.
pub const DURABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A ticket number as four big-endian bytes: how the counter stores it and
/// how a broker message carries it.
pub fn to_bytes(ticket: Ticket) -> [u8; 4] {
    let mut bytes = [0; 4];
    BigEndian::write_u32(&mut bytes, ticket);
    bytes
}

/// The ticket number in `bytes`, if they are exactly four.
pub fn from_bytes(bytes: &[u8]) -> Option<Ticket> {
    (bytes.len() == 4).then(|| BigEndian::read_u32(bytes))
}

// The I/O errors are shown in the message and not returned as `source()`:
// a report that prints the chain would print them twice.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TicketError {
    #[error("{path}: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error(
        "{path} is a directory, but the ticket counter is a 4-byte file: move the directory out of the way \
         and start again (a new counter is made when the order store is empty; otherwise you are told what to write into it)"
    )]
    NotAFile { path: PathBuf },
    #[error(
        "{path} is missing, but the order store holds orders up to {highest}; restore it from a backup, \
         or write that number into it: printf '%08x' {highest} | xxd -r -p > {path}"
    )]
    Missing { path: PathBuf, highest: Ticket },
    #[error("ticket numbers are used up: {path} is at {max}, the largest number a ticket can hold", max = u32::MAX)]
    Exhausted { path: PathBuf },
    #[error("the ticket counter is locked by another process: {0}")]
    Busy(Arc<io::Error>),
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: Arc<io::Error>,
    },
    #[error("the ticket counter has stopped")]
    Stopped,
    #[error("the ticket counter's fsync took longer than {} s", .0.as_secs())]
    Slow(std::time::Duration),
    /// The database that draws the numbers (`--database`) failed.
    #[error("{0}")]
    Database(String),
}

/// Whether [`CounterFile::open`] may create a missing counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// A missing counter is created at `0` (no orders exist yet).
    IfMissing,
    /// A missing counter is an error (orders may exist already).
    MustExist,
}

/// A handle to the counter; cheap to clone.
#[derive(Clone)]
pub struct Tickets {
    requests: mpsc::Sender<Reply>,
}

/// Where a number (or why there is none) is sent.
pub type Reply = oneshot::Sender<Result<Numbered, TicketError>>;

/// The counter file, opened and checked.
pub struct CounterFile {
    path: PathBuf,
    file: File,
}

impl CounterFile {
    /// Opens the counter in `dir`. A missing counter is created at `0` only when
    /// `create` says so (the caller knows whether orders exist already); a
    /// counter of any length but four bytes is refused, never rewritten.
    pub fn open(dir: &Path, create: Create) -> Result<CounterFile, TicketError> {
        let path = dir.join(FILE_NAME);
        if path.is_dir() {
            return Err(TicketError::NotAFile { path });
        }
        let io = |error: io::Error| TicketError::Io {
            path: dir.join(FILE_NAME),
            error: error.into(),
        };
        if create == Create::IfMissing && !path.exists() {
            create_atomically(dir, &path).map_err(io)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let counter = CounterFile { path, file };
        counter.read()?;
        Ok(counter)
    }

    /// Opens the counter beside an order store whose highest ticket is
    /// `highest`, so that it never hands out a number the store holds: a
    /// missing one is refused (orders exist, and nothing says how far they
    /// went), and one behind the store is raised to `highest` (fsynced)
    /// before any number is handed out. A counter is behind after a crash of
    /// the machine lost its last write while the store's was fsynced (the
    /// two fsyncs run in parallel), or when an old copy was restored.
    /// Blocks on the counter's lock.
    pub fn open_after(dir: &Path, highest: Ticket) -> Result<CounterFile, TicketError> {
        let path = dir.join(FILE_NAME);
        if highest > 0 && !path.exists() {
            return Err(TicketError::Missing { path, highest });
        }
        let counter = CounterFile::open(dir, Create::IfMissing)?;
        if let Some(last) = counter.raise_to(highest)? {
            tracing::warn!(
                "{} said the last ticket was {last}, but the order store holds order {highest}: \
                 raised it to {highest}, so the next order is {}",
                counter.path.display(),
                u64::from(highest) + 1
            );
        }
        Ok(counter)
    }

    /// Raises the counter to `highest` if it is behind (written and fsynced
    /// under the lock); returns what it said before, if it was raised.
    fn raise_to(&self, highest: Ticket) -> Result<Option<Ticket>, TicketError> {
        let _lock = durable::exclusive(&self.file, durable::LOCK_WAIT)
            .map_err(|e| TicketError::Busy(e.into()))?;
        let last = self.read()?;
        if last >= highest {
            return Ok(None);
        }
        self.file
            .write_all_at(&to_bytes(highest), 0)
            .and_then(|()| self.file.sync_data())
            .map_err(|error| TicketError::Io {
                path: self.path.clone(),
                error: error.into(),
            })?;
        Ok(Some(last))
    }

    /// The last number handed out, read under the lock.
    pub fn last(&self) -> Result<Ticket, TicketError> {
        let _lock = durable::exclusive(&self.file, durable::LOCK_WAIT)
            .map_err(|e| TicketError::Busy(e.into()))?;
        self.read()
    }

    fn read(&self) -> Result<Ticket, TicketError> {
        let io = |error: io::Error| TicketError::Io {
            path: self.path.clone(),
            error: error.into(),
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
        Ok(from_bytes(&bytes).expect("four bytes"))
    }

    /// Hands out `count` consecutive numbers in one locked, fsynced step and
    /// returns the first. Fails whole if they would pass `u32::MAX`.
    ///
    /// # Panics
    ///
    /// If `count` is 0: there would be no first number to return (it used to
    /// return the next number without handing it out, so the following
    /// `reserve` handed it out again, and at `u32::MAX` it overflowed).
    pub fn reserve(&self, count: u32) -> Result<Ticket, TicketError> {
        let first = self.reserve_unsynced(count)?;
        self.sync()?;
        Ok(first)
    }

    /// [`CounterFile::reserve`] without the fsync: the numbers are written
    /// (other processes see them at once) but not yet durable; see
    /// [`CounterFile::sync`].
    ///
    /// # Panics
    ///
    /// If `count` is 0.
    pub fn reserve_unsynced(&self, count: u32) -> Result<Ticket, TicketError> {
        assert!(count > 0, "reserve at least one ticket number");
        let _lock = durable::exclusive(&self.file, durable::LOCK_WAIT)
            .map_err(|e| TicketError::Busy(e.into()))?;
        let last = self.read()?;
        let Some(new_last) = last.checked_add(count) else {
            return Err(TicketError::Exhausted {
                path: self.path.clone(),
            });
        };
        let io = |error: io::Error| TicketError::Io {
            path: self.path.clone(),
            error: error.into(),
        };
        self.file.write_all_at(&to_bytes(new_last), 0).map_err(io)?;
        Ok(last + 1)
    }

    /// Makes every number written so far durable (by this process or any
    /// other: an fsync covers the file, not the descriptor).
    pub fn sync(&self) -> Result<(), TicketError> {
        self.file.sync_data().map_err(|error| TicketError::Io {
            path: self.path.clone(),
            error: error.into(),
        })
    }
}

/// Creates a counter at `0` so that no other process can ever see it half
/// written: write a private temp file, fsync, then hard-link it into place
/// (which fails, harmlessly, if another process got there first).
fn create_atomically(dir: &Path, path: &Path) -> io::Result<()> {
    let temp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let mut file = crate::durable::create_private(&temp)?;
    file.write_all(&to_bytes(0))?;
    file.sync_all()?;
    let linked = fs::hard_link(&temp, path);
    fs::remove_file(&temp)?;
    match linked {
        Ok(()) => durable::sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A number handed out, and when it is durable.
pub struct Numbered {
    pub ticket: Ticket,
    /// `None`: durable when handed out (drawn by the database).
    synced: Option<watch::Receiver<Option<Result<(), TicketError>>>>,
}

impl Numbered {
    /// A number that was durable when it was handed out.
    pub fn durable_already(ticket: Ticket) -> Numbered {
        Numbered {
            ticket,
            synced: None,
        }
    }

    /// Waits until the counter's fsync that covers this number is done, at
    /// most [`DURABLE_WAIT`].
    pub async fn durable(self) -> Result<(), TicketError> {
        let Some(mut synced) = self.synced else {
            return Ok(());
        };
        match tokio::time::timeout(DURABLE_WAIT, synced.wait_for(Option::is_some)).await {
            Ok(Ok(synced)) => synced.clone().expect("waited for it"),
            Ok(Err(_)) => Err(TicketError::Stopped),
            Err(_) => Err(TicketError::Slow(DURABLE_WAIT)),
        }
    }
}

/// Tells the numbers of one batch that their fsync is done.
type Synced = watch::Sender<Option<Result<(), TicketError>>>;

impl Tickets {
    /// Starts the thread that owns the counter file, and the one that
    /// fsyncs it.
    pub fn start(counter: CounterFile) -> Tickets {
        let (requests, mut inbox) = mpsc::channel::<Reply>(MAX_BATCH);
        let (to_sync, syncs) = std::sync::mpsc::channel::<Synced>();
        let counter = Arc::new(counter);
        let syncing = counter.clone();
        std::thread::Builder::new()
            .name("ticket-sync".into())
            .spawn(move || {
                // Every batch written before this fsync began shares it.
                while let Ok(first) = syncs.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(syncs.try_iter());
                    let synced = syncing.sync();
                    if let Err(e) = &synced {
                        tracing::error!("ticket counter: {e}");
                    }
                    for batch in waiting {
                        batch.send_replace(Some(synced.clone()));
                    }
                }
            })
            .expect("spawn the ticket-sync thread");
        std::thread::Builder::new()
            .name("ticket-counter".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                while inbox.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
                    let count = batch.len() as u32;
                    match counter.reserve_unsynced(count) {
                        Ok(first) => {
                            let (synced, durable) = watch::channel(None);
                            for (i, reply) in batch.drain(..).enumerate() {
                                let _ = reply.send(Ok(Numbered {
                                    ticket: first + i as u32,
                                    synced: Some(durable.clone()),
                                }));
                            }
                            if to_sync.send(synced).is_err() {
                                return;
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

    /// A handle whose numbers someone else draws (the database's sequence,
    /// which the store owns): it serves the returned inbox, `capacity`
    /// requests deep.
    pub fn drawn_elsewhere(capacity: usize) -> (Tickets, mpsc::Receiver<Reply>) {
        let (requests, inbox) = mpsc::channel(capacity);
        (Tickets { requests }, inbox)
    }

    /// The next ticket number, written but perhaps not yet durable: wait for
    /// [`Numbered::durable`] before telling anyone.
    pub async fn next(&self) -> Result<Numbered, TicketError> {
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
        let counter = CounterFile::open(dir.path(), Create::IfMissing).unwrap();
        assert_eq!(counter.last().unwrap(), 0);
        assert_eq!(counter.reserve(1).unwrap(), 1);
        assert_eq!(counter.reserve(3).unwrap(), 2);
        assert_eq!(fs::read(dir.path().join(FILE_NAME)).unwrap(), [0, 0, 0, 4]);
    }

    #[test]
    fn a_missing_counter_is_not_created_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            CounterFile::open(dir.path(), Create::MustExist),
            Err(TicketError::Io { .. })
        ));
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn a_counter_of_the_wrong_length_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        for bytes in [&[][..], &[0, 0, 1], &[0, 0, 0, 0, 1], &[0; 8]] {
            fs::write(dir.path().join(FILE_NAME), bytes).unwrap();
            let err = CounterFile::open(dir.path(), Create::IfMissing)
                .err()
                .expect("refused");
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
        let counter = CounterFile::open(dir.path(), Create::MustExist).unwrap();
        assert_eq!(counter.reserve(1).unwrap(), u32::MAX);
        assert!(matches!(
            counter.reserve(1),
            Err(TicketError::Exhausted { .. })
        ));
        assert_eq!(counter.last().unwrap(), u32::MAX);
    }

    #[test]
    fn a_counter_behind_the_store_is_raised_and_one_ahead_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), 2u32.to_be_bytes()).unwrap();
        let counter = CounterFile::open_after(dir.path(), 7).unwrap();
        assert_eq!(counter.last().unwrap(), 7);
        assert_eq!(counter.reserve(1).unwrap(), 8);
        let counter = CounterFile::open_after(dir.path(), 3).unwrap();
        assert_eq!(counter.last().unwrap(), 8, "never lowered");
        fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
        assert!(matches!(
            CounterFile::open_after(dir.path(), 3),
            Err(TicketError::Missing { highest: 3, .. })
        ));
    }

    #[tokio::test]
    async fn concurrent_requests_get_distinct_consecutive_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let tickets = Tickets::start(CounterFile::open(dir.path(), Create::IfMissing).unwrap());
        let handles: Vec<_> = (0..500)
            .map(|_| {
                tokio::spawn({
                    let t = tickets.clone();
                    async move {
                        let numbered = t.next().await.unwrap();
                        let ticket = numbered.ticket;
                        numbered.durable().await.unwrap();
                        ticket
                    }
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
