//! The invariants every process-and-file scenario checks afterwards (the
//! guarantees of docs/guarantees.md), read from the data directory itself, from
//! the list of `201`s the customers got and from the boards:
//!
//! - **U** every `201` got a distinct ticket number, for the order that was
//!   sent (the store holds that content under that number); the counter is
//!   at least the highest number anywhere in the store.
//! - **L** every order that got a `201` reaches READY or COLLECTED (never
//!   lost, never cancelled).
//! - **S** no order stays TAKEN or PREPARING past a bound ([`wait_settled`]),
//!   and the broker's queue drains (the broker tests check that).
//! - **M** no status moves backward: in the store (every record the log and
//!   the history still hold, in version order), and on any board
//!   ([`BoardWatch`]).
//! - **F** `orders.json` parses, as the old or the new state (its version
//!   lies within the log's range); the log is a header then consecutive
//!   changes, whole lines; the history never holds an order twice; the
//!   counter is always 4 bytes.
//! - **E** every failure is a JSON error with the right status, never a
//!   `201` ([`Ledger`], [`check_error`]).
//!
//! The files are read under the store's own lock (`orders.lock`), held for a
//! moment, so a check never sees a compaction half done: what it sees is
//! what the next process to start would load. A store in PostgreSQL is read
//! in one statement (one snapshot) into the same shape ([`read_at`]), so the
//! checks are written once for both backends.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fastfood::order::{Order, Status};
use fastfood::rush::verdict::{self, Answer, BoardEvent, Boards, History, Ordered, Verdict};
use serde::Deserialize;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::sse::{SseClient, streams_client};
use super::{Board, header};

/// An order that got a `201`: its number, what the customer asked for, and
/// the pickup code they got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub ticket: u32,
    pub content: String,
    pub code: String,
}

/// One line of the log or of the history (the line that takes an order
/// also holds its pickup code).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub version: u64,
    pub order: Order,
    #[serde(default)]
    pub pickup_code: Option<String>,
}

/// Everything in a data directory, read under the store's lock. Reading it
/// checks F's shape: every file parses (or the read panics, naming it).
#[derive(Debug, Clone)]
pub struct StoreFiles {
    /// `counter`: exactly 4 bytes, big-endian (0 when there is no counter yet).
    pub counter: u32,
    /// `orders.json`.
    pub snapshot_version: u64,
    pub snapshot: Vec<Order>,
    /// `orders.log`: the header's base and the changes.
    pub log_base: u64,
    pub log: Vec<Line>,
    /// Bytes after the log's last newline: a write cut short by a crash,
    /// which the next process to start drops.
    pub log_torn: usize,
    /// `history.jsonl` (empty when there is none).
    pub history: Vec<Line>,
    pub history_torn: usize,
}

/// How long a check waits for the store's lock (a live server holds it for
/// a moment per write, a compaction a little longer).
const LOCK_PATIENCE: Duration = Duration::from_secs(20);

/// Reads the data directory under the store's lock. Panics (naming the file)
/// where a file does not parse: that is F broken.
pub fn read_files(dir: &Path) -> StoreFiles {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join("orders.lock"))
        .expect("open orders.lock");
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    while fs2::FileExt::try_lock_exclusive(&lock).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "orders.lock was held for more than {LOCK_PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let files = read_files_unlocked(dir);
    fs2::FileExt::unlock(&lock).expect("unlock orders.lock");
    files
}

