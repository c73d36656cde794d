//! A process's crew: its kitchen workers as lanes (the order each is
//! preparing and since when, how many it finished and gave back) and the
//! notable moments they had, in words. The crew owns nothing but that
//! picture; it sends it as a [`Report`] to whoever listens (the server's
//! own [`View`](super::View), the broker's `fastfood.kitchen` exchange) as
//! soon as something changed, at most [`REPORT_EVERY`] apart, and at least
//! every [`HEARTBEAT`] even when nothing did: a process whose reports stop
//! has stopped answering.
//!
//! A report that leaves while the broker is down, or before a server's own
//! queue is bound again after a broker restart, is lost. So a moment is not
//! sent once: every report carries the moments of the last
//! [`MOMENTS_REPEATED`] (the newest [`MOMENTS_KEPT`] at most), numbered, and
//! a view takes each number once. A moment reaches the page once reports go
//! through again, if that is within [`MOMENTS_REPEATED`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::order::{Ticket, Timestamp};

/// A report at least this often, changed or not: the heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// Reports at most this often, however busy the kitchen.
pub const REPORT_EVERY: Duration = Duration::from_millis(200);
/// Moments kept for the reports; older ones are dropped (a kitchen in
/// trouble repeats itself).
pub const MOMENTS_KEPT: usize = 64;
/// How long a moment is repeated in every report: longer than a broker
/// restart and the reconnections after it take.
pub const MOMENTS_REPEATED: Duration = Duration::from_secs(60);

/// What a process tells about its kitchen: sent as JSON on the broker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// A random number per process run: pids repeat (across hosts,
    /// containers, restarts), this does not.
    pub instance: u64,
    pub pid: u32,
    /// `server` (`fastfood serve`) or `worker` (`fastfood worker`).
    pub process: String,
    pub sent_at: Timestamp,
    pub lanes: Vec<Lane>,
    /// The moments of the last [`MOMENTS_REPEATED`], oldest first: a report
    /// carries the ones earlier reports carried too.
    pub moments: Vec<Moment>,
    /// The number of the first of `moments`; the others follow one by one.
    /// A view takes a number once. 0: not numbered (taken as new).
    #[serde(default)]
    pub first_moment: u64,
    /// The last report of a process that is shutting down.
    #[serde(default)]
    pub stopping: bool,
}

/// One worker, as its lane on `/kitchen` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lane {
    /// `worker 2 (pid 4121)`: the name the store records on its orders.
    pub name: String,
    /// The order it is preparing, if any.
    pub order: Option<Ticket>,
    /// Since when.
    pub since: Option<Timestamp>,
    /// That order's delivery: 1, or more when it was taken again.
    pub delivery: u32,
    /// Orders it cooked whose READY is still being recorded (not yet
    /// acknowledged to the queue).
    pub finishing: u32,
    /// Orders it made READY.
    pub done: u64,
    /// Orders it gave back to the queue.
    pub gave_back: u64,
}

/// A notable moment, in words.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Moment {
    pub at: Timestamp,
    pub text: String,
}

impl Moment {
    pub fn now(text: String) -> Moment {
        Moment {
            at: Timestamp::now(),
            text,
        }
    }
}

/// The workers of this process; cheap to clone.
#[derive(Clone)]
pub struct Crew {
    inner: Arc<Inner>,
}

struct Inner {
    instance: u64,
    process: &'static str,
    state: Mutex<CrewState>,
    changed: Notify,
}

#[derive(Default)]
struct CrewState {
    lanes: Vec<Lane>,
    /// The moments still repeated, and when each happened.
    moments: VecDeque<(Instant, Moment)>,
    /// Moments told so far: the number of the last one (the first is 1).
    told: u64,
}

/// One worker's lane: what the worker tells the crew.
#[derive(Clone)]
pub struct Hand {
    crew: Crew,
    index: usize,
    name: Arc<str>,
}

impl Crew {
    /// An empty crew for this process; `process` is `server` or `worker`.
    pub fn new(process: &'static str) -> Crew {
        Crew {
            inner: Arc::new(Inner {
                instance: fastrand::u64(..),
                process,
                state: Mutex::new(CrewState::default()),
                changed: Notify::new(),
            }),
        }
    }

    /// This process run's instance number (see [`Report::instance`]).
    pub fn instance(&self) -> u64 {
        self.inner.instance
    }

    /// A lane for worker number `n` of this process.
    pub fn hire(&self, n: usize) -> Hand {
        let name: Arc<str> = format!("worker {n} (pid {})", std::process::id()).into();
        let mut state = self.inner.state.lock();
        state.lanes.push(Lane {
            name: name.to_string(),
            order: None,
            since: None,
            delivery: 0,
            finishing: 0,
            done: 0,
            gave_back: 0,
        });
        let index = state.lanes.len() - 1;
        drop(state);
        self.inner.changed.notify_one();
        Hand {
            crew: self.clone(),
            index,
            name,
        }
    }

