//! A data directory read and written by hand, as `jq`, an operator or a
//! crash would leave it: the counter, the snapshot and the log, stores
//! written from scratch, and the check that a damaged one is refused.

use std::collections::BTreeMap;
use std::path::Path;

use fastfood::order::Status;
use serde_json::Value;

use super::process::run_to_exit;

/// Every file in `dir` (not recursive) with its bytes.
pub fn dir_contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read the data dir")
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .collect()
}

/// The counter file's number.
pub fn read_counter(data_dir: &Path) -> u32 {
    let bytes = std::fs::read(data_dir.join("counter")).expect("the counter file");
    u32::from_be_bytes(bytes.try_into().expect("a 4-byte counter"))
}

/// `orders.json` and `orders.log` parsed as `jq` would: the snapshot, and the
/// log's header and records. Panics if either is not valid JSON.
pub fn read_store(data_dir: &Path) -> (Value, Value, Vec<Value>) {
    let snapshot_text = std::fs::read_to_string(data_dir.join("orders.json")).expect("orders.json");
    let snapshot: Value =
        serde_json::from_str(&snapshot_text).expect("orders.json is one JSON document");
    let log_text = std::fs::read_to_string(data_dir.join("orders.log")).expect("orders.log");
    assert!(
        log_text.ends_with('\n'),
        "orders.log ends with a whole line"
    );
    let mut lines = log_text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("each log line is JSON"));
    let header = lines.next().expect("a header line");
    (snapshot, header, lines.collect())
}

/// A whole order as the store writes it, with the timestamps its status has
/// reached (one second apart: taken at :00, preparing at :01, ready at :02,
/// collected at :03). A status the program does not know (a damaged file)
/// gets no timestamp beyond `taken_at`.
pub fn stored_order(n: u32, status: &str) -> Value {
    let mut o = serde_json::json!({"order": n, "status": status, "content": format!("burger {n}"), "taken_at": "2026-01-01T12:00:00.000Z"});
    // CANCELLED skipped the kitchen: it reached none of the steps below.
    let reached = serde_json::from_value::<Status>(Value::from(status))
        .ok()
        .filter(|s| *s != Status::Cancelled)
        .map(Status::rank);
    let steps = [
        ("preparing_at", Status::Preparing),
        ("ready_at", Status::Ready),
        ("closed_at", Status::Collected),
    ];
    for (key, step) in steps {
        if reached >= Some(step.rank()) {
            o[key] = serde_json::json!(format!("2026-01-01T12:00:0{}.000Z", step.rank()));
        }
    }
    o
}

/// One line of `orders.log` or `history.jsonl`: change `version` of `order`.
pub fn log_line(version: u64, order: Value) -> String {
    serde_json::json!({"version": version, "order": order}).to_string()
}

/// A store the way a run leaves it, written by hand: three READY orders in
/// the snapshot (version 9), an empty log, and the counter at 3.
pub fn write_store(dir: &Path) {
    let orders: Vec<String> = (1..=3)
        .map(|n| stored_order(n, "READY").to_string())
        .collect();
    let snapshot = format!(
        "{{\"version\":9,\"orders\":[\n{}\n]}}\n",
        orders.join(",\n")
    );
    std::fs::write(dir.join("orders.json"), snapshot).unwrap();
    std::fs::write(dir.join("orders.log"), "{\"base\":9}\n").unwrap();
    std::fs::write(dir.join("orders.lock"), "").unwrap();
    std::fs::write(dir.join("counter"), 3u32.to_be_bytes()).unwrap();
}

/// How a test damages a store [`write_store`] wrote.
pub type Damage = fn(&Path);

/// For each `(name, damage, file, reasons)`: a fresh hand-written store,
/// damaged; the program must refuse to start, name `file` and say each of
/// `reasons` on stderr, and leave every file exactly as it was.
pub async fn each_damage_is_refused(cases: &[(&str, Damage, &str, &[&str])]) {
    for (name, damage, file, reasons) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path());
        damage(dir.path());
        let before = dir_contents(dir.path());
        let run = run_to_exit(dir.path(), &["--prep-time", "0"]).await;
        assert!(
            !run.status.success(),
            "{name}: it must not start\n{}",
            run.stderr
        );
        let path = dir.path().join(file).display().to_string();
        assert!(
            run.stderr.contains(&path),
            "{name}: stderr names {path}:\n{}",
            run.stderr
        );
        for reason in *reasons {
            assert!(
                run.stderr.contains(reason),
                "{name}: stderr says {reason:?}:\n{}",
                run.stderr
            );
        }
        assert!(
            dir_contents(dir.path()) == before,
            "{name}: the files are left exactly as they were"
        );
    }
}
