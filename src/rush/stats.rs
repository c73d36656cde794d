//! What a rush records while it runs: latency histograms (microseconds,
//! hdrhistogram, three significant digits), counts, and a timeline of 100 ms
//! buckets for the chart. Customers record into one shared [`Stats`]; the
//! gauges are atomics so the progress line and the timeline can read them
//! without a lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::order::Ticket;

/// The width of one timeline bucket.
pub const BUCKET: Duration = Duration::from_millis(100);
/// Buckets kept (an hour); later samples land in the last one.
const MAX_BUCKETS: usize = 36_000;
/// The longest latency told apart: an hour, in microseconds.
const HIGHEST: u64 = 3_600_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST, 3).expect("valid histogram bounds")
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// A time since the start in microseconds (0 stays 0).
fn micros_since(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One slice of the rush.
#[derive(Debug, Default, Clone, Copy)]
pub struct Bucket {
    /// Customers who arrived (were due) in this slice, turned away or not.
    pub arrived: u64,
    /// Orders that got a ticket in this slice.
    pub ordered: u64,
    /// Orders that became READY in this slice.
    pub ready: u64,
    /// Customers waiting for a ticket (their `/order` not yet answered), at the end of the slice.
    pub in_line: u64,
    /// Microseconds customers spent waiting for a ticket within the slice,
    /// all together: divided by the slice's width, the line's average over
    /// it. A request of a few ms is seen in it as the few ms it took, where
    /// the gauge above catches it whole, or not at all.
    pub in_line_us: u64,
    /// Orders with a ticket, not yet READY, at the end of the slice.
    pub cooking: u64,
    /// Sum, count and largest of arrival → READY for orders READY in this slice (µs).
    pub wait_sum: u64,
    pub wait_count: u64,
    pub wait_max: u64,
}

/// The customer who waited longest: their ticket (none if they never got
/// one), how long (µs), and whether their food was READY in the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Longest {
    pub ticket: Option<Ticket>,
    pub wait_us: u64,
    pub served: bool,
}

/// Everything but the gauges, behind one lock.
pub struct Recorder {
    /// Scheduled arrival (open loop) or send (closed loop) → `201`.
    pub order_latency: Histogram<u64>,
    /// `POST /take` sent → `200`.
    pub collect_latency: Histogram<u64>,
    /// Ticket in hand → READY seen on the board; a customer whose food was
    /// not READY when the rush ended counts with the time waited until then.
    pub ticket_to_ready: Histogram<u64>,
    /// Arrival → READY: the customer's whole wait for food, for every
    /// customer who got in line; the unserved with their wait until the end.
    pub wait: Histogram<u64>,
    /// Arrival → the end, of the customers never served (for the chart).
    pub unserved_wait: Histogram<u64>,
    /// The customer who waited longest, served or not.
    pub longest: Option<Longest>,
    pub arrived: u64,
    /// Arrivals turned away because too many customers were inside already.
    pub turned_away: u64,
    pub ordered: u64,
    pub ready: u64,
    pub collected: u64,
    /// Customers in line whose food was not READY when the rush ended
    /// (with a ticket or still waiting for one).
    pub unserved: u64,
    /// Of those, the ones still waiting for their ticket.
    pub unserved_in_line: u64,
    /// Failed orders by reason (`503`, `connection`, …).
    pub order_errors: BTreeMap<String, u64>,
    pub take_errors: BTreeMap<String, u64>,
    /// When (since the start) the last ticket and the last READY came.
    pub last_order: Duration,
    pub last_ready: Duration,
    pub timeline: Vec<Bucket>,
    /// The last slice the gauges were written into.
    last_sampled: Option<usize>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            order_latency: histogram(),
            collect_latency: histogram(),
            ticket_to_ready: histogram(),
            wait: histogram(),
            unserved_wait: histogram(),
            longest: None,
            arrived: 0,
            turned_away: 0,
            ordered: 0,
            ready: 0,
            collected: 0,
            unserved: 0,
            unserved_in_line: 0,
            order_errors: BTreeMap::new(),
            take_errors: BTreeMap::new(),
            last_order: Duration::ZERO,
            last_ready: Duration::ZERO,
            timeline: Vec::new(),
            last_sampled: None,
        }
    }
}

impl Recorder {
    pub fn bucket(&mut self, since_start: Duration) -> &mut Bucket {
        let i = Self::index(since_start);
        if self.timeline.len() <= i {
            self.timeline.resize(i + 1, Bucket::default());
        }
        &mut self.timeline[i]
    }

    fn index(since_start: Duration) -> usize {
        ((since_start.as_millis() / BUCKET.as_millis()) as usize).min(MAX_BUCKETS - 1)
    }

    /// Writes the gauges into the slice of `since_start`, and into any
    /// slice since the last one written (a tick that came late, on a busy
    /// machine): a gap reads as the line it was, not as an empty one.
    pub fn gauges(&mut self, since_start: Duration, in_line: u64, cooking: u64) {
        let i = Self::index(since_start);
        self.bucket(since_start);
        let from = self.last_sampled.map_or(0, |last| (last + 1).min(i));
        for bucket in &mut self.timeline[from..=i] {
            bucket.in_line = in_line;
            bucket.cooking = cooking;
        }
        self.last_sampled = Some(i);
    }

    /// A customer waited for their ticket from `from` to `to` (since the
    /// start): spread over the slices it spans.
    pub fn waited_in_line(&mut self, from: Duration, to: Duration) {
        let width = BUCKET.as_micros() as u64;
        let (mut from, to) = (micros_since(from), micros_since(to));
        while from < to {
            let i = ((from / width) as usize).min(MAX_BUCKETS - 1);
            let slice_end = if i == MAX_BUCKETS - 1 {
                to
            } else {
                ((from / width) + 1) * width
            };
            let until = slice_end.min(to);
            self.bucket(Duration::from_micros(from)).in_line_us += until - from;
            from = until;
        }
    }

