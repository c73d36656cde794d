//! `restaurant_id`: the restaurant's identity (see [`crate::restaurant`]),
//! one line, made when the store is created and never changed. Read and
//! written under the store's lock, so two servers opening an older store
//! at once give it one identity, not two.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::StoreError;
use super::disk::{corrupt, io_error};
use crate::durable;
use crate::restaurant::RestaurantId;

pub const IDENTITY: &str = "restaurant_id";

/// The identity in `dir`, or `None` when the file is missing.
pub fn read(dir: &Path) -> Result<Option<RestaurantId>, StoreError> {
    let path = dir.join(IDENTITY);
    match fs::read_to_string(&path) {
        Ok(text) => RestaurantId::parse(&text)
            .map(Some)
            .map_err(|why| corrupt(&path, format!("is not a restaurant identity: {why}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(corrupt(
            &path,
            "is not a restaurant identity: it is not text",
        )),
        Err(e) => Err(io_error(&path)(e)),
    }
}

/// The identity of the store in `dir`, made now if it has none (a store
/// from before identities). Takes the store's lock on `lock`.
pub fn read_or_create(dir: &Path, lock: &std::fs::File) -> Result<RestaurantId, StoreError> {
    let _held =
        durable::exclusive(lock, durable::LOCK_WAIT).map_err(|e| StoreError::Busy(e.into()))?;
    if let Some(id) = read(dir)? {
        return Ok(id);
    }
    let id = create(dir)?;
    tracing::info!(
        "this restaurant had no identity yet: it is {id} from now on ({})",
        dir.join(IDENTITY).display()
    );
    Ok(id)
}

/// Gives the restaurant in `dir` a new identity: written to a temp file
/// (0600), fsynced, renamed into place, the directory fsynced, so a crash
/// leaves no identity or the whole one. The caller holds the store's lock
/// and saw none.
pub fn create(dir: &Path) -> Result<RestaurantId, StoreError> {
    let path = dir.join(IDENTITY);
    let id = RestaurantId::generate().map_err(|e| StoreError::NoRandomness(e.to_string()))?;
    let temp = dir.join(format!(".{IDENTITY}.tmp"));
    let io = io_error(&path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(&io)?;
    file.write_all(format!("{id}\n").as_bytes()).map_err(&io)?;
    file.sync_all().map_err(&io)?;
    fs::rename(&temp, &path).map_err(&io)?;
    durable::sync_dir(dir).map_err(&io)?;
    Ok(id)
}
