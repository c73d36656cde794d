//! The checker: from the history of what every client saw (each `/order`
//! answer, each `/take`, each board event, per server) and the final state
//! of every acknowledged order, the verdict on the guarantees:
//!
//! - every order that got a `201` reached READY, or COLLECTED where the
//!   customer collected it (nothing acknowledged lost);
//! - no ticket number handed out twice, and each number holds the order its
//!   customer sent;
//! - no status moving backward, on any board or in the order of versions;
//!   no order READY at two versions (prepared twice);
//! - on every board the versions increase, no board misses a change another
//!   board showed in the span it was connected (no gap), and every board
//!   shows the same change at the same version (all boards agree);
//! - `/order` never answered anything but a `201` or a JSON refusal (never
//!   a 500), nor hung past the client's timeout; and when it refused or
//!   could not be reached, for how long, per server (the windows).
//!
//! Pure: it reads a [`History`] and returns a [`Verdict`]. `fastfood rush
//! --history` records one, and the tests judge theirs with the same code.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::order::{Status, Ticket};

/// How one `POST /order` ended, as its customer saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    /// `201` with this ticket for this order.
    Created { ticket: Ticket, content: String },
    /// A JSON error with a code (`503 queue_unavailable`, `400 empty_order`…).
    Refused { status: u16, error: String },
    /// Anything else: a 5xx other than a JSON `503`, an error that is not
    /// JSON, a `201` without a ticket. Never allowed.
    Broken { status: u16, detail: String },
    /// No connection could be made: the server is down or out of reach.
    Unreachable,
    /// The connection broke before the answer (the process died under it).
    Dropped,
    /// Connected, but no answer within the client's timeout: a hang.
    TimedOut,
}

impl Answer {
    /// A short name for counting: `503 queue_unavailable`, `cannot connect`…
    pub fn label(&self) -> String {
        match self {
            Answer::Created { .. } => "201".into(),
            Answer::Refused { status, error } => format!("{status} {error}"),
            Answer::Broken { status, .. } => format!("{status} (not a JSON refusal)"),
            Answer::Unreachable => "cannot connect".into(),
            Answer::Dropped => "connection lost".into(),
            Answer::TimedOut => "no answer in time".into(),
        }
    }
}

/// One `POST /order`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ordered {
    /// Index of the server in [`History::servers`].
    pub server: usize,
    /// Sent, in milliseconds since the history began.
    pub sent_ms: u64,
    /// How long the answer took (until the client gave up, for no answer).
    pub took_ms: u64,
    pub answer: Answer,
}

/// One `POST /take`: its HTTP status, `None` without an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Took {
    pub server: usize,
    pub ticket: Ticket,
    pub at_ms: u64,
    pub status: Option<u16>,
}

/// One `/updates` event as a board received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardEvent {
    pub server: usize,
    /// Which connection of this server's board (1 for the first; a new one
    /// after each reconnect).
    pub connection: u32,
    pub at_ms: u64,
    /// The event's `id:` (`None` when it had none or not a number).
    pub id: Option<u64>,
    pub version: u64,
    /// The change it carries (`None`: a whole board).
    pub change: Option<(Ticket, Status)>,
    /// The whole board it carries, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board: Option<Vec<(Ticket, Status)>>,
}

/// Where an acknowledged order ended, as the restaurant answered after the
/// rush (or as the store's files hold it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fate {
    /// `None`: no server knew the order.
    pub status: Option<Status>,
    /// Its text, when the answer showed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// Everything the clients of one run saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The servers, as the clients reached them.
    pub servers: Vec<String>,
    /// When the history began, RFC 3339 (wall clock), so that the windows
    /// can be read against the log of the faults.
    pub started: String,
    /// The client's timeout per request, in milliseconds.
    pub timeout_ms: u64,
    pub orders: Vec<Ordered>,
    pub takes: Vec<Took>,
    pub boards: Vec<BoardEvent>,
    /// The final state of every acknowledged order, by ticket.
    pub fates: BTreeMap<Ticket, Fate>,
}

