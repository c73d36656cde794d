//! Property tests: the order store and the ticket counter against
//! plain in-memory models, on random sequences of operations, through the
//! public API only.
//!
//! - The store, in a temp dir, against a map of ticket → status with the
//!   forward-only rules, and customers' steps with the right pickup code,
//!   a wrong one or none: every outcome matches, and after closing and
//!   reopening from disk (`lookup`, `unfinished`, `highest_ticket`) it is
//!   the model again. Compaction is lowered to every few changes
//!   ([`store::testing::compact_sooner`]) so it happens again and again, with two
//!   handles on one directory (like two processes) following each other.
//! - The same store model on PostgreSQL (a fresh database per case, two
//!   handles on it, reopened at random; no compaction there).
//! - The counter against a `u32`, including near `u32::MAX`.
//! - The loading path and the `/take` query parser on random bytes: the
//!   stable, short version of the fuzz targets in `fuzz/` (scripts/fuzz.sh).
//!
//! `PROPTEST_CASES` sets the number of cases (default below).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use fastfood::order::{Order, Status, Ticket};
use fastfood::pickup::PickupCode;
use fastfood::store::postgres::Sharing;
use fastfood::store::{self, Lookup, Outcome, Repeat, Store, StoreError};
use fastfood::ticket::{CounterFile, Create, TicketError};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The tests' PostgreSQL: a fresh database per case.
#[path = "support/pg.rs"]
#[allow(dead_code)]
mod pg;

/// Cases per property unless `PROPTEST_CASES` says otherwise.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(default_cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases: cases(default_cases),
        failure_persistence: None,
        ..Config::default()
    })
}

// ---------------------------------------------------------------- the store

/// One order in the model.
#[derive(Clone, Debug, PartialEq)]
struct Modelled {
    status: Status,
    queued: bool,
    content: String,
    /// The worker that claimed it last, and how many claims it had.
    worker: Option<String>,
    deliveries: u32,
}

/// The store as it should be: what is in the restaurant, what was collected
/// or cancelled, and the highest number ever seen; and which orders' codes
/// the customers hold (those taken in an earlier step).
#[derive(Default, Debug)]
struct Model {
    live: BTreeMap<Ticket, Modelled>,
    collected: BTreeSet<Ticket>,
    cancelled: BTreeSet<Ticket>,
    highest: Ticket,
    known: BTreeSet<Ticket>,
    /// Taken in this step: their codes are known from the next step on.
    known_next: BTreeSet<Ticket>,
}

/// What an operation should answer.
#[derive(Clone, Debug, PartialEq)]
enum Expect {
    Changed(Status, bool),
    /// A claim of an order left PREPARING, and who had it.
    ClaimedAgain(Option<String>),
    Unchanged(Status),
    WrongStatus(Status),
    Collected,
    Cancelled,
    NotFound,
    WrongCode,
    /// `take` of a number the store already holds: refused with an error.
    Refused,
}

/// The one step forward from each status.
fn next_of(status: Status) -> &'static [Status] {
    match status {
        Status::Taken => &[Status::Preparing, Status::Cancelled],
        Status::Preparing => &[Status::Ready],
        Status::Ready => &[Status::Collected],
        Status::Collected | Status::Cancelled => &[],
    }
}

/// How far along the line, for "already there or past it".
fn order_rank(status: Status) -> u8 {
    match status {
        Status::Taken => 0,
        Status::Preparing => 1,
        Status::Ready => 2,
        Status::Collected => 3,
        Status::Cancelled => 4,
    }
}

impl Model {
    fn take(&mut self, ticket: Ticket, content: &str) -> Expect {
        if self.live.contains_key(&ticket)
            || self.collected.contains(&ticket)
            || self.cancelled.contains(&ticket)
        {
            return Expect::Refused;
        }
        self.known_next.insert(ticket);
        self.live.insert(
            ticket,
            Modelled {
                status: Status::Taken,
                queued: false,
                content: content.to_owned(),
                worker: None,
                deliveries: 0,
            },
        );
        self.highest = self.highest.max(ticket);
        Expect::Changed(Status::Taken, false)
    }

