//! Reading an engine's counters without stopping its core thread: the core updates a few
//! atomics once per group (`EngineStats`), the journal its own (`JournalStats`); a reading
//! is a handful of `Relaxed` loads, never a command on the control queue.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Shared;
use crate::journal::{FailureKind, JournalMetrics, JournalStats};
use crate::pool::RequestId;

/// A reading of an engine's counters. Each counter only grows; being separate `Relaxed`
/// loads, the set is not one instant (e.g. `draws_acknowledged` may briefly lead
/// `draws_committed` in a reading taken while groups complete).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Draws in committed groups since the engine started.
    pub draws_committed: u64,
    /// Requests answered since start: draws acknowledged (durable) and draws refused while
    /// the disk was full.
    pub draws_acknowledged: u64,
    /// Groups committed since start.
    pub groups_committed: u64,
    /// The newest request id in a committed group.
    pub last_request_id: RequestId,
    /// Clients connected now.
    pub clients: u64,
    /// The journal's counters, when it keeps any (the durable log does).
    pub journal: Option<JournalMetrics>,
    /// The kind of failure that stopped the engine, if one did.
    pub failure: Option<FailureKind>,
    /// The core thread has stopped (shut down or failed).
    pub stopped: bool,
}

/// Reads an engine's [`Metrics`] from any thread, also after the engine shut down (see
/// [`crate::Engine::meter`]). Cheap to clone; holds no lock.
#[derive(Clone)]
pub struct Meter {
    shared: Arc<Shared>,
    journal: Option<Arc<JournalStats>>,
}

impl fmt::Debug for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meter").finish_non_exhaustive()
    }
}

impl Meter {
    pub(super) fn new(shared: Arc<Shared>, journal: Option<Arc<JournalStats>>) -> Meter {
        Meter { shared, journal }
    }

    /// The counters now.
    #[must_use]
    pub fn read(&self) -> Metrics {
        read(&self.shared, self.journal.as_deref())
    }
}

pub(super) fn read(shared: &Shared, journal: Option<&JournalStats>) -> Metrics {
    let stats = &shared.stats;
    // Relaxed: observers' counters, stored by the core once per group (`Core::commit`,
    // `Core::publish`); nothing else is read through them.
    let last = stats.last_request_id.load(Ordering::Relaxed);
    Metrics {
        draws_committed: last - shared.start_request_id,
        draws_acknowledged: stats.draws_acknowledged.load(Ordering::Relaxed),
        groups_committed: stats.groups_committed.load(Ordering::Relaxed),
        last_request_id: RequestId(last),
        // Relaxed: a counter bounding registrations.
        clients: shared.clients.load(Ordering::Relaxed),
        journal: journal.map(JournalStats::read),
        failure: shared.intake.failure_kind(),
        stopped: shared.is_stopped(),
    }
}
