//! The kitchen as `/kitchen` shows it: the queue (orders waiting, orders a
//! worker holds, what goes next), one lane per worker of every process, and
//! a running log of the notable moments, in words. The view owns that
//! picture and its fan-out to the pages watching it.
//!
//! It learns about workers from their crews' [`Report`]s: this server's
//! own crew hands them over directly; the crews of other processes (worker
//! processes, other servers) publish theirs on the broker's
//! `fastfood.kitchen` exchange, which the app feeds to [`View::heard`]. A
//! crew reports at least every second, so a process silent for
//! [`SILENCE`] has stopped answering (killed, frozen, cut off): its lanes
//! show as gone, and the log says what became of the order each held.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Lane, Moment, Report};
use crate::order::{Ticket, Timestamp};
use crate::queue::Queue;
use crate::store::{Lookup, Store};

/// A process whose crew has not reported for this long has stopped answering.
pub const SILENCE: Duration = Duration::from_secs(3);
/// How long the lanes of a process that stopped stay on the page, as gone.
const GONE_SHOWN: Duration = Duration::from_secs(30);
/// How often the view looks for silent processes and counts the queue.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// Moments the log keeps.
const LOG_KEPT: usize = 100;
/// Orders of the line shown.
const NEXT_SHOWN: usize = 12;
/// The most of a report from another process that is taken: lanes, moments,
/// and characters per moment. Anyone on the broker can publish one; no
/// report makes the view grow without bound.
const LANES_TAKEN: usize = 256;
const MOMENTS_TAKEN: usize = 64;
const MOMENT_CHARS: usize = 300;
const NAME_CHARS: usize = 80;
/// Forgotten processes whose last moment taken is remembered.
const FORGOTTEN_KEPT: usize = 256;

/// The kitchen now, as `GET /kitchen/now` and `/kitchen/updates` send it.
#[derive(Clone, Debug, Serialize)]
pub struct Now {
    /// The server's clock, so a page can tell how long ago `since` was.
    pub at: Timestamp,
    pub queue: QueueNow,
    pub workers: Vec<LaneNow>,
    /// The notable moments, oldest first.
    pub log: Vec<Moment>,
}

#[derive(Clone, Debug, Serialize)]
pub struct QueueNow {
    /// `in-process` or `rabbitmq`.
    pub kind: &'static str,
    /// Orders waiting for a worker; `null` when the queue could not tell.
    pub waiting: Option<usize>,
    /// Orders handed to a worker and not yet acknowledged: being prepared,
    /// or cooked with their READY being recorded.
    pub in_flight: usize,
    /// What goes next, first first.
    pub next: Vec<Ticket>,
    /// Where `next` comes from: `queue` (the queue itself) or `store` (the
    /// unfinished orders in the store, in the order a broker hands them
    /// out, since a broker's queue cannot be read without taking them).
    pub next_from: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct LaneNow {
    #[serde(flatten)]
    pub lane: Lane,
    pub pid: u32,
    /// `server` or `worker`: the kind of process it runs in.
    pub process: String,
    /// In the process that serves this page.
    pub here: bool,
    /// `preparing`, `finishing` (its READY being recorded), `idle`, or
    /// `gone` (its process stopped answering).
    pub state: &'static str,
}

pub struct View {
    state: Mutex<ViewState>,
    /// Bumped on every change worth showing; the pages wait on it.
    changed: watch::Sender<u64>,
    queue: Queue,
    store: Store,
    /// This process's crew's instance: its reports come directly, so the
    /// broker's copy of them is ignored.
    here: u64,
}

#[derive(Default)]
struct ViewState {
    processes: Vec<Seen>,
    log: VecDeque<Moment>,
    waiting: Option<usize>,
    /// The last moment taken from each process forgotten lately (by
    /// instance): one heard again after a long outage repeats moments the
    /// log already has. At most [`FORGOTTEN_KEPT`].
    forgotten: VecDeque<(u64, u64)>,
}

/// A process heard from.
struct Seen {
    instance: u64,
    pid: u32,
    process: String,
    lanes: Vec<Lane>,
    heard: Instant,
    /// When it was found silent, or said it stopped.
    gone: Option<Instant>,
    /// The number of the last of its moments taken.
    last_moment: u64,
}

impl View {
    /// A view of a kitchen whose own crew is `here`.
    pub fn new(queue: Queue, store: Store, here: u64) -> Arc<View> {
        Arc::new(View {
            state: Mutex::new(ViewState::default()),
            changed: watch::channel(0).0,
            queue,
            store,
            here,
        })
    }