impl History {
    /// Every `201`: its ticket, server and the order sent.
    pub fn acknowledged(&self) -> impl Iterator<Item = (Ticket, usize, &str)> {
        self.orders.iter().filter_map(|o| match &o.answer {
            Answer::Created { ticket, content } => Some((*ticket, o.server, content.as_str())),
            _ => None,
        })
    }

    /// The tickets the customers collected (`/take` answered `200`).
    pub fn collected(&self) -> BTreeSet<Ticket> {
        self.takes
            .iter()
            .filter(|t| t.status == Some(200))
            .map(|t| t.ticket)
            .collect()
    }

    /// Whether every acknowledged order has settled: READY or COLLECTED
    /// (COLLECTED where the customer collected it).
    pub fn settled(&self) -> bool {
        let collected = self.collected();
        self.acknowledged()
            .all(|(ticket, _, _)| landed(ticket, &collected, &self.fates).is_none())
    }
}

/// Why `ticket` has not landed: `None` when it is READY or COLLECTED (and
/// COLLECTED if its customer collected it), else its status.
fn landed(
    ticket: Ticket,
    collected: &BTreeSet<Ticket>,
    fates: &BTreeMap<Ticket, Fate>,
) -> Option<Option<Status>> {
    let status = fates.get(&ticket).and_then(|f| f.status);
    match status {
        Some(Status::Collected) => None,
        Some(Status::Ready) if !collected.contains(&ticket) => None,
        other => Some(other),
    }
}

/// An acknowledged order that did not land.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lost {
    pub ticket: Ticket,
    /// The server that acknowledged it.
    pub server: String,
    /// Where it stands now (`None`: no server knows it).
    pub status: Option<Status>,
    /// Its customer collected it, yet it is not COLLECTED.
    pub was_collected: bool,
}

/// A stretch of time in which one server's `/order` answered no `201`: from
/// the first such attempt sent to the last one answered (or given up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    pub from_ms: u64,
    pub to_ms: u64,
    /// How the attempts in it ended, by [`Answer::label`].
    pub answers: BTreeMap<String, usize>,
}

impl Window {
    pub fn seconds(&self) -> f64 {
        (self.to_ms - self.from_ms) as f64 / 1000.0
    }

    /// Attempts refused with `503`.
    pub fn refused_503(&self) -> usize {
        self.answers
            .iter()
            .filter(|(label, _)| label.starts_with("503 "))
            .map(|(_, n)| n)
            .sum()
    }
}

/// What one server did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    pub url: String,
    pub acknowledged: usize,
    /// Every `/order` answer by [`Answer::label`].
    pub answers: BTreeMap<String, usize>,
    pub windows: Vec<Window>,
    pub board_events: usize,
    pub board_connections: usize,
}

/// The verdict on a [`History`]. [`Verdict::ok`] when every list of
/// problems is empty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub ok: bool,
    /// Orders that got a `201`.
    pub acknowledged: usize,
    /// Of them, collected by their customer.
    pub collected: usize,
    pub lost: Vec<Lost>,
    /// Ticket numbers that two `201`s carried.
    pub duplicated: Vec<Ticket>,
    /// Tickets that hold another order than the one their `201` was for.
    pub mixed_up: Vec<Ticket>,
    /// Statuses that moved backward, on a board or between versions.
    pub backward: Vec<String>,
    /// Orders READY at two versions: prepared twice.
    pub ready_twice: Vec<Ticket>,
    /// Versions not increasing on a connection, changes a board missed.
    pub gaps: Vec<String>,
    /// One version shown as two different changes.
    pub disagreements: Vec<String>,
    /// Answers that were neither a `201` nor a JSON refusal (a 500…).
    pub broken: Vec<String>,
    /// Requests that hung past the timeout.
    pub hangs: Vec<String>,
    pub servers: Vec<Server>,
    /// The versions the boards showed, lowest and highest.
    pub versions: Option<(u64, u64)>,
    pub started: String,
    pub timeout_ms: u64,
}