fn read_files_unlocked(dir: &Path) -> StoreFiles {
    let counter = match std::fs::read(dir.join("counter")) {
        Ok(bytes) => {
            assert_eq!(
                bytes.len(),
                4,
                "F: the counter is always 4 bytes, it is {bytes:?}"
            );
            u32::from_be_bytes(bytes.try_into().unwrap())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => panic!("read the counter: {e}"),
    };

    let text = std::fs::read_to_string(dir.join("orders.json")).expect("F: orders.json is there");
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Snapshot {
        version: u64,
        orders: Vec<Order>,
        #[serde(default)]
        #[allow(dead_code)]
        pickup_codes: BTreeMap<u32, String>,
    }
    let snapshot: Snapshot = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("F: orders.json does not parse ({e}):\n{text}"));

    let log_bytes = std::fs::read(dir.join("orders.log")).expect("F: orders.log is there");
    let (log_lines, log_torn) = whole_lines(&log_bytes);
    let mut lines = log_lines.iter();
    let header: Value = lines
        .next()
        .map(|l| serde_json::from_slice(l).expect("F: the log's header is JSON"))
        .expect("F: the log has a header line");
    let log_base = header["base"]
        .as_u64()
        .unwrap_or_else(|| panic!("F: the log's header is {{\"base\": N}}, not {header}"));
    let log = parse_lines("orders.log", lines, 2, "a change");

    let (history, history_torn) = match std::fs::read(dir.join("history.jsonl")) {
        Ok(bytes) => {
            let (lines, torn) = whole_lines(&bytes);
            let history = parse_lines("history.jsonl", lines.iter(), 1, "an entry");
            (history, torn)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0),
        Err(e) => panic!("read history.jsonl: {e}"),
    };

    StoreFiles {
        counter,
        snapshot_version: snapshot.version,
        snapshot: snapshot.orders,
        log_base,
        log,
        log_torn,
        history,
        history_torn,
    }
}

/// Each of `lines` parsed as a [`Line`]; the first is line `first` of
/// `file`. Panics naming the line that does not parse: that is F broken.
fn parse_lines<'a>(
    file: &str,
    lines: impl Iterator<Item = &'a &'a [u8]>,
    first: usize,
    what: &str,
) -> Vec<Line> {
    lines
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_slice(l).unwrap_or_else(|e| {
                panic!(
                    "F: {file} line {} is not {what} ({e}): {}",
                    i + first,
                    String::from_utf8_lossy(l)
                )
            })
        })
        .collect()
}

/// The non-blank whole lines of `bytes`, and how many bytes follow the last
/// newline.
fn whole_lines(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let lines = bytes[..end]
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    (lines, bytes.len() - end)
}

/// Where an order stands according to the files, as the next process to
/// start would load it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fate {
    pub status: Status,
    pub content: String,
}

impl StoreFiles {
    /// The last change the files hold.
    pub fn version(&self) -> u64 {
        self.log
            .last()
            .map_or(self.snapshot_version, |l| l.version)
            .max(self.snapshot_version)
    }

    /// Every ticket's fate: the history (up to the snapshot), then the
    /// snapshot, then the log's changes after it.
    pub fn fates(&self) -> BTreeMap<u32, Fate> {
        let mut fates = BTreeMap::new();
        let mut put = |order: &Order| {
            fates.insert(
                order.ticket,
                Fate {
                    status: order.status,
                    content: order.content.clone(),
                },
            );
        };
        for line in self
            .history
            .iter()
            .filter(|l| l.version <= self.snapshot_version)
        {
            put(&line.order);
        }
        for order in &self.snapshot {
            put(order);
        }
        for line in self
            .log
            .iter()
            .filter(|l| l.version > self.snapshot_version)
        {
            put(&line.order);
        }
        fates
    }

    /// Every change of an order's status after the snapshot, in version
    /// order, as `(version, ticket, status)`: what a board sends (a change
    /// that moves no status, such as the broker's confirm, is no event).
    pub fn status_changes(&self) -> Vec<(u64, u32, String)> {
        let mut last: BTreeMap<u32, Status> =
            self.snapshot.iter().map(|o| (o.ticket, o.status)).collect();
        let mut changes = Vec::new();
        for line in self
            .log
            .iter()
            .filter(|l| l.version > self.snapshot_version)
        {
            let order = &line.order;
            if last.insert(order.ticket, order.status) != Some(order.status) {
                let status = serde_json::to_value(order.status).expect("a status serialises");
                let status = status.as_str().expect("a status is a string").to_owned();
                changes.push((line.version, order.ticket, status));
            }
        }
        changes
    }

    /// The highest ticket number any file mentions.
    pub fn highest(&self) -> u32 {
        let logged = self.log.iter().chain(&self.history).map(|l| l.order.ticket);
        let live = self.snapshot.iter().map(|o| o.ticket);
        logged.chain(live).max().unwrap_or(0)
    }

    /// `ticket`'s statuses in the history and the log, in order, a
    /// restatement (the same status again, as the broker's confirmation
    /// marks it) counted once.
    pub fn steps(&self, ticket: u32) -> Vec<String> {
        let mut steps: Vec<String> = self
            .history
            .iter()
            .chain(&self.log)
            .filter(|l| l.order.ticket == ticket)
            .map(|l| l.order.status.to_string())
            .collect();
        steps.dedup();
        steps
    }