    /// A report from this process's crew.
    pub fn heard_here(&self, report: Report) {
        self.take(report);
    }

    /// A report from any process, as the broker carries it (this process's
    /// own come directly, and are skipped here).
    pub fn heard(&self, mut report: Report) {
        if report.instance == self.here {
            return;
        }
        report.lanes.truncate(LANES_TAKEN);
        // The newest: a report repeats the older ones, which came before.
        let extra = report.moments.len().saturating_sub(MOMENTS_TAKEN);
        report.moments.drain(..extra);
        if report.first_moment > 0 {
            report.first_moment = report.first_moment.saturating_add(extra as u64);
        }
        for moment in &mut report.moments {
            cut(&mut moment.text, MOMENT_CHARS);
        }
        for lane in &mut report.lanes {
            cut(&mut lane.name, NAME_CHARS);
        }
        cut(&mut report.process, NAME_CHARS);
        self.take(report);
    }

    fn take(&self, mut report: Report) {
        let mut state = self.state.lock();
        let mut changed = false;
        let at = state
            .processes
            .iter()
            .position(|p| p.instance == report.instance);
        let seen = match at {
            Some(i) => &mut state.processes[i],
            None => {
                changed = true;
                let instance = report.instance;
                let remembered = state.forgotten.iter().position(|(i, _)| *i == instance);
                let last_moment = remembered
                    .and_then(|at| state.forgotten.remove(at))
                    .map_or(0, |(_, last)| last);
                state.processes.push(Seen {
                    instance,
                    pid: report.pid,
                    process: report.process.clone(),
                    lanes: Vec::new(),
                    heard: Instant::now(),
                    gone: None,
                    last_moment,
                });
                state.processes.last_mut().expect("just pushed")
            }
        };
        // Each numbered moment once: reports repeat them, in case one was lost.
        if report.first_moment > 0 {
            let (first, len) = (report.first_moment, report.moments.len() as u64);
            let taken_before = (seen.last_moment.saturating_add(1))
                .saturating_sub(first)
                .min(len);
            report.moments.drain(..taken_before as usize);
            if len > taken_before {
                seen.last_moment = first.saturating_add(len - 1);
            }
        }
        changed |= !report.moments.is_empty();
        let mut news = Vec::new();
        for lane in &report.lanes {
            if !seen.lanes.iter().any(|l| l.name == lane.name) && !report.stopping {
                news.push(format!("{} joined the kitchen", lane.name));
            }
        }
        // A process without workers (a server with --workers 0) has nothing
        // on the page, and nothing to say in the log either.
        let cooks = !seen.lanes.is_empty() || !report.lanes.is_empty();
        if seen.gone.is_some() && !report.stopping {
            if cooks {
                news.push(format!(
                    "the {} process pid {} answers again",
                    seen.process, seen.pid
                ));
            }
            seen.gone = None;
        }
        if report.stopping && seen.gone.is_none() {
            if cooks {
                news.push(format!(
                    "the {} process pid {} shut down",
                    seen.process, seen.pid
                ));
            }
            seen.gone = Some(Instant::now());
        }
        changed |= seen.lanes != report.lanes || !news.is_empty();
        seen.lanes = report.lanes;
        seen.heard = Instant::now();
        // Its moments happened before anything said of it on hearing them.
        let moments = report
            .moments
            .into_iter()
            .chain(news.into_iter().map(Moment::now));
        for moment in moments {
            state.note(moment);
        }
        drop(state);
        if changed {
            self.changed.send_modify(|v| *v += 1);
        }
    }