    fn advance(&mut self, ticket: Ticket, to: Status, idempotent: bool) -> Expect {
        if self.collected.contains(&ticket) {
            return Expect::Collected;
        }
        if self.cancelled.contains(&ticket) {
            return Expect::Cancelled;
        }
        let Some(order) = self.live.get_mut(&ticket) else {
            return Expect::NotFound;
        };
        let from = order.status;
        if next_of(from).contains(&to) {
            order.status = to;
            let queued = order.queued;
            match to {
                Status::Collected => {
                    self.live.remove(&ticket);
                    self.collected.insert(ticket);
                }
                Status::Cancelled => {
                    self.live.remove(&ticket);
                    self.cancelled.insert(ticket);
                }
                _ => {}
            }
            Expect::Changed(to, queued)
        } else if idempotent && order_rank(from) >= order_rank(to) {
            Expect::Unchanged(from)
        } else {
            Expect::WrongStatus(from)
        }
    }

    /// A customer collects or cancels, with the code they hold (`right`
    /// and known), or a wrong one.
    fn customer(&mut self, ticket: Ticket, to: Status, right: bool) -> Expect {
        let live = self.live.contains_key(&ticket);
        if live && !(right && self.known.contains(&ticket)) {
            return Expect::WrongCode;
        }
        self.advance(ticket, to, false)
    }

    /// The step is over: the codes taken in it are in the customers' hands.
    fn step_done(&mut self) {
        self.known.append(&mut self.known_next);
    }

    /// `worker` takes the order to prepare it: TAKEN → PREPARING, or
    /// PREPARING again; READY or further is left as it is.
    fn claim(&mut self, ticket: Ticket, worker: &str) -> Expect {
        if self.collected.contains(&ticket) {
            return Expect::Collected;
        }
        if self.cancelled.contains(&ticket) {
            return Expect::Cancelled;
        }
        let Some(order) = self.live.get_mut(&ticket) else {
            return Expect::NotFound;
        };
        let was = order.status;
        if !matches!(was, Status::Taken | Status::Preparing) {
            return Expect::Unchanged(was);
        }
        let before = order.worker.replace(worker.to_owned());
        order.deliveries += 1;
        order.status = Status::Preparing;
        match was {
            Status::Taken => Expect::Changed(Status::Preparing, order.queued),
            _ => Expect::ClaimedAgain(before),
        }
    }