    /// Orders still TAKEN or PREPARING.
    pub fn unsettled(&self) -> Vec<(u32, Status)> {
        self.fates()
            .into_iter()
            .filter(|(_, f)| matches!(f.status, Status::Taken | Status::Preparing))
            .map(|(t, f)| (t, f.status))
            .collect()
    }
}

/// **F**: the files a process would load. Besides parsing (checked by
/// [`read_files`]): no half line left (after a crash the next start drops
/// it; call this with a process running on the directory), the log a header
/// then consecutive changes, the snapshot within the log's range (the old
/// state or the new one), the snapshot's orders once each and all live, the
/// history strictly ascending with each order at most once.
pub fn check_files(files: &StoreFiles) {
    assert_eq!(
        files.log_torn, 0,
        "F: orders.log ends with a whole line ({} bytes after the last newline)",
        files.log_torn
    );
    assert_eq!(
        files.history_torn, 0,
        "F: history.jsonl ends with a whole line"
    );
    for (i, line) in files.log.iter().enumerate() {
        assert_eq!(
            line.version,
            files.log_base + 1 + i as u64,
            "F: the log's changes are consecutive from its base {}",
            files.log_base
        );
    }
    let log_end = files.log.last().map_or(files.log_base, |l| l.version);
    assert!(
        files.log_base <= files.snapshot_version && files.snapshot_version <= log_end,
        "F: orders.json (change {}) is the old or the new state of a log from {} to {}",
        files.snapshot_version,
        files.log_base,
        log_end
    );
    let mut seen = BTreeSet::new();
    for order in &files.snapshot {
        assert!(
            seen.insert(order.ticket),
            "F: order {} twice in orders.json",
            order.ticket
        );
        assert!(
            order.status.is_live(),
            "F: orders.json holds only live orders, not {} {}",
            order.ticket,
            order.status
        );
    }
    let mut seen = BTreeSet::new();
    for pair in files.history.windows(2) {
        assert!(
            pair[0].version < pair[1].version,
            "F: history.jsonl is never written twice: change {} then {}",
            pair[0].version,
            pair[1].version
        );
    }
    for line in &files.history {
        assert!(
            seen.insert(line.order.ticket),
            "F: order {} left twice in history.jsonl",
            line.order.ticket
        );
        assert!(
            !line.order.status.is_live(),
            "F: history.jsonl holds only orders that left"
        );
    }
}

/// What the library's checker ([`verdict::judge`]) says of `accepted`
/// against the files' fates: the same code `fastfood rush --history` runs.
fn judged(files: &StoreFiles, accepted: &[Accepted]) -> Verdict {
    let orders = accepted
        .iter()
        .map(|a| Ordered {
            server: 0,
            sent_ms: 0,
            took_ms: 0,
            answer: Answer::Created {
                ticket: a.ticket,
                content: a.content.clone(),
            },
        })
        .collect();
    let fates = files
        .fates()
        .into_iter()
        .map(|(ticket, fate)| {
            let fate = verdict::Fate {
                status: Some(fate.status),
                content: Some(fate.content),
            };
            (ticket, fate)
        })
        .collect();
    verdict::judge(&History {
        servers: vec!["the test's restaurant".into()],
        orders,
        fates,
        ..History::default()
    })
}

/// **U**: the `201`s are distinct numbers, each holding the content its
/// customer sent, and the counter is at least every number in the store.
pub fn check_unique(files: &StoreFiles, accepted: &[Accepted]) {
    let verdict = judged(files, accepted);
    assert!(
        verdict.duplicated.is_empty(),
        "U: tickets given to two customers: {:?}",
        verdict.duplicated
    );
    assert!(
        verdict.mixed_up.is_empty(),
        "U: tickets holding another customer's order: {:?}",
        verdict.mixed_up
    );
    let highest = files
        .highest()
        .max(accepted.iter().map(|a| a.ticket).max().unwrap_or(0));
    assert!(
        files.counter >= highest,
        "U: the counter ({}) is at least the highest number handed out ({highest})",
        files.counter
    );
}