    /// Looks for silent processes and counts the queue, until `shutdown`.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(LOOK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let waiting = self.queue.count_waiting().await;
            let mut changed = self.look_for_silence(Instant::now());
            let mut state = self.state.lock();
            changed |= state.waiting != waiting;
            state.waiting = waiting;
            drop(state);
            if changed {
                self.changed.send_modify(|v| *v += 1);
            }
        }
    }

    /// Marks the processes silent for [`SILENCE`] by `now` as gone, saying
    /// what became of their orders, and forgets those gone for long.
    fn look_for_silence(&self, now: Instant) -> bool {
        let mut state = self.state.lock();
        let mut notes = Vec::new();
        for seen in &mut state.processes {
            if seen.gone.is_some() || now.saturating_duration_since(seen.heard) < SILENCE {
                continue;
            }
            seen.gone = Some(now);
            for lane in &seen.lanes {
                notes.push(match lane.order {
                    Some(ticket) => format!(
                        "{} stopped answering; order {ticket} {}",
                        lane.name,
                        self.fate(ticket, lane)
                    ),
                    None => format!("{} stopped answering", lane.name),
                });
            }
        }
        let before = state.processes.len();
        let (kept, left): (Vec<Seen>, Vec<Seen>) = std::mem::take(&mut state.processes)
            .into_iter()
            .partition(|p| {
                p.gone
                    .is_none_or(|at| now.saturating_duration_since(at) < GONE_SHOWN)
            });
        state.processes = kept;
        for p in left {
            if state.forgotten.len() == FORGOTTEN_KEPT {
                state.forgotten.pop_front();
            }
            state.forgotten.push_back((p.instance, p.last_moment));
        }
        let changed = !notes.is_empty() || state.processes.len() != before;
        for text in notes {
            state.note(Moment::now(text));
        }
        changed
    }

    /// Whether a worker that stopped answering still holds `ticket`: the
    /// store shows it PREPARING at the delivery the lane had, so nobody has
    /// taken it again or finished it.
    fn still_holds(&self, ticket: Ticket, lane: &Lane) -> bool {
        matches!(
            self.store.lookup(ticket),
            Lookup::Live(order) if order.status == crate::order::Status::Preparing
                && order.deliveries == lane.delivery
        )
    }

    /// What became of the order a worker held when it stopped answering.
    fn fate(&self, ticket: Ticket, lane: &Lane) -> String {
        match self.store.lookup(ticket) {
            Lookup::Live(order) if order.deliveries > lane.delivery => format!(
                "already went back to the front of the line, and on to {}",
                order.worker.as_deref().unwrap_or("another worker")
            ),
            Lookup::Live(order) if order.status.rank() >= crate::order::Status::Ready.rank() => {
                format!("is {}: it was finished", order.status)
            }
            Lookup::Collected => "was finished and collected".to_owned(),
            _ if self.queue.is_durable() => {
                "goes back to the front of the line as soon as RabbitMQ sees the connection gone"
                    .to_owned()
            }
            _ => "goes back to the front of the line".to_owned(),
        }
    }

    /// Waits for changes: the value moves whenever the view changed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The kitchen now.
    pub fn now(&self) -> Now {
        let state = self.state.lock();
        let mut held = HashSet::new();
        let mut in_flight = 0;
        let mut workers = Vec::new();
        for seen in &state.processes {
            for lane in &seen.lanes {
                let state = match (seen.gone, lane.order) {
                    (Some(_), _) => "gone",
                    (None, Some(ticket)) => {
                        held.insert(ticket);
                        "preparing"
                    }
                    (None, None) if lane.finishing > 0 => "finishing",
                    (None, None) => "idle",
                };
                if seen.gone.is_none() {
                    in_flight += usize::from(lane.order.is_some()) + lane.finishing as usize;
                } else if let Some(ticket) = lane.order
                    && self.still_holds(ticket, lane)
                {
                    // Silent, not shut down (that gives its order back
                    // first): frozen or cut off, its order stays with it
                    // until RabbitMQ sees the connection gone (about two
                    // heartbeats) and another worker claims it.
                    held.insert(ticket);
                    in_flight += 1;
                }
                workers.push(LaneNow {
                    lane: lane.clone(),
                    pid: seen.pid,
                    process: seen.process.clone(),
                    here: seen.instance == self.here,
                    state,
                });
            }
        }
        let (next, next_from) = match self.queue.next_up(NEXT_SHOWN) {
            Some(next) => (next, "queue"),
            None => (self.store.line(NEXT_SHOWN, |t| held.contains(&t)), "store"),
        };
        Now {
            at: Timestamp::now(),
            queue: QueueNow {
                kind: if self.queue.is_durable() {
                    "rabbitmq"
                } else {
                    "in-process"
                },
                // The in-process queue knows at once; a broker's is counted
                // every LOOK_EVERY.
                waiting: self.queue.depth().or(state.waiting),
                in_flight,
                next,
                next_from,
            },
            workers,
            log: state.log.iter().cloned().collect(),
        }
    }
}