    /// The crew now, with the moments of the last [`MOMENTS_REPEATED`].
    pub fn report(&self, stopping: bool) -> Report {
        let mut state = self.inner.state.lock();
        let now = Instant::now();
        while state
            .moments
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= MOMENTS_REPEATED)
        {
            state.moments.pop_front();
        }
        Report {
            instance: self.inner.instance,
            pid: std::process::id(),
            process: self.inner.process.to_owned(),
            sent_at: Timestamp::now(),
            lanes: state.lanes.clone(),
            moments: state.moments.iter().map(|(_, m)| m.clone()).collect(),
            first_moment: state.told + 1 - state.moments.len() as u64,
            stopping,
        }
    }

    /// Sends a report to `send` whenever the crew changed (at most every
    /// [`REPORT_EVERY`]) and at least every [`HEARTBEAT`], until `done`;
    /// returns the last report, saying it stops, for the caller to deliver
    /// (a process shutting down waits for it to leave).
    pub async fn send_reports(self, send: impl Fn(Report), done: CancellationToken) -> Report {
        loop {
            send(self.report(false));
            tokio::select! {
                _ = done.cancelled() => break,
                _ = tokio::time::sleep(REPORT_EVERY) => {}
            }
            tokio::select! {
                _ = done.cancelled() => break,
                _ = self.inner.changed.notified() => {}
                _ = tokio::time::sleep(HEARTBEAT - REPORT_EVERY) => {}
            }
        }
        self.report(true)
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut Lane) -> Option<String>) {
        if let Some(text) = self.record(index, change) {
            tracing::info!("{text}");
        }
    }

    /// Changes lane `index` and keeps the moment it returns; the moment,
    /// for the caller to log.
    fn record(
        &self,
        index: usize,
        change: impl FnOnce(&mut Lane) -> Option<String>,
    ) -> Option<String> {
        let mut state = self.inner.state.lock();
        let note = change(&mut state.lanes[index]);
        if let Some(text) = &note {
            if state.moments.len() == MOMENTS_KEPT {
                state.moments.pop_front();
            }
            state.told += 1;
            state
                .moments
                .push_back((Instant::now(), Moment::now(text.clone())));
        }
        drop(state);
        self.inner.changed.notify_one();
        note
    }
}

impl Hand {
    /// `worker 2 (pid 4121)`.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// It started preparing `ticket`, delivered for the `delivery`th time.
    pub fn preparing(&self, ticket: Ticket, delivery: u32, note: Option<String>) {
        self.crew.update(self.index, |lane| {
            lane.order = Some(ticket);
            lane.since = Some(Timestamp::now());
            lane.delivery = delivery;
            note
        });
    }

    /// It cooked its order and goes on while READY is recorded.
    pub fn cooked(&self) {
        self.crew.update(self.index, |lane| {
            lane.order = None;
            lane.since = None;
            lane.finishing += 1;
            None
        });
    }

    /// A cooked order is settled: made READY (`ready`), given back
    /// (`gave_back`), or found done by someone else.
    pub fn finished(&self, ready: bool, gave_back: bool, note: Option<String>) {
        self.crew.update(self.index, |lane| {
            lane.finishing = lane.finishing.saturating_sub(1);
            lane.done += u64::from(ready);
            lane.gave_back += u64::from(gave_back);
            note
        });
    }

    /// It put an order down without cooking it: skipped, or given back
    /// (`gave_back`). `note` says what happened, for the log.
    pub fn put_down(&self, gave_back: bool, note: Option<String>) {
        self.crew.update(self.index, |lane| {
            lane.order = None;
            lane.since = None;
            lane.gave_back += u64::from(gave_back);
            note
        });
    }

    /// A moment worth telling that changes nothing in the lane.
    pub fn note(&self, text: String) {
        self.crew.update(self.index, |_| Some(text));
    }

    /// A moment that needs a person: told like [`Hand::note`], and logged
    /// as an error.
    pub fn alarm(&self, text: String) {
        if let Some(text) = self.crew.record(self.index, |_| Some(text)) {
            tracing::error!("{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_carries_the_lanes_and_each_moment_once() {
        let crew = Crew::new("worker");
        let one = crew.hire(1);
        let two = crew.hire(2);
        one.preparing(7, 1, None);
        two.preparing(8, 2, Some("order 8 taken again".into()));
        two.put_down(true, Some("order 8 given back".into()));
        let report = crew.report(false);
        assert_eq!(report.lanes.len(), 2);
        assert_eq!(report.lanes[0].order, Some(7));
        assert_eq!(
            (report.lanes[1].order, report.lanes[1].gave_back),
            (None, 1)
        );
        let texts: Vec<_> = report.moments.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["order 8 taken again", "order 8 given back"]);
        assert_eq!(report.first_moment, 1);
        // The next report carries them again, numbered the same, and the
        // new one after them.
        one.note("order 7 is big".into());
        let again = crew.report(false);
        assert_eq!(again.moments.len(), 3);
        assert_eq!(again.first_moment, 1);
        assert_eq!(again.moments[2].text, "order 7 is big");
        one.cooked();
        one.finished(true, false, None);
        let lane = &crew.report(true).lanes[0];
        assert_eq!((lane.order, lane.finishing, lane.done), (None, 0, 1));
        assert!(one.name().starts_with("worker 1 (pid "));
    }
}