    pub fn ordered(&mut self, at: Duration, latency: Duration) {
        self.ordered += 1;
        self.last_order = self.last_order.max(at);
        self.order_latency.saturating_record(micros(latency));
        self.bucket(at).ordered += 1;
    }

    pub fn ready(
        &mut self,
        ticket: Ticket,
        at: Duration,
        ticket_to_ready: Duration,
        wait: Duration,
    ) {
        let wait = micros(wait);
        self.ready += 1;
        self.last_ready = self.last_ready.max(at);
        self.ticket_to_ready
            .saturating_record(micros(ticket_to_ready));
        self.wait.saturating_record(wait);
        self.longest_candidate(Some(ticket), wait, true);
        let bucket = self.bucket(at);
        bucket.ready += 1;
        bucket.wait_sum += wait;
        bucket.wait_count += 1;
        bucket.wait_max = bucket.wait_max.max(wait);
    }

    /// A customer still waiting when the rush ended: `wait` since arrival,
    /// and, if they had a ticket, how long since they got it.
    pub fn unserved(&mut self, ticket: Option<(Ticket, Duration)>, wait: Duration) {
        let wait = micros(wait);
        self.unserved += 1;
        self.wait.saturating_record(wait);
        self.unserved_wait.saturating_record(wait);
        match ticket {
            Some((_, since_ticket)) => self.ticket_to_ready.saturating_record(micros(since_ticket)),
            None => self.unserved_in_line += 1,
        }
        self.longest_candidate(ticket.map(|(t, _)| t), wait, false);
    }

    fn longest_candidate(&mut self, ticket: Option<Ticket>, wait_us: u64, served: bool) {
        if self.longest.is_none_or(|l| wait_us > l.wait_us) {
            self.longest = Some(Longest {
                ticket,
                wait_us,
                served,
            });
        }
    }
}

/// The two requests a customer makes, for counting failures apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `POST /order`.
    Order,
    /// `POST /take`: collecting a READY order.
    Collect,
}

/// Shared by every customer of one rush.
pub struct Stats {
    pub start: Instant,
    pub recorder: Mutex<Recorder>,
    pub in_line: AtomicU64,
    pub cooking: AtomicU64,
    /// Customers inside: arrived, not yet done (collected, gave up, or failed).
    pub inside: AtomicU64,
}

impl Stats {
    pub fn new(start: Instant) -> Stats {
        Stats {
            start,
            recorder: Mutex::default(),
            in_line: AtomicU64::new(0),
            cooking: AtomicU64::new(0),
            inside: AtomicU64::new(0),
        }
    }

    pub fn lock(&self) -> parking_lot::MutexGuard<'_, Recorder> {
        self.recorder.lock()
    }

    pub fn since_start(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.start)
    }

    /// Writes the gauges into the bucket of `at`.
    pub fn sample(&self, at: Instant) {
        let in_line = self.in_line.load(Ordering::Relaxed);
        let cooking = self.cooking.load(Ordering::Relaxed);
        let since = self.since_start(at);
        self.lock().gauges(since, in_line, cooking);
    }

    /// Counts a failed request of `kind`, by reason.
    pub fn error(&self, kind: Request, reason: String) {
        let mut recorder = self.lock();
        let map = match kind {
            Request::Collect => &mut recorder.take_errors,
            Request::Order => &mut recorder.order_errors,
        };
        *map.entry(reason).or_default() += 1;
    }
}

/// A customer in line for a ticket: up on the `in_line` gauge while it
/// lives, and its time in line recorded into the timeline when dropped
/// (answered, failed, or left as the rush ended).
pub struct InLine<'a> {
    stats: &'a Stats,
    since: Instant,
    _gauge: Gauge<'a>,
}

impl<'a> InLine<'a> {
    pub fn join(stats: &'a Stats) -> InLine<'a> {
        InLine {
            stats,
            since: Instant::now(),
            _gauge: Gauge::up(&stats.in_line),
        }
    }
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        let (from, to) = (
            self.stats.since_start(self.since),
            self.stats.since_start(Instant::now()),
        );
        self.stats.lock().waited_in_line(from, to);
    }
}

/// Adds one to a gauge for as long as it lives.
pub struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    pub fn up(gauge: &'a AtomicU64) -> Gauge<'a> {
        gauge.fetch_add(1, Ordering::Relaxed);
        Gauge(gauge)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_tick_fills_the_slices_it_missed() {
        let mut r = Recorder::default();
        r.gauges(Duration::from_millis(50), 1, 2);
        r.gauges(Duration::from_millis(450), 7, 9);
        let gauges: Vec<(u64, u64)> = r.timeline.iter().map(|b| (b.in_line, b.cooking)).collect();
        assert_eq!(gauges, [(1, 2), (7, 9), (7, 9), (7, 9), (7, 9)]);
    }

    #[test]
    fn time_in_line_is_spread_over_the_slices_it_spans() {
        let mut r = Recorder::default();
        let ms = Duration::from_millis;
        // 8 ms within slice 2; 150 ms from 50 ms: 50 in slice 0, 100 in 1.
        r.waited_in_line(ms(210), ms(218));
        r.waited_in_line(ms(50), ms(200));
        let us: Vec<u64> = r.timeline.iter().map(|b| b.in_line_us).collect();
        assert_eq!(us, [50_000, 100_000, 8_000]);
    }
}