/// Cuts `text` to its first `chars` characters.
fn cut(text: &mut String, chars: usize) {
    if let Some((at, _)) = text.char_indices().nth(chars) {
        text.truncate(at);
    }
}

impl ViewState {
    fn note(&mut self, moment: Moment) {
        if self.log.len() == LOG_KEPT {
            self.log.pop_front();
        }
        self.log.push_back(moment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::memory::MemoryQueue;

    fn report(instance: u64, order: Option<Ticket>, moments: &[&str], stopping: bool) -> Report {
        Report {
            instance,
            pid: 4121,
            process: "worker".into(),
            sent_at: Timestamp::now(),
            lanes: vec![Lane {
                name: "worker 2 (pid 4121)".into(),
                order,
                since: order.map(|_| Timestamp(std::time::UNIX_EPOCH)),
                delivery: 1,
                finishing: 0,
                done: 3,
                gave_back: 0,
            }],
            moments: moments.iter().map(|t| Moment::now(t.to_string())).collect(),
            first_moment: 0,
            stopping,
        }
    }

    fn texts(view: &View) -> Vec<String> {
        view.now().log.into_iter().map(|m| m.text).collect()
    }

    #[tokio::test]
    async fn silence_makes_a_lane_gone_and_the_log_says_what_became_of_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Vec::new()).unwrap();
        let view = View::new(Queue::new(MemoryQueue::new(10)), store, 1);
        // Its own crew's copy, carried by the broker, is not heard twice.
        view.heard(report(1, None, &["mine"], false));
        assert!(view.now().workers.is_empty());

        let mut changes = view.subscribe();
        view.heard(report(2, Some(57), &["a moment"], false));
        assert!(changes.has_changed().unwrap());
        let now = view.now();
        assert_eq!(now.workers.len(), 1);
        assert_eq!(now.workers[0].state, "preparing");
        assert!(!now.workers[0].here);
        assert_eq!(now.queue.in_flight, 1);
        assert_eq!(
            texts(&view),
            ["a moment", "worker 2 (pid 4121) joined the kitchen"]
        );

        changes.mark_unchanged();
        view.heard(report(2, Some(57), &[], false));
        assert!(
            !changes.has_changed().unwrap(),
            "a heartbeat that says nothing new"
        );

        let later = Instant::now() + SILENCE;
        assert!(view.look_for_silence(later));
        let now = view.now();
        assert_eq!(now.workers[0].state, "gone");
        assert_eq!(now.queue.in_flight, 0, "a gone worker holds nothing");
        assert_eq!(
            texts(&view).last().unwrap(),
            "worker 2 (pid 4121) stopped answering; order 57 goes back to the front of the line"
        );
        assert!(!view.look_for_silence(later), "said once");

        view.heard(report(2, None, &[], false));
        assert_eq!(
            texts(&view).last().unwrap(),
            "the worker process pid 4121 answers again"
        );
        view.heard(report(2, None, &[], true));
        assert_eq!(
            texts(&view).last().unwrap(),
            "the worker process pid 4121 shut down"
        );
        assert_eq!(view.now().workers[0].state, "gone");
        assert!(view.look_for_silence(Instant::now() + GONE_SHOWN));
        assert!(
            view.now().workers.is_empty(),
            "gone lanes leave after a while"
        );
    }