    /// The broker confirmed the order (`queued`), or the line lost it.
    fn mark_queued(&mut self, ticket: Ticket, queued: bool) -> Expect {
        if self.collected.contains(&ticket) {
            return Expect::Collected;
        }
        if self.cancelled.contains(&ticket) {
            return Expect::Cancelled;
        }
        match self.live.get_mut(&ticket) {
            None => Expect::NotFound,
            Some(order) if order.status == Status::Taken && order.queued != queued => {
                order.queued = queued;
                Expect::Changed(Status::Taken, queued)
            }
            Some(order) => Expect::Unchanged(order.status),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Take(Ticket, &'static str),
    Advance(Ticket, Status, bool),
    MarkQueued(Ticket),
    /// The line lost a confirmed order.
    Unqueue(Ticket),
    /// A worker (one of a few names) claims the order.
    Claim(Ticket, &'static str),
    /// A customer's step (COLLECTED or CANCELLED) with the right code (or a
    /// wrong one).
    Customer(Ticket, Status, bool),
}

/// A step of a scenario: operations on handle `0` or `1`.
#[derive(Clone, Debug)]
enum Step {
    One(usize, Op),
    /// Submitted at once to one handle: decided in one group commit, in order.
    Together(usize, Vec<Op>),
    /// Both handles closed; the store reopened from its files.
    Reopen,
}

const CONTENTS: &[&str] = &[
    "cola",
    "fries",
    "a \"double\" burger,\nno pickles",
    "½ 🍔 \u{2028} \\ </script>",
];

const WORKERS: &[&str] = &[
    "worker 1 (pid 10)",
    "worker 2 (pid 10)",
    "worker 1 (pid 11)",
];

fn op() -> impl Strategy<Value = Op> {
    let ticket = prop_oneof![8 => 1..=8u32, 1 => Just(u32::MAX), 1 => 1_000..=1_002u32];
    let status = prop_oneof![
        Just(Status::Taken),
        Just(Status::Preparing),
        Just(Status::Ready),
        Just(Status::Collected),
        Just(Status::Cancelled),
    ];
    prop_oneof![
        3 => (ticket.clone(), prop::sample::select(CONTENTS)).prop_map(|(t, c)| Op::Take(t, c)),
        6 => (ticket.clone(), status, any::<bool>()).prop_map(|(t, s, i)| Op::Advance(t, s, i)),
        1 => ticket.clone().prop_map(Op::MarkQueued),
        1 => ticket.clone().prop_map(Op::Unqueue),
        3 => (ticket.clone(), prop::sample::select(WORKERS)).prop_map(|(t, w)| Op::Claim(t, w)),
        3 => (ticket, prop_oneof![Just(Status::Collected), Just(Status::Cancelled)], prop::bool::weighted(0.8))
            .prop_map(|(t, s, right)| Op::Customer(t, s, right)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => (0..2usize, op()).prop_map(|(h, op)| Step::One(h, op)),
        3 => (0..2usize, prop::collection::vec(op(), 2..8)).prop_map(|(h, ops)| Step::Together(h, ops)),
        1 => Just(Step::Reopen),
    ]
}

/// What the store answered, in the model's terms.
fn seen(ticket: Ticket, answer: Result<Outcome, StoreError>, content: Option<&str>) -> Expect {
    let check = |order: &Order| {
        assert_eq!(order.ticket, ticket, "an answer about another order");
        if let Some(content) = content {
            assert_eq!(order.content, content);
        }
    };
    match answer {
        Ok(Outcome::Changed(order)) => {
            check(&order);
            Expect::Changed(order.status, order.queued)
        }
        Ok(Outcome::ClaimedAgain { order, from }) => {
            check(&order);
            Expect::ClaimedAgain(from)
        }
        Ok(Outcome::Unchanged(order)) => {
            check(&order);
            Expect::Unchanged(order.status)
        }
        Ok(Outcome::WrongStatus(order)) => {
            check(&order);
            Expect::WrongStatus(order.status)
        }
        Ok(Outcome::OverLimit(order)) => panic!("no delivery limit, yet over it: {order:?}"),
        Ok(Outcome::Collected) => Expect::Collected,
        Ok(Outcome::Cancelled) => Expect::Cancelled,
        Ok(Outcome::NotFound) => Expect::NotFound,
        Ok(Outcome::WrongCode) => Expect::WrongCode,
        Ok(Outcome::Full) => panic!("the store has no bound here, yet it said full"),
        Err(StoreError::Corrupt { what, .. }) if what.contains("handed out twice") => {
            Expect::Refused
        }
        Err(e) => panic!("the store failed: {e}"),
    }
}

/// The store's name for a step that may repeat (a redelivery) or may not.
fn repeat(idempotent: bool) -> Repeat {
    if idempotent {
        Repeat::Allow
    } else {
        Repeat::Refuse
    }
}

/// The codes the customers got, by ticket.
type Codes = Mutex<HashMap<Ticket, PickupCode>>;

async fn apply(store: &Store, codes: &Codes, op: &Op) -> Expect {
    match op {
        Op::Take(t, content) => {
            let answer = store
                .record(*t, content.to_string())
                .await
                .map(|(order, code)| {
                    codes.lock().unwrap().insert(*t, code);
                    Outcome::Changed(order)
                });
            seen(*t, answer, Some(content))
        }
        Op::Customer(t, to, right) => {
            let held = codes.lock().unwrap().get(t).copied();
            let code = match (right, held) {
                (true, held) => held,
                // A wrong code: the right one with its last digit changed.
                (false, Some(code)) => {
                    let mut text = code.to_string();
                    let last = text.pop().unwrap();
                    text.push(if last == '0' { '1' } else { '0' });
                    PickupCode::parse(&text)
                }
                (false, None) => PickupCode::parse("000000"),
            };
            seen(*t, store.by_customer(*t, *to, code).await, None)
        }
        Op::Advance(t, to, idempotent) => {
            seen(*t, store.advance(*t, *to, repeat(*idempotent)).await, None)
        }
        Op::MarkQueued(t) => seen(*t, store.mark_queued(*t).await, None),
        Op::Unqueue(t) => seen(*t, store.mark_lost(*t).await, None),
        // No delivery limit here: the set-aside has its own tests.
        Op::Claim(t, worker) => seen(*t, store.claim(*t, (*worker).into(), u32::MAX).await, None),
    }
}

fn expect(model: &mut Model, op: &Op) -> Expect {
    match op {
        Op::Take(t, content) => model.take(*t, content),
        Op::Advance(t, to, idempotent) => model.advance(*t, *to, *idempotent),
        Op::MarkQueued(t) => model.mark_queued(*t, true),
        Op::Unqueue(t) => model.mark_queued(*t, false),
        Op::Claim(t, worker) => model.claim(*t, worker),
        Op::Customer(t, to, right) => model.customer(*t, *to, *right),
    }
}

/// Tickets worth looking at: every one the scenario can name, and neighbours.
const LOOKED_AT: &[Ticket] = &[
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    999,
    1000,
    1001,
    1002,
    1003,
    u32::MAX,
];

/// The store's state, as the public API shows it, equals the model's.
fn same_state(store: &Store, model: &Model, when: &str) -> Result<(), TestCaseError> {
    for &t in LOOKED_AT {
        let expected = match model.live.get(&t) {
            Some(m) => format!(
                "live {} queued={} {:?} by {:?} x{}",
                m.status, m.queued, m.content, m.worker, m.deliveries
            ),
            None if model.collected.contains(&t) => "collected".into(),
            None if model.cancelled.contains(&t) => "cancelled".into(),
            None => "unknown".into(),
        };
        let got = match store.lookup(t) {
            Lookup::Live(o) => format!(
                "live {} queued={} {:?} by {:?} x{}",
                o.status, o.queued, o.content, o.worker, o.deliveries
            ),
            Lookup::Collected => "collected".into(),
            Lookup::Cancelled => "cancelled".into(),
            Lookup::Unknown => "unknown".into(),
        };
        prop_assert_eq!(got, expected, "{}: order {}", when, t);
    }
    let unfinished: Vec<(Ticket, Status)> = store
        .unfinished()
        .iter()
        .map(|o| (o.ticket, o.status))
        .collect();
    let expected: Vec<(Ticket, Status)> = model
        .live
        .iter()
        .filter(|(_, m)| matches!(m.status, Status::Taken | Status::Preparing))
        .map(|(t, m)| (*t, m.status))
        .collect();
    prop_assert_eq!(unfinished, expected, "{}: unfinished", when);
    prop_assert_eq!(store.highest_ticket(), model.highest, "{}: highest", when);
    Ok(())
}

/// Makes `store` read what the other handle wrote (a cycle catches up first).
async fn catch_up(store: &Store) {
    let nothing = store.mark_queued(0).await.expect("a cycle");
    assert_eq!(nothing, Outcome::NotFound);
}

/// Where a case's store lives: a data directory, or a PostgreSQL database
/// of its own (dropped with the case).
enum Place {
    Files(tempfile::TempDir),
    Database(pg::Database),
}

impl Place {
    /// One handle on the store, as one process would open it.
    async fn open(&self) -> Store {
        match self {
            Place::Files(dir) => Store::open(dir.path(), Vec::new()).expect("the store opens"),
            Place::Database(db) => {
                // A short log: the other handle often falls behind its pruning.
                Store::open_database(&db.url, Vec::new(), Sharing::WithBroker, 8)
                    .await
                    .expect("the store opens")
                    .0
            }
        }
    }

    /// Two handles, like two processes.
    async fn open_two(&self) -> [Store; 2] {
        [self.open().await, self.open().await]
    }
}

/// Cases whose files had history (compaction happened).
static COMPACTED: AtomicUsize = AtomicUsize::new(0);

fn run_store_scenario(steps: &[Step], place: Place) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut model = Model::default();
        let codes = Codes::default();
        let mut stores = place.open_two().await;
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::One(h, op) => {
                    let want = expect(&mut model, op);
                    let got = apply(&stores[*h], &codes, op).await;
                    prop_assert_eq!(got, want, "step {}: {:?}", i, op);
                    model.step_done();
                }
                Step::Together(h, ops) => {
                    let wants: Vec<Expect> = ops.iter().map(|op| expect(&mut model, op)).collect();
                    // join_all polls in order, so they reach the committer in order.
                    let gots = futures_util::future::join_all(
                        ops.iter().map(|op| apply(&stores[*h], &codes, op)),
                    )
                    .await;
                    prop_assert_eq!(gots, wants, "step {}: {:?}", i, ops);
                    model.step_done();
                }
                Step::Reopen => {
                    model.step_done();
                    drop(stores);
                    stores = place.open_two().await;
                    for store in &stores {
                        same_state(store, &model, &format!("reopened at step {i}"))?;
                    }
                }
            }
        }
        for store in &stores {
            catch_up(store).await;
            same_state(store, &model, "at the end")?;
        }
        drop(stores);
        let reopened = place.open().await;
        same_state(&reopened, &model, "reopened at the end")?;
        Ok(())
    })?;
    if let Place::Files(dir) = &place
        && dir.path().join(store::HISTORY).exists()
    {
        COMPACTED.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

#[test]
fn the_store_follows_the_model_across_batches_compactions_and_reopening() {
    // Compact after a handful of changes instead of 20,000.
    store::testing::compact_sooner(6);
    let mut runner = runner(40);
    let steps = prop::collection::vec(step(), 1..60);
    runner
        .run(&steps, |steps| {
            run_store_scenario(&steps, Place::Files(tempfile::tempdir().unwrap()))
        })
        .unwrap();
    eprintln!(
        "{} cases left a history (compacted)",
        COMPACTED.load(Ordering::Relaxed)
    );
    assert!(
        COMPACTED.load(Ordering::Relaxed) > 0,
        "no case compacted: the property did not cover compaction"
    );
}

/// The same model on PostgreSQL: two handles on one database (like two
/// processes sharing it through RabbitMQ), reopened at random, a fresh
/// database per case. Skips loudly without PostgreSQL, unless
/// `FASTFOOD_REQUIRE_POSTGRES=1`.
#[test]
fn the_store_follows_the_model_on_postgresql_across_batches_and_reopening() {
    static CASE: AtomicUsize = AtomicUsize::new(0);
    let mut runner = runner(20);
    let steps = prop::collection::vec(step(), 1..60);
    runner
        .run(&steps, |steps| {
            let case = CASE.fetch_add(1, Ordering::Relaxed);
            let Some(db) = pg::Database::create(&format!("model_{case}")) else {
                return Ok(());
            };
            run_store_scenario(&steps, Place::Database(db))
        })
        .unwrap();
}

// -------------------------------------------------------------- the counter

#[derive(Clone, Debug)]
enum CounterOp {
    Take(u32),
    Reopen,
}

fn counter_op() -> impl Strategy<Value = CounterOp> {
    prop_oneof![
        6 => (1..=5u32).prop_map(CounterOp::Take),
        2 => any::<u32>().prop_map(|k| CounterOp::Take(k.max(1))),
        2 => (0..=10u32).prop_map(|d| CounterOp::Take(u32::MAX - d)),
        1 => Just(CounterOp::Reopen),
    ]
}

fn counter_start() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        0..1000u32,
        any::<u32>(),
        (0..=20u32).prop_map(|d| u32::MAX - d),
    ]
}