/// Most items of one list of problems printed (the JSON has them all).
const SHOWN: usize = 20;

/// Judges `history`.
pub fn judge(history: &History) -> Verdict {
    let server = |i: usize| history.servers.get(i).cloned().unwrap_or_default();
    let collected = history.collected();

    let mut tickets: BTreeMap<Ticket, usize> = BTreeMap::new();
    let mut lost = Vec::new();
    let mut mixed_up = Vec::new();
    for (ticket, at, content) in history.acknowledged() {
        *tickets.entry(ticket).or_default() += 1;
        if let Some(status) = landed(ticket, &collected, &history.fates) {
            lost.push(Lost {
                ticket,
                server: server(at),
                status,
                was_collected: collected.contains(&ticket),
            });
        }
        let held = history
            .fates
            .get(&ticket)
            .and_then(|f| f.content.as_deref());
        if held.is_some_and(|held| held != content) {
            mixed_up.push(ticket);
        }
    }
    let duplicated = tickets
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(t, _)| *t)
        .collect();

    let mut broken = Vec::new();
    let mut hangs = Vec::new();
    for o in &history.orders {
        let at = format!("{} at {:.3} s", server(o.server), o.sent_ms as f64 / 1000.0);
        match &o.answer {
            Answer::Broken { status, detail } => {
                broken.push(format!("POST /order on {at}: {status} {detail}"))
            }
            Answer::TimedOut => hangs.push(format!(
                "POST /order on {at}: no answer in {} ms",
                history.timeout_ms
            )),
            _ => {}
        }
    }
    for t in &history.takes {
        let at = format!("{} at {:.3} s", server(t.server), t.at_ms as f64 / 1000.0);
        if let Some(status) = t.status.filter(|s| *s >= 500 && *s != 503) {
            broken.push(format!("POST /take?order={} on {at}: {status}", t.ticket));
        }
    }

    let boards = Boards::from_events(&history.boards);
    let servers = (0..history.servers.len())
        .map(|i| {
            let mine = history.orders.iter().filter(|o| o.server == i);
            let mut answers = BTreeMap::new();
            for o in mine.clone() {
                *answers.entry(o.answer.label()).or_default() += 1;
            }
            let events = history.boards.iter().filter(|e| e.server == i);
            Server {
                url: server(i),
                acknowledged: answers.get("201").copied().unwrap_or(0),
                answers,
                windows: windows(mine),
                board_events: events.clone().count(),
                board_connections: events.map(|e| e.connection).collect::<BTreeSet<_>>().len(),
            }
        })
        .collect();

    let mut verdict = Verdict {
        ok: false,
        acknowledged: tickets.values().sum(),
        collected: collected.len(),
        lost,
        duplicated,
        mixed_up,
        backward: boards.backward,
        ready_twice: boards.ready_twice,
        gaps: boards.gaps,
        disagreements: boards.disagreements,
        broken,
        hangs,
        servers,
        versions: boards.versions,
        started: history.started.clone(),
        timeout_ms: history.timeout_ms,
    };
    verdict.ok = verdict.problems().iter().all(|(_, list)| list.is_empty());
    verdict
}

/// The windows of one server's `/order` attempts: each maximal run, in the
/// order they were sent, of attempts that got no `201`.
fn windows<'a>(orders: impl Iterator<Item = &'a Ordered>) -> Vec<Window> {
    let mut sorted: Vec<&Ordered> = orders.collect();
    sorted.sort_by_key(|o| o.sent_ms);
    let mut windows: Vec<Window> = Vec::new();
    let mut open = false;
    for o in sorted {
        if matches!(o.answer, Answer::Created { .. }) {
            open = false;
            continue;
        }
        let end = o.sent_ms + o.took_ms;
        if !open {
            windows.push(Window {
                from_ms: o.sent_ms,
                to_ms: end,
                answers: BTreeMap::new(),
            });
            open = true;
        }
        let window = windows.last_mut().expect("just opened");
        window.to_ms = window.to_ms.max(end);
        *window.answers.entry(o.answer.label()).or_default() += 1;
    }
    windows
}