/// **L**: every `201` is READY or COLLECTED in the files.
pub fn check_landed(files: &StoreFiles, accepted: &[Accepted]) {
    let lost: Vec<_> = judged(files, accepted)
        .lost
        .iter()
        .map(|l| (l.ticket, l.status))
        .collect();
    assert!(
        lost.is_empty(),
        "L: orders that got a 201 but are not READY or COLLECTED (ticket, status in the files): {lost:?}"
    );
}

/// **S**, at the end: nothing left TAKEN or PREPARING.
pub fn check_settled(files: &StoreFiles) {
    let unsettled = files.unsettled();
    assert!(
        unsettled.is_empty(),
        "S: orders left TAKEN or PREPARING: {unsettled:?}"
    );
}

/// **M** in the store: every change the log and the history still hold (and
/// the snapshot, at its version), in version order, moves each order forward
/// or leaves it where it is, never back; CANCELLED only comes from TAKEN;
/// and one version is one change (the history repeats a log line only as it
/// is, after a compaction cut short).
pub fn check_forward_in_store(files: &StoreFiles) {
    let mut by_version: BTreeMap<u64, &Order> = BTreeMap::new();
    for line in files.history.iter().chain(&files.log) {
        if let Some(other) = by_version.insert(line.version, &line.order) {
            assert_eq!(
                other, &line.order,
                "M: change {} is two different changes in the files",
                line.version
            );
        }
    }
    let mut last: BTreeMap<u32, (u64, Status)> = BTreeMap::new();
    let mut step = |version: u64, order: &Order| {
        if let Some((at, from)) = last.get(&order.ticket).copied() {
            let to = order.status;
            let ok = if to == Status::Cancelled {
                from == Status::Taken
                    || from == Status::Cancelled
                    || (from == Status::Preparing
                        && order.cancelled_by == Some(fastfood::order::CancelledBy::Kitchen))
            } else {
                to.rank() >= from.rank() && from != Status::Cancelled
            };
            assert!(
                ok,
                "M: order {} went from {from} (change {at}) to {to} (change {version})",
                order.ticket
            );
        }
        last.insert(order.ticket, (version, order.status));
    };
    let mut snapshot_done = false;
    for (version, order) in &by_version {
        if !snapshot_done && *version > files.snapshot_version {
            for o in &files.snapshot {
                step(files.snapshot_version, o);
            }
            snapshot_done = true;
        }
        step(*version, order);
    }
    if !snapshot_done {
        for o in &files.snapshot {
            step(files.snapshot_version, o);
        }
    }
}

/// Where a restaurant keeps its orders: a data directory, or a database
/// (its URL); see [`Backend::store_at`](super::pg::Backend::store_at).
#[derive(Debug, Clone)]
pub enum StoreAt {
    Files(PathBuf),
    Database(String),
}

impl super::pg::Backend {
    /// Where a restaurant started with [`Backend::args`](super::pg::Backend::args)
    /// and `data_dir` keeps its orders, for the checks here.
    pub fn store_at(&self, data_dir: &Path) -> StoreAt {
        match self {
            super::pg::Backend::Files => StoreAt::Files(data_dir.to_owned()),
            super::pg::Backend::Postgres(db) => StoreAt::Database(db.url.clone()),
        }
    }
}

/// Reads the store wherever it is: the files ([`read_files`]) or the
/// database ([`read_database`]), in the same shape.
pub fn read_at(at: &StoreAt) -> StoreFiles {
    match at {
        StoreAt::Files(dir) => read_files(dir),
        StoreAt::Database(url) => read_database(url),
    }
}

/// **F** for either store: [`check_files`] on the files; the database's
/// shape is checked as [`read_database`] reads it.
pub fn check_shape(at: &StoreAt, files: &StoreFiles) {
    if let StoreAt::Files(_) = at {
        check_files(files);
    }
}