fn run_counter_scenario(start: u32, ops: &[CounterOp]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(fastfood::ticket::FILE_NAME);
    std::fs::write(&path, start.to_be_bytes()).unwrap();
    let mut counter =
        CounterFile::open(dir.path(), Create::MustExist).expect("a 4-byte counter opens");
    let mut model = start;
    for op in ops {
        match op {
            CounterOp::Take(k) => match (model.checked_add(*k), counter.reserve(*k)) {
                (Some(last), Ok(first)) => {
                    prop_assert_eq!(first, model + 1, "take({}) from {}", k, model);
                    model = last;
                }
                (None, Err(TicketError::Exhausted { .. })) => {}
                (want, got) => {
                    prop_assert!(
                        false,
                        "take({}) from {}: model {:?}, counter {:?}",
                        k,
                        model,
                        want,
                        got
                    )
                }
            },
            CounterOp::Reopen => {
                counter = CounterFile::open(dir.path(), Create::MustExist).expect("it reopens");
            }
        }
        prop_assert_eq!(counter.last().unwrap(), model);
        prop_assert_eq!(std::fs::read(&path).unwrap(), model.to_be_bytes().to_vec());
    }
    Ok(())
}

#[test]
fn the_counter_follows_a_u32_and_never_wraps() {
    let mut runner = runner(256);
    let scenario = (counter_start(), prop::collection::vec(counter_op(), 1..40));
    runner
        .run(&scenario, |(start, ops)| run_counter_scenario(start, &ops))
        .unwrap();
}

