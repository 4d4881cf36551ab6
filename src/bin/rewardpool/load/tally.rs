//! Counting and timing: one [`Tally`] per runtime thread, merged.
//!
//! A stream worker records into the tally of the thread it runs on (a thread-local handle set
//! when the runtime starts the thread), once per request, never per response: the lock it
//! takes is its own thread's, contended only by the collector's once-per-interval read. The
//! histograms are created with fixed bounds, so recording never allocates.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use hdrhistogram::Histogram;
use tonic::Code;

/// Open loop: a request sent more than this after its due time counts as late.
pub(crate) const LATE: std::time::Duration = std::time::Duration::from_millis(5);

/// Histogram bounds, ns: 1 ns to 100 s (3 significant digits for the whole run).
const HIST_LOW: u64 = 1;
const HIST_HIGH: u64 = 100_000_000_000;
/// The per-interval histograms (the plot's time series) need less precision.
const INTERVAL_DIGITS: u8 = 2;

/// gRPC status codes (0..=16) plus [`UNANSWERED`].
pub(crate) const OUTCOMES: usize = 18;
/// The outcome of a request the stream ended without answering, without an error status
/// (the drain timeout ran out, or the server closed the stream with OK).
pub(crate) const UNANSWERED: usize = 17;

/// What one thread's workers saw.
#[derive(Debug)]
pub(crate) struct Tally {
    /// Latency of every request answered in full, ns.
    pub hist: Histogram<u64>,
    /// The same, since the collector's last read.
    pub interval: Histogram<u64>,
    /// DrawRequests sent.
    pub requests: u64,
    /// Draws those requests asked for.
    pub draws: u64,
    /// DrawResponses received.
    pub responses: u64,
    /// Responses with `error` set (the pool was empty).
    pub empty: u64,
    /// Responses received since the collector's last read.
    pub interval_responses: u64,
    /// Requests by how they ended: gRPC code (`OK` = answered in full) or [`UNANSWERED`].
    pub outcomes: [u64; OUTCOMES],
    /// Streams that failed to open or ended with an error, by gRPC code.
    pub errors: [u64; OUTCOMES],
    /// Open loop: requests sent more than [`LATE`] after their due time.
    pub late: u64,
    /// Open loop: how long after its due time each request was sent, ns (the generator's
    /// own lateness: timer granularity, a busy thread, a full window).
    pub lag: Histogram<u64>,
    /// Open loop: requests due before the end that were never sent.
    pub unsent: u64,
    /// When the last request was answered in full.
    pub last_answer: Option<Instant>,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            hist: histogram(3),
            interval: histogram(INTERVAL_DIGITS),
            requests: 0,
            draws: 0,
            responses: 0,
            empty: 0,
            interval_responses: 0,
            outcomes: [0; OUTCOMES],
            errors: [0; OUTCOMES],
            late: 0,
            lag: histogram(INTERVAL_DIGITS),
            unsent: 0,
            last_answer: None,
        }
    }

    /// Adds `other`'s counts and whole-run histogram (not its interval).
    pub(crate) fn merge(&mut self, other: &Tally) {
        // Same bounds on both sides: `add` cannot fail.
        let _ = self.hist.add(&other.hist);
        self.requests += other.requests;
        self.draws += other.draws;
        self.responses += other.responses;
        self.empty += other.empty;
        for (a, b) in self.outcomes.iter_mut().zip(other.outcomes) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        self.late += other.late;
        let _ = self.lag.add(&other.lag);
        self.unsent += other.unsent;
        self.last_answer = self.last_answer.max(other.last_answer);
    }

    /// Requests answered in full.
    pub(crate) fn ok(&self) -> u64 {
        self.outcomes[0]
    }
}

pub(crate) fn histogram(digits: u8) -> Histogram<u64> {
    // The bounds are constants hdrhistogram accepts.
    Histogram::new_with_bounds(HIST_LOW, HIST_HIGH, digits).unwrap_or_else(|_| unreachable!())
}