/// The orders in the PostgreSQL database at `url`, read in one statement
/// (one snapshot), in the shape of a data directory: the counter is the
/// ticket sequence's last number, the log the change log
/// (`fastfood_changes`), and the snapshot every row of `fastfood_orders`
/// at the log's last version (no history: the database keeps every order).
/// Checks F's counterpart as it reads: the changes are consecutive, each
/// order's row is its last change, and an order that left keeps no code.
pub fn read_database(url: &str) -> StoreFiles {
    let text = super::pg::query(
        url,
        "select json_build_object(
            'counter', (select case when is_called then last_value else 0 end from fastfood_ticket),
            'orders', coalesce((select json_agg(json_build_object(
                'version', version, 'order', body, 'pickup_code', pickup_code) order by ticket)
                from fastfood_orders), '[]'),
            'changes', coalesce((select json_agg(json_build_object(
                'version', version, 'order', body, 'pickup_code', pickup_code) order by version)
                from fastfood_changes), '[]'))",
    );
    #[derive(Deserialize)]
    struct Database {
        counter: u64,
        orders: Vec<Line>,
        changes: Vec<Line>,
    }
    let db: Database = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("F: the database's orders parse ({e}): {text}"));
    let base = db.changes.first().map_or(0, |l| l.version - 1);
    for (i, line) in db.changes.iter().enumerate() {
        assert_eq!(
            line.version,
            base + 1 + i as u64,
            "F: the database's changes are consecutive from {base}"
        );
    }
    let last = db.changes.last().map_or(base, |l| l.version);
    let mut latest = BTreeMap::new();
    for line in &db.changes {
        latest.insert(line.order.ticket, line);
    }
    for row in &db.orders {
        assert!(
            row.version <= last,
            "F: order {}'s row is at change {}, past the log's last ({last})",
            row.order.ticket,
            row.version
        );
        if let Some(change) = latest.get(&row.order.ticket) {
            assert_eq!(
                (change.version, &change.order),
                (row.version, &row.order),
                "F: order {}'s row is its last change",
                row.order.ticket
            );
        }
        assert!(
            row.order.status.is_live() || row.pickup_code.is_none(),
            "F: order {} left and still keeps its pickup code",
            row.order.ticket
        );
    }
    StoreFiles {
        counter: u32::try_from(db.counter).expect("U: the ticket sequence stays within u32"),
        snapshot_version: last,
        snapshot: db.orders.into_iter().map(|l| l.order).collect(),
        log_base: base,
        log: db.changes,
        log_torn: 0,
        history: Vec::new(),
        history_torn: 0,
    }
}

/// F, U, L, S and M-in-the-store on the store at `at`, now. Returns what
/// it read.
pub fn check_all_at(at: &StoreAt, accepted: &[Accepted]) -> StoreFiles {
    let files = read_at(at);
    check_shape(at, &files);
    check_forward_in_store(&files);
    check_unique(&files, accepted);
    check_landed(&files, accepted);
    check_settled(&files);
    files
}

/// **S** (and L): waits until every `201` is READY or COLLECTED and no order
/// is TAKEN or PREPARING any more, at most `bound`; then checks everything
/// with [`check_all_at`]. Panics with what is still unsettled.
pub async fn wait_settled(dir: &Path, accepted: &[Accepted], bound: Duration) -> StoreFiles {
    wait_settled_at(&StoreAt::Files(dir.to_owned()), accepted, bound).await
}