/// **Forward**: each order's furthest status so far ([`Status::rank`]); an
/// order seen further back than it has been is a violation. For one board
/// (across its reconnections), or the changes of a store in version order.
#[derive(Default, Debug, Clone)]
pub struct Forward {
    furthest: BTreeMap<Ticket, u8>,
}

impl Forward {
    /// Notes that `ticket` is shown as `status`; says so if that is backward
    /// or not a status at all.
    pub fn see(&mut self, ticket: Ticket, status: &str) -> Result<(), String> {
        let to = serde_json::from_value::<Status>(serde_json::Value::from(status))
            .map_err(|_| format!("order {ticket}: unknown status {status}"))?;
        self.see_status(ticket, to)
    }

    /// [`Forward::see`] of a parsed status.
    pub fn see_status(&mut self, ticket: Ticket, to: Status) -> Result<(), String> {
        self.reach(ticket, to.rank())
            .map_err(|from| format!("order {ticket} went backward: rank {from} then {to}"))
    }

    /// Notes that `ticket` is at `rank`; `Err` with the rank it had reached
    /// if that is further.
    pub fn reach(&mut self, ticket: Ticket, rank: u8) -> Result<(), u8> {
        let furthest = self.furthest.entry(ticket).or_insert(rank);
        let from = *furthest;
        *furthest = from.max(rank);
        if rank < from { Err(from) } else { Ok(()) }
    }

    /// The tickets seen, with their furthest rank.
    pub fn furthest(&self) -> &BTreeMap<Ticket, u8> {
        &self.furthest
    }

    /// How many orders were seen.
    pub fn orders(&self) -> usize {
        self.furthest.len()
    }
}

/// The board checks over the events of every board: see the module header.
#[derive(Debug, Default, Clone)]
pub struct Boards {
    pub backward: Vec<String>,
    pub ready_twice: Vec<Ticket>,
    pub gaps: Vec<String>,
    pub disagreements: Vec<String>,
    pub versions: Option<(u64, u64)>,
    /// Orders seen on any board.
    pub orders: usize,
}

/// The changes one board saw from one whole board on, on one connection.
struct Span {
    server: usize,
    connection: u32,
    from: u64,
    to: u64,
    changes: BTreeSet<u64>,
}

