//! The store's loading path (`orders.json`, `orders.log`, `history.jsonl`)
//! on arbitrary file contents: it must give a state, or a `Corrupt` error
//! that names one of the files; never panic, never hang.
//!
//! Input: the first byte says which files exist (bit 0 the snapshot, bit 1
//! the log, bit 2 the history); the rest is split at the first two NUL bytes
//! into their contents. Seeds in fuzz/seeds/store_load.

#![no_main]

use fastfood::store::{self, StoreError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // On tmpfs when there is one: loading fsyncs what it repairs.
    let base = std::path::Path::new("/dev/shm");
    let dir = if base.is_dir() {
        tempfile::tempdir_in(base)
    } else {
        tempfile::tempdir()
    }
    .expect("a temp dir");
    let (flags, rest) = data.split_first().unwrap_or((&0, &[]));
    let mut parts = rest.splitn(3, |b| *b == 0);
    let names = [store::SNAPSHOT, store::LOG, store::HISTORY];
    for (bit, name) in names.iter().enumerate() {
        let part = parts.next().unwrap_or_default();
        if flags & (1 << bit) != 0 {
            std::fs::write(dir.path().join(name), part).expect("write a store file");
        }
    }
    match store::testing::check(dir.path()) {
        Ok(_) => {}
        Err(StoreError::Corrupt { path, what }) => {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            assert!(
                names.contains(&name),
                "a Corrupt error names a store file, not {}: {what}",
                path.display()
            );
            assert!(!what.is_empty());
        }
        Err(e) => panic!("loading gave an error that is not Corrupt: {e}"),
    }
});