/// [`wait_settled`] on a store wherever it is.
pub async fn wait_settled_at(at: &StoreAt, accepted: &[Accepted], bound: Duration) -> StoreFiles {
    let deadline = Instant::now() + bound;
    loop {
        let at2 = at.clone();
        let files = tokio::task::spawn_blocking(move || read_at(&at2))
            .await
            .expect("read the store");
        let fates = files.fates();
        let landed = accepted.iter().all(|a| {
            matches!(
                fates.get(&a.ticket).map(|f| f.status),
                Some(Status::Ready | Status::Collected)
            )
        });
        let unsettled = files.unsettled();
        if landed && unsettled.is_empty() && files.log_torn == 0 {
            break;
        }
        if Instant::now() >= deadline {
            let missing: Vec<_> = accepted
                .iter()
                .filter(|a| {
                    !matches!(
                        fates.get(&a.ticket).map(|f| f.status),
                        Some(Status::Ready | Status::Collected)
                    )
                })
                .map(|a| (a.ticket, fates.get(&a.ticket).map(|f| f.status)))
                .take(20)
                .collect();
            panic!(
                "S/L: after {bound:?}, orders still TAKEN or PREPARING: {:?}; 201s not READY/COLLECTED: {missing:?}",
                unsettled.iter().take(20).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at = at.clone();
    let accepted = accepted.to_vec();
    tokio::task::spawn_blocking(move || check_all_at(&at, &accepted))
        .await
        .expect("the checks pass")
}

/// **E**, no ghost: every order on `board` got a `201` (a refused order
/// never shows up).
pub fn check_no_ghost(board: &Board, accepted: &[Accepted]) {
    let statuses = board.statuses();
    for ticket in statuses.keys() {
        assert!(
            accepted.iter().any(|a| a.ticket == *ticket),
            "E: order {ticket} was refused but is on the board: {statuses:?}"
        );
    }
}

/// **E**: a failed `/order` (or any request) answers a JSON error
/// `{"error", "message"}` whose status is one of `allowed`; returns the
/// status and code. Panics on a `201` or anything else.
pub fn check_error(
    status: u16,
    content_type: &str,
    body: &str,
    allowed: &[(u16, &str)],
) -> (u16, String) {
    assert_ne!(status, 201, "E: a failure is never a 201: {body}");
    assert!(
        content_type.starts_with("application/json"),
        "E: an error is JSON, got {status} with content-type {content_type:?}: {body}"
    );
    let value: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("E: not JSON ({e}): {body}"));
    let code = value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("E: no error code in {body}"))
        .to_owned();
    assert!(
        value["message"].as_str().is_some_and(|m| m.len() > 5),
        "E: the error has a message for a person: {body}"
    );
    assert!(
        allowed.iter().any(|(s, c)| *s == status && *c == code),
        "E: {status} {code} is not one of the expected answers {allowed:?}: {body}"
    );
    (status, code)
}

/// The answers `/order` may give when a process, the broker, a lock or the
/// disk fails under it.
pub const ORDER_UNAVAILABLE: &[(u16, &str)] = &[
    (503, "queue_unavailable"),
    (503, "store_unavailable"),
    (503, "tickets_unavailable"),
];

/// How one `POST /order` went.
#[derive(Debug, Clone)]
pub enum Attempt {
    Accepted(Accepted),
    /// A JSON error (checked by [`check_error`]): status and code.
    Refused(u16, String),
    /// No answer: the connection failed or broke (a process was killed).
    NoAnswer(String),
}

/// `POST {base}/order` with `content`, checking the answer: a `201` with the
/// ticket's `Location` and the content sent, or a JSON error in `allowed`.
pub async fn order_once(
    client: &reqwest::Client,
    base: &str,
    content: &str,
    allowed: &[(u16, &str)],
) -> Attempt {
    let response = match client
        .post(format!("{base}/order"))
        .body(content.to_owned())
        .send()
        .await
    {
        Ok(response) => response,
        Err(e) => return Attempt::NoAnswer(e.to_string()),
    };
    let status = response.status().as_u16();
    let content_type = header(&response, "content-type");
    let location = header(&response, "location");
    let body = match response.text().await {
        Ok(body) => body,
        Err(e) => return Attempt::NoAnswer(format!("the body broke off: {e}")),
    };
    if status == 201 {
        let value: Value = serde_json::from_str(&body).expect("a 201 is a JSON order");
        let ticket = value["order"].as_u64().expect("a ticket number") as u32;
        assert_eq!(location, format!("/orders/{ticket}"), "{body}");
        assert_eq!(value["status"], "TAKEN", "{body}");
        assert_eq!(value["content"], content, "U: the 201 is for this order");
        let code = value["pickup_code"]
            .as_str()
            .expect("a 201 has a pickup code")
            .to_owned();
        return Attempt::Accepted(Accepted {
            ticket,
            content: content.to_owned(),
            code,
        });
    }
    let (status, code) = check_error(status, &content_type, &body, allowed);
    Attempt::Refused(status, code)
}

/// `POST {base}/order` with `content`, which must get a `201`.
pub async fn accept(client: &reqwest::Client, base: &str, content: &str) -> Accepted {
    match order_once(client, base, content, &[]).await {
        Attempt::Accepted(a) => a,
        other => panic!("POST /order {content:?}: {other:?}"),
    }
}

/// Customers ordering at `base` until `stop`, `n` at a time, each attempt a
/// distinct order (its text starts with `who`, when given); every answer is
/// checked (a `201`, or a `503` JSON error) and noted in `ledger`.
pub fn crowd(
    base: &str,
    who: &'static str,
    n: usize,
    ledger: &Arc<Ledger>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<JoinHandle<()>> {
    (0..n)
        .map(|c| {
            let (base, ledger, stop) = (base.to_owned(), ledger.clone(), stop.clone());
            tokio::spawn(async move {
                let client = super::http_client();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let content = match who {
                        "" => format!("customer {c}, order {i}"),
                        who => format!("{who}: customer {c}, order {i}"),
                    };
                    let attempt = order_once(&client, &base, &content, ORDER_UNAVAILABLE).await;
                    ledger.note(&attempt);
                    let pause = if matches!(attempt, Attempt::Accepted(_)) {
                        10
                    } else {
                        50
                    };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            })
        })
        .collect()
}

/// What a crowd of customers got: every `201`, and how many were refused
/// (with a checked JSON error) or got no answer.
#[derive(Default)]
pub struct Ledger {
    accepted: Mutex<Vec<Accepted>>,
    refused: Mutex<BTreeMap<(u16, String), usize>>,
    no_answer: AtomicUsize,
}

impl Ledger {
    pub fn note(&self, attempt: &Attempt) {
        match attempt {
            Attempt::Accepted(a) => self.accepted.lock().unwrap().push(a.clone()),
            Attempt::Refused(status, code) => {
                *self
                    .refused
                    .lock()
                    .unwrap()
                    .entry((*status, code.clone()))
                    .or_default() += 1
            }
            Attempt::NoAnswer(_) => {
                self.no_answer.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.accepted.lock().unwrap().clone()
    }

    pub fn refused(&self) -> BTreeMap<(u16, String), usize> {
        self.refused.lock().unwrap().clone()
    }

    pub fn no_answer(&self) -> usize {
        self.no_answer.load(Ordering::Relaxed)
    }

    pub fn summary(&self) -> String {
        format!(
            "{} accepted, refused {:?}, {} without an answer",
            self.accepted.lock().unwrap().len(),
            self.refused(),
            self.no_answer()
        )
    }
}

/// **M** on one board, or across the boards of servers sharing a store:
/// the library's checker.
pub use fastfood::rush::verdict::Forward;

/// **M** on a board: follows `/updates` on whatever `base` currently holds
/// (set it again when the server restarts somewhere else), reconnecting
/// whenever the stream breaks, and checks that within each connection the
/// ids are the versions and increase, and that across all of them no order's
/// status ever moves backward (a restarted server loads the store, which
/// holds at least what any board showed: boards only show durable changes).
pub struct BoardWatch {
    stop: CancellationToken,
    task: JoinHandle<()>,
    seen: Arc<Mutex<Watched>>,
}

/// What a [`BoardWatch`] read: every event, for the library's board checks
/// ([`Boards`]), and what did not even parse.
#[derive(Default, Debug)]
struct Watched {
    events: Vec<BoardEvent>,
    connections: usize,
    /// The base of the last connection that got its first event.
    watching: String,
    violations: Vec<String>,
    /// What each connection sent.
    streams: Vec<Stream>,
}

/// One `/updates` connection as a [`BoardWatch`] read it: the version of its
/// first (whole) board, then each change it sent, in order.
#[derive(Default, Debug, Clone)]
pub struct Stream {
    pub base: String,
    pub first: u64,
    /// `(version, ticket, status)`.
    pub changes: Vec<(u64, u32, String)>,
    /// Whole boards after the first (the screen fell behind and resynced).
    pub resyncs: usize,
}

impl Watched {
    /// One event's data, as the checker reads it.
    fn event(&mut self, data: &Value, id: &str, connection: usize) {
        let parse = |order: &Value| -> Option<(u32, Status)> {
            let ticket = order["order"].as_u64()? as u32;
            let status = serde_json::from_value(order["status"].clone()).ok()?;
            Some((ticket, status))
        };
        let board = match data["orders"].as_array() {
            Some(orders) => match orders.iter().map(parse).collect::<Option<Vec<_>>>() {
                Some(board) => Some(board),
                None => return self.violations.push(format!("a malformed board: {data}")),
            },
            None => None,
        };
        let change = match &data["change"] {
            Value::Null => None,
            change => match parse(change) {
                Some(change) => Some(change),
                None => return self.violations.push(format!("a malformed change: {data}")),
            },
        };
        let Some(version) = data["version"].as_u64() else {
            return self
                .violations
                .push(format!("an event without a version: {data}"));
        };
        self.events.push(BoardEvent {
            server: 0,
            connection: connection as u32,
            at_ms: 0,
            id: id.parse().ok(),
            version,
            change,
            // Only a whole board starts a connection's span of changes.
            board: change.is_none().then(|| board.unwrap_or_default()),
        });
    }
}

impl BoardWatch {
    /// Starts watching the board at `*base` (an empty string: wait for one).
    pub fn start(base: Arc<Mutex<String>>) -> BoardWatch {
        let stop = CancellationToken::new();
        let seen = Arc::new(Mutex::new(Watched::default()));
        let task = tokio::spawn({
            let (stop, seen) = (stop.clone(), seen.clone());
            async move {
                let client = streams_client();
                let mut connection = 0;
                while !stop.is_cancelled() {
                    let url = base.lock().unwrap().clone();
                    if !url.is_empty() {
                        connection += 1;
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = follow(&client, &url, connection, &seen) => {}
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        BoardWatch { stop, task, seen }
    }

    /// Waits until the board at `base` is being watched (its first event
    /// is in), so that what happens next there is seen.
    pub async fn wait_watching(&self, base: &str) {
        super::wait_until(
            super::DEADLINE,
            &format!("watching the board at {base}"),
            || async { self.seen.lock().unwrap().watching == base },
        )
        .await;
    }

    /// What every connection so far sent, in order.
    pub fn streams(&self) -> Vec<Stream> {
        self.seen.lock().unwrap().streams.clone()
    }

    /// Stops watching; panics if any order moved backward, a connection's
    /// versions did not increase, an order was READY at two versions, or the
    /// board was never seen. Returns the number of events read.
    pub async fn finish(self) -> usize {
        self.stop.cancel();
        let _ = self.task.await;
        let seen = self.seen.lock().unwrap();
        let boards = Boards::from_events(&seen.events);
        let problems: Vec<_> = seen
            .violations
            .iter()
            .chain(&boards.problems())
            .cloned()
            .collect();
        assert!(
            problems.is_empty(),
            "M on a board: {:?}",
            &problems[..problems.len().min(10)]
        );
        assert!(
            !seen.events.is_empty(),
            "the board watcher never saw an event"
        );
        eprintln!(
            "board watch: {} events over {} connections, {} orders",
            seen.events.len(),
            seen.connections,
            boards.orders
        );
        seen.events.len()
    }
}

/// Reads one `/updates` connection until it ends or breaks.
async fn follow(client: &reqwest::Client, base: &str, connection: usize, seen: &Mutex<Watched>) {
    let Ok(mut events) = SseClient::open(client.get(format!("{base}/updates"))).await else {
        return;
    };
    seen.lock().unwrap().connections += 1;
    let mut first_event = true;
    while let Some(event) = events.next_until_end().await {
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            seen.lock()
                .unwrap()
                .violations
                .push(format!("event data is not JSON: {}", event.data));
            return;
        };
        let mut seen = seen.lock().unwrap();
        seen.event(&data, &event.id, connection);
        let (v, change) = (
            data["version"].as_u64().unwrap_or_default(),
            &data["change"],
        );
        if first_event {
            seen.streams.push(Stream {
                base: base.to_owned(),
                first: v,
                ..Stream::default()
            });
        } else if let Some(stream) = seen.streams.last_mut() {
            match (change["order"].as_u64(), change["status"].as_str()) {
                (Some(ticket), Some(status)) => {
                    stream.changes.push((v, ticket as u32, status.to_owned()))
                }
                _ => stream.resyncs += 1,
            }
        }
        first_event = false;
        if seen.watching != base {
            seen.watching = base.to_owned();
        }
    }
}

/// Holds an exclusive `flock` on `path` from this (test) process, as another
/// process would, until dropped.
pub struct HeldLock {
    file: std::fs::File,
}

impl HeldLock {
    pub fn take(path: &Path) -> HeldLock {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let deadline = std::time::Instant::now() + LOCK_PATIENCE;
        while fs2::FileExt::try_lock_exclusive(&file).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "could not lock {}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        HeldLock { file }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        let _ = fs2::FileExt::unlock(&self.file);
    }
}