impl Boards {
    /// Checks `events`, in the order each board received them.
    pub fn from_events(events: &[BoardEvent]) -> Boards {
        let mut boards = Boards::default();
        let mut changes: BTreeMap<u64, (Ticket, Status)> = BTreeMap::new();
        let mut spans: Vec<Span> = Vec::new();
        let mut open: BTreeMap<(usize, u32), usize> = BTreeMap::new();
        let mut last: BTreeMap<(usize, u32), u64> = BTreeMap::new();
        let mut forward: BTreeMap<usize, Forward> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for e in events {
            let key = (e.server, e.connection);
            let how = format!(
                "server {} connection {} version {}",
                e.server + 1,
                e.connection,
                e.version
            );
            if e.id != Some(e.version) {
                boards
                    .gaps
                    .push(format!("an event whose id is not its version ({how})"));
            }
            if let Some(before) = last.insert(key, e.version)
                && e.version <= before
            {
                boards
                    .gaps
                    .push(format!("version {} after {before} ({how})", e.version));
            }
            boards.versions = Some(match boards.versions {
                None => (e.version, e.version),
                Some((lo, hi)) => (lo.min(e.version), hi.max(e.version)),
            });
            let forward = forward.entry(e.server).or_default();
            let mut shown = |ticket: Ticket, status: Status, boards: &mut Boards| {
                seen.insert(ticket);
                if let Err(problem) = forward.see_status(ticket, status) {
                    boards.backward.push(format!("{problem} ({how})"));
                }
            };
            match (&e.change, &e.board) {
                (Some((ticket, status)), _) => {
                    shown(*ticket, *status, &mut boards);
                    match changes.get(&e.version) {
                        Some(other) if other != &(*ticket, *status) => {
                            boards.disagreements.push(format!(
                                "version {}: order {} {} on one board, order {} {} on server {}'s",
                                e.version,
                                other.0,
                                other.1,
                                ticket,
                                status,
                                e.server + 1
                            ))
                        }
                        Some(_) => {}
                        None => {
                            changes.insert(e.version, (*ticket, *status));
                        }
                    }
                    match open.get(&key) {
                        Some(&i) => {
                            spans[i].to = e.version;
                            spans[i].changes.insert(e.version);
                        }
                        None => boards.gaps.push(format!(
                            "a change before any whole board on its connection ({how})"
                        )),
                    }
                }
                (None, board) => {
                    for (ticket, status) in board.iter().flatten() {
                        shown(*ticket, *status, &mut boards);
                    }
                    open.insert(key, spans.len());
                    spans.push(Span {
                        server: e.server,
                        connection: e.connection,
                        from: e.version,
                        to: e.version,
                        changes: BTreeSet::new(),
                    });
                }
            }
        }
        for span in spans.iter().filter(|s| s.to > s.from) {
            let missed: Vec<u64> = changes
                .range(span.from + 1..=span.to)
                .map(|(v, _)| *v)
                .filter(|v| !span.changes.contains(v))
                .collect();
            if let Some(first) = missed.first() {
                boards.gaps.push(format!(
                    "server {}'s board (connection {}, versions {} to {}) missed {} change(s) other boards showed, the first version {first}",
                    span.server + 1,
                    span.connection,
                    span.from,
                    span.to,
                    missed.len()
                ));
            }
        }
        let mut in_order = Forward::default();
        let mut ready: BTreeMap<Ticket, Vec<u64>> = BTreeMap::new();
        for (version, (ticket, status)) in &changes {
            if let Err(problem) = in_order.see_status(*ticket, *status) {
                boards
                    .backward
                    .push(format!("{problem} (in version order, at {version})"));
            }
            if *status == Status::Ready {
                ready.entry(*ticket).or_default().push(*version);
            }
        }
        boards.ready_twice = ready
            .into_iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(t, _)| t)
            .collect();
        boards.orders = seen.len();
        boards
    }

    /// Every problem, one line each.
    pub fn problems(&self) -> Vec<String> {
        let twice = self
            .ready_twice
            .iter()
            .map(|t| format!("order {t} READY at two versions"));
        self.backward
            .iter()
            .chain(&self.gaps)
            .chain(&self.disagreements)
            .cloned()
            .chain(twice)
            .collect()
    }
}

impl Verdict {
    /// Each kind of problem and its items, one line each.
    pub fn problems(&self) -> Vec<(&'static str, Vec<String>)> {
        let lost = self.lost.iter().map(|l| {
            let now = l
                .status
                .map_or("unknown to every server".into(), |s| s.to_string());
            match l.was_collected {
                true => format!(
                    "order {} (from {}), collected, is {now}",
                    l.ticket, l.server
                ),
                false => format!("order {} (from {}) is {now}", l.ticket, l.server),
            }
        });
        let tickets = |list: &[Ticket], what: &str| {
            list.iter()
                .map(|t| format!("order {t} {what}"))
                .collect::<Vec<_>>()
        };
        vec![
            ("acknowledged but lost", lost.collect()),
            (
                "ticket numbers given twice",
                tickets(&self.duplicated, "got two 201s"),
            ),
            (
                "tickets holding another customer's order",
                tickets(&self.mixed_up, "holds another order than its 201's"),
            ),
            ("statuses going backward", self.backward.clone()),
            (
                "orders READY twice",
                tickets(&self.ready_twice, "READY at two versions"),
            ),
            ("gaps on a board", self.gaps.clone()),
            ("boards disagreeing", self.disagreements.clone()),
            (
                "answers that are not a 201 or a JSON refusal",
                self.broken.clone(),
            ),
            ("requests that hung past the timeout", self.hangs.clone()),
        ]
    }