/// Every thread's tally of one run.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    tallies: Mutex<Vec<Arc<Mutex<Tally>>>>,
}

thread_local! {
    /// This thread's tally, set by [`Registry::adopt_thread`].
    static MINE: RefCell<Option<Arc<Mutex<Tally>>>> = const { RefCell::new(None) };
}

impl Registry {
    /// Gives the calling thread a tally of its own (the runtime's `on_thread_start`).
    pub(crate) fn adopt_thread(&self) {
        let tally = Arc::new(Mutex::new(Tally::new()));
        lock(&self.tallies).push(Arc::clone(&tally));
        MINE.with(|m| *m.borrow_mut() = Some(tally));
    }

    /// Runs `f` on each tally in turn.
    pub(crate) fn each(&self, mut f: impl FnMut(&mut Tally)) {
        for t in lock(&self.tallies).iter() {
            f(&mut lock(t));
        }
    }

    /// Every tally merged.
    pub(crate) fn total(&self) -> Tally {
        let mut sum = Tally::new();
        self.each(|t| sum.merge(t));
        sum
    }
}

/// Records into this thread's tally (a thread that has none records nothing, which cannot
/// happen for the runtime's threads: each is adopted as it starts).
pub(crate) fn record(f: impl FnOnce(&mut Tally)) {
    MINE.with(|m| {
        if let Some(t) = m.borrow().as_ref() {
            f(&mut lock(t));
        }
    });
}

/// A request answered in full at `now`, `latency_ns` after its send (or due) time.
pub(crate) fn record_ok(now: Instant, latency_ns: u64, responses: u64, empty: u64) {
    record(|t| {
        t.last_answer = t.last_answer.max(Some(now));
        t.hist.saturating_record(latency_ns.max(1));
        t.interval.saturating_record(latency_ns.max(1));
        t.outcomes[0] += 1;
        t.responses += responses;
        t.interval_responses += responses;
        t.empty += empty;
    });
}

/// A request that ended without its full answer (`outcome`: a code or [`UNANSWERED`]).
pub(crate) fn record_failed(outcome: usize, responses: u64, empty: u64) {
    record(|t| {
        if let Some(o) = t.outcomes.get_mut(outcome) {
            *o += 1;
        }
        t.responses += responses;
        t.interval_responses += responses;
        t.empty += empty;
    });
}

/// A request sent, asking for `draws`; in the open loop, `lag_ns` after it was due.
pub(crate) fn record_sent(draws: u64, lag_ns: Option<u64>) {
    record(|t| {
        t.requests += 1;
        t.draws += draws;
        if let Some(lag) = lag_ns {
            t.lag.saturating_record(lag.max(1));
            if lag > LATE.as_nanos() as u64 {
                t.late += 1;
            }
        }
    });
}

/// Open loop: `n` requests were due before the end but never sent.
pub(crate) fn record_unsent(n: u64) {
    record(|t| t.unsent += n);
}

/// A stream that failed to open or ended with `code`.
pub(crate) fn record_error(code: Code) {
    record(|t| {
        if let Some(e) = t.errors.get_mut(code as usize) {
            *e += 1;
        }
    });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A worker that panicked mid-record leaves counts, not broken invariants.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The name of an outcome index: the gRPC code's, in the protocol's spelling.
pub(crate) fn outcome_name(i: usize) -> &'static str {
    const NAMES: [&str; OUTCOMES] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
        "UNANSWERED",
    ];
    NAMES.get(i).copied().unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::{outcome_name, UNANSWERED};

    #[test]
    fn outcome_names_follow_the_code_numbers() {
        assert_eq!(outcome_name(Code::Ok as usize), "OK");
        assert_eq!(outcome_name(Code::InvalidArgument as usize), "INVALID_ARGUMENT");
        assert_eq!(outcome_name(Code::Unavailable as usize), "UNAVAILABLE");
        assert_eq!(outcome_name(Code::Unauthenticated as usize), "UNAUTHENTICATED");
        assert_eq!(outcome_name(UNANSWERED), "UNANSWERED");
    }
}