#[test]
fn taking_no_ticket_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for start in [0, 41, u32::MAX] {
        std::fs::write(dir.path().join("counter"), u32::to_be_bytes(start)).unwrap();
        let counter = CounterFile::open(dir.path(), Create::MustExist).unwrap();
        let taken = std::panic::catch_unwind(|| counter.reserve(0));
        assert!(taken.is_err(), "take(0) from {start} hands out nothing");
        assert_eq!(counter.last().unwrap(), start);
        assert_eq!(counter.reserve(1).ok(), start.checked_add(1));
    }
}

// ------------------------------------------------ random bytes, short runs

/// The three store files from one input (see fuzz/fuzz_targets/store_load.rs):
/// the first byte says which exist, the rest is split at NUL bytes.
fn store_files(dir: &Path, data: &[u8]) {
    let (flags, rest) = data.split_first().unwrap_or((&0, &[]));
    let mut parts = rest.splitn(3, |b| *b == 0);
    for (bit, name) in [store::SNAPSHOT, store::LOG, store::HISTORY]
        .iter()
        .enumerate()
    {
        let part = parts.next().unwrap_or_default();
        if flags & (1 << bit) != 0 {
            std::fs::write(dir.join(name), part).unwrap();
        }
    }
}

/// Loading must give the state or a `Corrupt` error naming one of the files.
fn check_load(data: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    store_files(dir.path(), data);
    match store::testing::check(dir.path()) {
        Ok(_) => {}
        Err(StoreError::Corrupt { path, what }) => {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            prop_assert!(
                [store::SNAPSHOT, store::LOG, store::HISTORY].contains(&name),
                "a Corrupt error names a store file, not {}: {}",
                path.display(),
                what
            );
        }
        Err(e) => prop_assert!(false, "not a Corrupt error: {}", e),
    }
    Ok(())
}