    #[tokio::test]
    async fn a_moment_told_while_reports_were_lost_reaches_the_page_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Vec::new()).unwrap();
        let view = View::new(Queue::new(MemoryQueue::new(10)), store, 1);
        let crew = super::super::Crew::new("worker");
        let hand = crew.hire(1);
        view.heard(crew.report(false));
        let said = "order 4 was delivered again, and recognised as already READY";
        hand.note(said.into());
        // The broker was down: these reports went nowhere.
        let _lost = (crew.report(false), crew.report(false));
        let mut changes = view.subscribe();
        view.heard(crew.report(false));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        view.heard(crew.report(false));
        assert!(
            !changes.has_changed().unwrap(),
            "a repeated moment is no change"
        );
        hand.note("order 5 is next".into());
        view.heard(crew.report(false));
        let log = texts(&view);
        assert_eq!(log.iter().filter(|t| *t == said).count(), 1, "{log:?}");
        assert_eq!(log.last().unwrap(), "order 5 is next", "{log:?}");
        assert_eq!(log.len(), 3, "joined, and each moment once: {log:?}");

        // Silent long enough to be forgotten, then heard again: its
        // repeated moments are not told a second time.
        assert!(view.look_for_silence(Instant::now() + SILENCE));
        assert!(view.look_for_silence(Instant::now() + SILENCE + GONE_SHOWN));
        assert!(view.now().workers.is_empty());
        view.heard(crew.report(false));
        let log = texts(&view);
        assert_eq!(log.iter().filter(|t| *t == said).count(), 1, "{log:?}");
        let joined = format!("worker 1 (pid {}) joined the kitchen", std::process::id());
        assert_eq!(log.last(), Some(&joined), "{log:?}");
    }

    #[tokio::test]
    async fn a_silent_worker_s_order_stays_in_flight_until_another_takes_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Vec::new()).unwrap();
        store.record(57, "fries".into()).await.unwrap();
        store
            .claim(57, "worker 2 (pid 4121)".into(), 5)
            .await
            .unwrap();
        // A claim is answered before it is durable; the state follows.
        let delivered = |n: u32| matches!(store.lookup(57), Lookup::Live(o) if o.deliveries == n);
        while !delivered(1) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let view = View::new(Queue::new(MemoryQueue::new(10)), store.clone(), 1);
        view.heard(report(2, Some(57), &[], false));
        assert!(view.look_for_silence(Instant::now() + SILENCE));
        let now = view.now();
        assert_eq!(now.workers[0].state, "gone");
        assert_eq!(now.queue.in_flight, 1, "frozen, it still holds order 57");
        assert!(!now.queue.next.contains(&57), "nor is 57 next");
        // Taken again (delivery 2): no longer the silent worker's.
        store
            .claim(57, "worker 1 (pid 99)".into(), 5)
            .await
            .unwrap();
        while !delivered(2) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(view.now().queue.in_flight, 0);
    }

    #[tokio::test]
    async fn a_report_from_the_broker_is_taken_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Vec::new()).unwrap();
        let view = View::new(Queue::new(MemoryQueue::new(10)), store, 1);
        let mut huge = report(3, None, &[], false);
        huge.lanes = vec![huge.lanes[0].clone(); 10_000];
        huge.lanes[0].name = "é".repeat(10_000);
        huge.moments = vec![Moment::now("x".repeat(100_000)); 10_000];
        view.heard(huge);
        let now = view.now();
        assert_eq!(now.workers.len(), LANES_TAKEN);
        assert_eq!(now.workers[0].lane.name.chars().count(), NAME_CHARS);
        assert!(now.log.len() <= LOG_KEPT);
        assert!(
            now.log
                .iter()
                .all(|m| m.text.chars().count() <= MOMENT_CHARS)
        );
    }
}