    /// The verdict for a person.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let lost = self.lost.len();
        let dup = self.duplicated.len();
        match self.ok {
            true => out.push_str("Verdict: nothing acknowledged lost.\n"),
            false => out.push_str("Verdict: BROKEN, see below.\n"),
        }
        let _ = writeln!(
            out,
            "  {} orders acknowledged (201), lost {lost}, duplicated {dup}; {} collected by their customers",
            self.acknowledged, self.collected
        );
        let events: usize = self.servers.iter().map(|s| s.board_events).sum();
        let versions = match self.versions {
            Some((lo, hi)) => format!("versions {lo} to {hi}"),
            None => "no version".into(),
        };
        let _ = writeln!(
            out,
            "  boards: {events} events on {} servers, {versions}",
            self.servers.len()
        );
        for (what, items) in self.problems() {
            if items.is_empty() {
                continue;
            }
            let _ = writeln!(out, "  {what}: {}", items.len());
            for item in items.iter().take(SHOWN) {
                let _ = writeln!(out, "    {item}");
            }
            if items.len() > SHOWN {
                let _ = writeln!(out, "    … and {} more", items.len() - SHOWN);
            }
        }
        if self.ok {
            let _ = writeln!(
                out,
                "  no ticket twice, no status backward, no order READY twice, no board gap, all boards agree; never a 500, never a hang past {} ms",
                self.timeout_ms
            );
        }
        let _ = writeln!(out, "  /order per server (times since {}):", self.started);
        for s in &self.servers {
            let answers: Vec<String> = s
                .answers
                .iter()
                .map(|(l, n)| format!("{n} × {l}"))
                .collect();
            let _ = writeln!(out, "    {}: {}", s.url, answers.join(", "));
            for w in &s.windows {
                let answers: Vec<String> = w
                    .answers
                    .iter()
                    .map(|(l, n)| format!("{n} × {l}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "      no 201 from {:.3} s to {:.3} s ({:.1} s): {}",
                    w.from_ms as f64 / 1000.0,
                    w.to_ms as f64 / 1000.0,
                    w.seconds(),
                    answers.join(", ")
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(server: usize, sent_ms: u64, ticket: Ticket) -> Ordered {
        Ordered {
            server,
            sent_ms,
            took_ms: 5,
            answer: Answer::Created {
                ticket,
                content: format!("order {ticket}"),
            },
        }
    }

    fn refused(server: usize, sent_ms: u64) -> Ordered {
        Ordered {
            server,
            sent_ms,
            took_ms: 3,
            answer: Answer::Refused {
                status: 503,
                error: "queue_unavailable".into(),
            },
        }
    }

    fn event(
        server: usize,
        connection: u32,
        version: u64,
        change: Option<(Ticket, Status)>,
    ) -> BoardEvent {
        BoardEvent {
            server,
            connection,
            at_ms: version,
            id: Some(version),
            version,
            change,
            board: change.is_none().then(Vec::new),
        }
    }

    fn fate(status: Status, ticket: Ticket) -> Fate {
        Fate {
            status: Some(status),
            content: Some(format!("order {ticket}")),
        }
    }

    /// Two servers, orders 1 and 2 prepared and seen by both boards, 1 collected.
    fn sound() -> History {
        let mut boards = Vec::new();
        for server in 0..2 {
            boards.push(event(server, 1, 0, None));
            for (v, change) in [
                (1, (1, Status::Taken)),
                (2, (2, Status::Taken)),
                (3, (1, Status::Preparing)),
                (4, (1, Status::Ready)),
                (5, (2, Status::Preparing)),
                (6, (2, Status::Ready)),
                (7, (1, Status::Collected)),
            ] {
                boards.push(event(server, 1, v, Some(change)));
            }
        }
        History {
            servers: vec!["http://a".into(), "http://b".into()],
            started: "2026-12-06T20:00:00Z".into(),
            timeout_ms: 30_000,
            orders: vec![
                created(0, 0, 1),
                refused(1, 10),
                refused(1, 50),
                created(1, 100, 2),
            ],
            takes: vec![Took {
                server: 0,
                ticket: 1,
                at_ms: 200,
                status: Some(200),
            }],
            boards,
            fates: BTreeMap::from([(1, fate(Status::Collected, 1)), (2, fate(Status::Ready, 2))]),
        }
    }

    #[test]
    fn a_sound_history_loses_nothing_and_shows_its_503_window() {
        let history = sound();
        assert!(history.settled());
        let verdict = judge(&history);
        assert!(verdict.ok, "{}", verdict.text());
        assert_eq!((verdict.acknowledged, verdict.collected), (2, 1));
        assert_eq!(verdict.versions, Some((0, 7)));
        let windows = &verdict.servers[1].windows;
        assert_eq!(windows.len(), 1);
        assert_eq!(
            (
                windows[0].from_ms,
                windows[0].to_ms,
                windows[0].refused_503()
            ),
            (10, 53, 2)
        );
        assert!(verdict.servers[0].windows.is_empty());
        assert!(
            verdict
                .text()
                .starts_with("Verdict: nothing acknowledged lost.")
        );
        // The history goes to a file and comes back the same.
        let json = serde_json::to_string(&history).unwrap();
        assert_eq!(serde_json::from_str::<History>(&json).unwrap(), history);
    }

    #[test]
    fn a_201_whose_order_is_nowhere_is_lost() {
        let mut history = sound();
        history.orders.push(created(1, 150, 3));
        assert!(!history.settled());
        let verdict = judge(&history);
        assert!(!verdict.ok);
        assert_eq!(
            verdict.lost,
            vec![Lost {
                ticket: 3,
                server: "http://b".into(),
                status: None,
                was_collected: false
            }]
        );
        let text = verdict.text();
        assert!(text.starts_with("Verdict: BROKEN"), "{text}");
        assert!(
            text.contains(
                "acknowledged but lost: 1\n    order 3 (from http://b) is unknown to every server"
            ),
            "{text}"
        );
        // Left TAKEN, or collected yet READY again: lost as well.
        history.fates.insert(3, fate(Status::Taken, 3));
        history.fates.insert(1, fate(Status::Ready, 1));
        let lost: Vec<_> = judge(&history)
            .lost
            .iter()
            .map(|l| (l.ticket, l.status, l.was_collected))
            .collect();
        assert_eq!(
            lost,
            vec![
                (1, Some(Status::Ready), true),
                (3, Some(Status::Taken), false)
            ]
        );
    }

    #[test]
    fn a_ticket_twice_or_holding_another_order_is_caught() {
        let mut history = sound();
        history.orders.push(created(0, 300, 2));
        history.fates.insert(
            1,
            Fate {
                status: Some(Status::Collected),
                content: Some("someone else's".into()),
            },
        );
        let verdict = judge(&history);
        assert_eq!(verdict.duplicated, vec![2]);
        assert_eq!(verdict.mixed_up, vec![1]);
        assert!(!verdict.ok);
    }

    #[test]
    fn a_board_that_misses_a_change_goes_backward_or_disagrees_is_caught() {
        // Server 2's board misses version 5.
        let mut history = sound();
        history
            .boards
            .retain(|e| !(e.server == 1 && e.version == 5));
        let verdict = judge(&history);
        assert_eq!(verdict.gaps.len(), 1, "{:?}", verdict.gaps);
        assert!(
            verdict.gaps[0].contains("missed 1 change(s)"),
            "{:?}",
            verdict.gaps
        );
        // A reconnect starts afresh with a whole board: nothing missed.
        let mut history = sound();
        history
            .boards
            .retain(|e| !(e.server == 1 && (4..=5).contains(&e.version)));
        let at = history
            .boards
            .iter()
            .position(|e| e.server == 1 && e.version == 6)
            .unwrap();
        let mut resync = event(1, 2, 5, None);
        resync.board = Some(vec![(1, Status::Ready), (2, Status::Preparing)]);
        history.boards.insert(at, resync);
        for e in history
            .boards
            .iter_mut()
            .skip(at + 1)
            .filter(|e| e.server == 1)
        {
            e.connection = 2;
        }
        assert!(judge(&history).ok, "{}", judge(&history).text());
        // One version, two changes.
        let mut history = sound();
        let last = history.boards.len() - 1;
        history.boards[last].change = Some((2, Status::Collected));
        let verdict = judge(&history);
        assert_eq!(
            verdict.disagreements.len(),
            1,
            "{:?}",
            verdict.disagreements
        );
        // Backward on a board, and READY at two versions.
        let mut history = sound();
        for server in 0..2 {
            history
                .boards
                .push(event(server, 1, 8, Some((2, Status::Preparing))));
            history
                .boards
                .push(event(server, 1, 9, Some((2, Status::Ready))));
        }
        let verdict = judge(&history);
        assert_eq!(verdict.ready_twice, vec![2]);
        assert!(
            verdict
                .backward
                .iter()
                .any(|b| b.contains("order 2 went backward")),
            "{:?}",
            verdict.backward
        );
        // A board that connected and saw no change after its whole board.
        let mut history = sound();
        history.boards.push(event(1, 2, 7, None));
        assert!(judge(&history).ok, "{}", judge(&history).text());
        // A version that does not increase on a connection.
        let mut history = sound();
        history
            .boards
            .push(event(0, 1, 7, Some((1, Status::Collected))));
        assert!(
            judge(&history)
                .gaps
                .iter()
                .any(|g| g.contains("version 7 after 7"))
        );
    }

    #[test]
    fn a_500_or_a_hang_is_caught_and_unreachable_is_a_window() {
        let mut history = sound();
        history.orders.push(Ordered {
            server: 0,
            sent_ms: 400,
            took_ms: 1,
            answer: Answer::Unreachable,
        });
        history.orders.push(Ordered {
            server: 0,
            sent_ms: 450,
            took_ms: 1,
            answer: Answer::Dropped,
        });
        let verdict = judge(&history);
        assert!(verdict.ok, "{}", verdict.text());
        assert_eq!(verdict.servers[0].windows.len(), 1);
        assert_eq!(verdict.servers[0].windows[0].answers.len(), 2);
        history.orders.push(Ordered {
            server: 0,
            sent_ms: 500,
            took_ms: 2,
            answer: Answer::Broken {
                status: 500,
                detail: "Internal Server Error".into(),
            },
        });
        history.orders.push(Ordered {
            server: 1,
            sent_ms: 500,
            took_ms: 30_000,
            answer: Answer::TimedOut,
        });
        let verdict = judge(&history);
        assert_eq!((verdict.broken.len(), verdict.hangs.len()), (1, 1));
        assert!(!verdict.ok);
        assert_eq!(verdict.servers[0].windows[0].to_ms, 502);
    }

    #[test]
    fn forward_refuses_a_step_back() {
        let mut forward = Forward::default();
        forward.see(1, "PREPARING").unwrap();
        forward.see(1, "READY").unwrap();
        assert!(forward.see(1, "TAKEN").is_err());
        assert!(forward.see(2, "COOKED").is_err());
        assert_eq!(forward.furthest()[&1], 2);
    }
}