/// Inputs that look like the files: real lines, cut and spliced.
fn store_like() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just(r#"{"base":0}"#.to_string()),
        (0..5u64).prop_map(|v| format!(r#"{{"base":{v}}}"#)),
        (1..6u64, 1..4u32, 0..5usize).prop_map(|(v, t, s)| {
            let status = ["TAKEN", "PREPARING", "READY", "COLLECTED", "CANCELLED"][s];
            format!(
                r#"{{"version":{v},"order":{{"order":{t},"status":"{status}","content":"x","taken_at":"2026-01-01T00:00:00.000Z"}}}}"#
            )
        }),
        (0..5u64, 1..4u32).prop_map(|(v, t)| format!(
            r#"{{"version":{v},"orders":[{{"order":{t},"status":"TAKEN","content":"x","taken_at":"2026-01-01T00:00:00Z"}}]}}"#
        )),
        Just(r#"{"version":0,"orders":[]}"#.to_string()),
        ".{0,12}",
    ];
    let file = prop::collection::vec(line, 0..6).prop_map(|lines| lines.join("\n"));
    (any::<u8>(), file.clone(), file.clone(), file, 0..4usize).prop_map(|(flags, a, b, c, cut)| {
        let mut data = vec![flags];
        for (i, part) in [a, b, c].into_iter().enumerate() {
            if i > 0 {
                data.push(0);
            }
            let mut bytes = part.into_bytes();
            if cut == i + 1 {
                bytes.truncate(bytes.len() / 2);
            } else if !bytes.is_empty() {
                bytes.push(b'\n');
            }
            data.extend(bytes);
        }
        data
    })
}

#[test]
fn loading_any_files_gives_a_state_or_names_the_bad_file() {
    let mut runner = runner(300);
    runner
        .run(&prop::collection::vec(any::<u8>(), 0..200), |data| {
            check_load(&data)
        })
        .unwrap();
    runner.run(&store_like(), |data| check_load(&data)).unwrap();
}

#[test]
fn any_take_query_is_a_ticket_or_a_400() {
    let mut runner = runner(2000);
    let query = prop_oneof![
        ".*",
        "(order|x|ORDER|%6Frder)=[-+ 0-9.%a-fA-F]{0,24}(&(order|x)=[0-9]{0,3})?",
        "order=[0-9]{1,12}",
    ];
    runner
        .run(&query, |q| {
            let result = fastfood::web::parse_take_query(Some(&q));
            // The oracle: exactly one `order` pair, no key but `order` and `code`, its value
            // all ASCII digits, from 1 to u32::MAX.
            let pairs: Vec<(String, String)> = url_pairs(&q);
            let orders: Vec<&String> = pairs
                .iter()
                .filter(|(k, _)| k == "order")
                .map(|(_, v)| v)
                .collect();
            let only_order = pairs.iter().all(|(k, _)| k == "order" || k == "code");
            let expected = match (orders.as_slice(), only_order) {
                ([v], true) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v
                    .trim_start_matches('0')
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=u32::MAX as u64).contains(n))
                    .map(|n| n as u32),
                _ => None,
            };
            match result {
                Ok(asked) => prop_assert_eq!(Some(asked.ticket), expected, "{:?}", q),
                Err(e) => {
                    prop_assert_eq!(None, expected, "{:?}: {}", q, e);
                    let response = axum::response::IntoResponse::into_response(e);
                    prop_assert_eq!(response.status().as_u16(), 400);
                }
            }
            Ok(())
        })
        .unwrap();
}

/// `application/x-www-form-urlencoded` pairs, decoded by hand (the oracle
/// does not share the parser under test).
fn url_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len()
                    && bytes[i + 1].is_ascii_hexdigit()
                    && bytes[i + 2].is_ascii_hexdigit() =>
                {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}
