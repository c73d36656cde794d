//! `queue.lock`: who may keep a restaurant's orders where. A process whose
//! orders wait in its own memory (`serve` without a broker) holds an
//! exclusive lock on it for its whole life; a process whose orders wait in
//! RabbitMQ (`serve --broker`, `worker`) holds a shared one. So an
//! in-process server is alone on its data directory: at start it may put
//! back every unfinished order, since no other process can be holding one,
//! and a second server, with or without a broker, is refused at start with
//! a sentence saying what to do. The kernel lets go of the lock when the
//! process dies, however it dies. A database store answers the same
//! question with an advisory lock per restaurant, held for the session.
//!
//! The pid an in-process server writes in the file also says that orders
//! may wait in no queue at all once it is gone: its line was in its memory.
//! The first process with a broker to find it there (under the store's
//! lock) takes them over ([`claim_leftovers`]): it marks the file "handover
//! PID", publishes them to RabbitMQ, and then empties it ([`handed_over`]).
//! A handover cut short (its process is gone from `/proc`) is done again by
//! the next process with a broker; an order published twice that way is
//! recognised by the store, as any redelivery.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::StoreError;
use super::disk::io_error;

pub const QUEUE_LOCK: &str = "queue.lock";

/// Where a process's orders wait for its kitchen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queueing {
    /// In the process's own memory: it must be alone on the store.
    InProcess,
    /// In RabbitMQ, shared with any number of processes.
    Broker,
}

/// Held for the process's life: dropping it (or dying) lets go.
pub struct Lease {
    /// The lock file held for the process's life; none for a store in a
    /// database, whose connection holds the rule instead.
    _file: Option<File>,
}

impl Lease {
    /// The lease of a store in a database: its connection holds it.
    pub fn in_database() -> Lease {
        Lease { _file: None }
    }
}

/// Takes the lease of `queueing` on the store in `dir` (`place` names it in
/// a refusal), at once or never.
pub fn take(dir: &Path, place: &str, queueing: Queueing) -> Result<Lease, StoreError> {
    let path = dir.join(QUEUE_LOCK);
    let mut file = crate::durable::private()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_error(&path))?;
    match queueing {
        Queueing::InProcess => {
            if fs2::FileExt::try_lock_exclusive(&file).is_ok() {
                // For the sentence that refuses the next one.
                let io = io_error(&path);
                file.set_len(0).map_err(&io)?;
                file.rewind().map_err(&io)?;
                writeln!(file, "{}", std::process::id()).map_err(&io)?;
                return Ok(Lease { _file: Some(file) });
            }
            if fs2::FileExt::try_lock_shared(&file).is_ok() {
                let _ = fs2::FileExt::unlock(&file);
                return Err(StoreError::InUse(format!(
                    "{place} is used by processes with --broker (servers or workers), whose orders wait in \
                     RabbitMQ: a server without a broker would put them in its own line and cook them a second \
                     time. Give this server --broker too (e.g. --broker amqp://guest:guest@127.0.0.1:5672), or \
                     stop them first"
                )));
            }
            Err(StoreError::InUse(format!(
                "another `fastfood serve` without --broker ({}) keeps the orders of {place} in its own \
                 memory, and two of them would cook each other's orders: run one, or run every server with \
                 --broker amqp://guest:guest@127.0.0.1:5672 (plus `fastfood worker`s), where RabbitMQ holds \
                 the orders for all of them",
                holder(&mut file)
            )))
        }
        Queueing::Broker => {
            if fs2::FileExt::try_lock_shared(&file).is_ok() {
                return Ok(Lease { _file: Some(file) });
            }
            Err(StoreError::InUse(format!(
                "{place} is served by `fastfood serve` without --broker ({}), which keeps its orders in its \
                 own memory where this process cannot see them: stop it and start it again with --broker \
                 amqp://guest:guest@127.0.0.1:5672, then start this one",
                holder(&mut file)
            )))
        }
    }
}

/// Whether a server without a broker left its line here (its pid, or a
/// handover that did not finish), and if so marks the file as handed over
/// by this process. The caller holds the store's lock and the lease of
/// [`Queueing::Broker`].
pub fn claim_leftovers(dir: &Path) -> Result<bool, StoreError> {
    let path = dir.join(QUEUE_LOCK);
    let io = io_error(&path);
    let text = std::fs::read_to_string(&path).map_err(&io)?;
    if text.trim().is_empty() {
        return Ok(false);
    }
    // A handover under way in a process that still runs is that process's.
    if let Some(pid) = text.trim().strip_prefix("handover ")
        && Path::new("/proc").join(pid).exists()
    {
        return Ok(false);
    }
    let mut file = OpenOptions::new().write(true).open(&path).map_err(&io)?;
    file.set_len(0).map_err(&io)?;
    writeln!(file, "handover {}", std::process::id()).map_err(&io)?;
    file.sync_all().map_err(&io)?;
    Ok(true)
}

/// The orders a server without a broker left are in RabbitMQ now.
pub fn handed_over(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(QUEUE_LOCK);
    let io = io_error(&path);
    let file = OpenOptions::new().write(true).open(&path).map_err(&io)?;
    file.set_len(0).map_err(&io)?;
    file.sync_all().map_err(&io)
}

/// "pid N" of the in-process server that wrote its pid in the lock file.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
    match text.trim().parse::<u32>() {
        Ok(pid) => format!("pid {pid}"),
        Err(_) => "its pid unknown".to_owned(),
    }
}
