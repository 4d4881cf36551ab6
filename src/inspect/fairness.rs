//! `wal commitments` and `wal audit`: provably fair draws (issue 14).
//!
//! Every run of draws comes from a seed committed to before its first draw and revealed after
//! its last (`wal::frame`, "Seed frames"). A **run** is what lies between a commitment frame
//! and the next seed frame of the log: its reveal (the run is *revealed*), a newer commitment
//! (a crash lost the seed: *unrevealed*), or the end of the log (*pending* while the newest
//! segment is open, *unrevealed* once it is closed without a reveal).
//!
//! The audit reads the log twice:
//!
//! 1. [`commitments`] walks every retained segment and collects the runs: where each was
//!    committed, its draws, and its reveal if any. Seeds come last in a run, so the draws
//!    cannot be checked on this pass.
//! 2. [`audit`] walks the segments `from..=to` again with the state the engine had (the first
//!    segment's snapshot, then every update, key and draw applied in order) and, for each
//!    revealed run, checks `SHA-256(seed || commitment segment || pool) == commitment` and
//!    recomputes every draw with [`Pool::choice_at`] under the seed's generator: the item a
//!    draw with that request id takes from the pool as it was (`pool::rng`, generator 1).
//!
//! A run that is pending or unrevealed is never counted as verified: its draws are counted
//! apart. Segments of format version < 4 have no seed frames; their draws are counted as
//! unseeded (they still change the state later draws are checked against).
//!
//! Nothing is allocated per draw: the pool is replayed in place, the walker reuses its
//! buffers, and a draw costs one generator call and one Fenwick descent.

use std::fmt;

use crate::pool::GENERATOR;
use crate::pool::{Draw, DrawSeed, ItemIndex, ItemState, Pool, Quantity, RequestId, Rng};
use crate::recovery::{self, layout, scan_segment, FrameInfo, RecoveryError};
use crate::storage::Storage;
use crate::wal::frame::Record;
use crate::wal::header::SegmentStatus;

/// A frame before the segment's snapshot marker (the walker refuses that first).
const NO_MARKER: &str = "a frame before the snapshot marker";

/// The first segment format version that holds seed frames.
const SEEDED_VERSION: u32 = 4;

/// Where a frame lies in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramePlace {
    /// The segment file, as the storage describes it (a path for a directory).
    pub file: String,
    /// The segment's sequence number.
    pub segment: u64,
    /// The frame's byte offset in the file.
    pub offset: u64,
}

impl fmt::Display for FramePlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.file, self.offset)
    }
}

/// How a run of draws ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    /// Its seed was revealed.
    Revealed {
        /// The revealed seed.
        seed: [u8; 32],
        /// The reveal frame.
        at: FramePlace,
        /// The commitment the reveal frame repeats (the run's own, unless the log was
        /// altered).
        repeated: [u8; 32],
    },
    /// Still drawing: the newest run of the open newest segment ("committed, not yet
    /// revealed").
    Pending,
    /// Ended without a reveal: a crash lost the seed, then recovery (or a repair) moved on.
    Unrevealed,
}

/// One run of draws from one committed seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedRun {
    /// The commitment frame.
    pub committed_at: FramePlace,
    /// The segment number the commitment hashes (where it was first written: on a replica,
    /// the primary's).
    pub commitment_segment: u64,
    /// The first request id that may draw from the seed.
    pub first_request_id: u64,
    /// The last request id drawn from it, if any.
    pub last_request_id: Option<u64>,
    /// Draws taken from it (committed ones; a torn tail is not counted).
    pub draws: u64,
    /// The generator its draws use (`pool::GENERATOR`).
    pub generator: u32,
    /// SHA-256(seed || commitment segment || pool name).
    pub commitment: [u8; 32],
    /// Revealed, pending or unrevealed.
    pub status: RunStatus,
}

impl SeedRun {
    /// The revealed seed, if any.
    #[must_use]
    pub fn seed(&self) -> Option<DrawSeed> {
        match &self.status {
            RunStatus::Revealed { seed, .. } => Some(DrawSeed::from_bytes(*seed)),
            RunStatus::Pending | RunStatus::Unrevealed => None,
        }
    }

    /// What the revealed seed hashes to for pool `pool` (`None` before a reveal): equal to
    /// [`SeedRun::commitment`] for an honest log.
    #[must_use]
    pub fn revealed_commitment(&self, pool: &str) -> Option<[u8; 32]> {
        self.seed().map(|s| s.commitment(self.commitment_segment, pool))
    }
}

/// The first thing an audit found wrong: each names the frame (file and offset).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FairnessFailure {
    /// The revealed seed does not hash to the commitment.
    Seed {
        /// The reveal frame.
        at: FramePlace,
        /// The run's first request id.
        first_request_id: u64,
        /// The commitment published before the run.
        expected: [u8; 32],
        /// SHA-256(revealed seed || segment || pool).
        got: [u8; 32],
    },
    /// The reveal repeats another commitment than the one its run was committed to.
    Reveal {
        /// The reveal frame.
        at: FramePlace,
        /// The commitment frame.
        committed_at: FramePlace,
        /// The run's first request id.
        first_request_id: u64,
        /// The commitment frame's.
        committed: [u8; 32],
        /// The reveal frame's.
        repeated: [u8; 32],
    },
    /// A reveal that answers no open commitment (its first request id or segment differ).
    StrayReveal {
        /// The reveal frame.
        at: FramePlace,
        /// The first request id it names.
        first_request_id: u64,
    },
    /// A run drawn with a generator this build does not know.
    Generator {
        /// The commitment frame.
        at: FramePlace,
        /// The generator it names.
        generator: u32,
    },
    /// A logged draw that the revealed seed does not give.
    Draw {
        /// The frame holding the draw (a batch frame: the group's).
        at: FramePlace,
        /// The draw's request id.
        request_id: u64,
        /// The item the log records (`None`: an empty draw).
        logged: Option<String>,
        /// The item the seed and the state give (`None`: nothing was left).
        recomputed: Option<String>,
    },
}

/// Lower-case hex of `bytes`: how commitments and seeds are printed and published.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn item_or_nothing(item: Option<&String>) -> String {
    item.map_or_else(|| "nothing (an empty draw)".to_owned(), |i| format!("{i:?}"))
}

impl fmt::Display for FairnessFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FairnessFailure::Seed { at, first_request_id, expected, got } => write!(
                f,
                "{at}: the seed revealed for the draws from request id {first_request_id} does \
                 not match its commitment: expected {}, the seed hashes to {}",
                hex(expected),
                hex(got)
            ),
            FairnessFailure::Reveal { at, committed_at, first_request_id, committed, repeated } => {
                write!(
                    f,
                    "{at}: the reveal for the draws from request id {first_request_id} repeats \
                     commitment {}, but the run was committed to {} ({committed_at})",
                    hex(repeated),
                    hex(committed)
                )
            }
            FairnessFailure::StrayReveal { at, first_request_id } => write!(
                f,
                "{at}: a reveal for the draws from request id {first_request_id} answers no \
                 open commitment"
            ),
            FairnessFailure::Generator { at, generator } => write!(
                f,
                "{at}: the run's generator is {generator}; this build knows generator \
                 {GENERATOR} only"
            ),
            FairnessFailure::Draw { at, request_id, logged, recomputed } => write!(
                f,
                "{at}: request id {request_id}: the log says {}, the revealed seed gives {}",
                item_or_nothing(logged.as_ref()),
                item_or_nothing(recomputed.as_ref())
            ),
        }
    }
}

/// What [`audit`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FairnessReport {
    /// Segments walked (those in the range).
    pub segments: u64,
    /// Of them, segments of format version < 4 (no seed frames: their draws are unseeded).
    pub segments_without_commitments: u64,
    /// Runs committed in the range whose seed matched and all of whose draws were recomputed
    /// as logged.
    pub runs_verified: u64,
    /// Runs still drawing (the open segment's): committed, not yet revealed.
    pub runs_pending: u64,
    /// Runs that ended without a reveal (a crash): never verified.
    pub runs_unrevealed: u64,
    /// Draws recomputed as logged.
    pub draws_verified: u64,
    /// Draws of pending runs (checked once their seed is revealed).
    pub draws_pending: u64,
    /// Draws of unrevealed runs (cannot be checked).
    pub draws_unrevealed: u64,
    /// Draws outside any run (segments of format < 4).
    pub draws_unseeded: u64,
    /// Every mismatch found (draws, seeds, reveals); the first is [`FairnessReport::failure`].
    pub mismatches: u64,
    /// The first mismatch, when there is one.
    pub failure: Option<FairnessFailure>,
}

/// Every seed run in the retained log, in log order, with its status. `pool` is the pool's
/// name; it is not needed to list the runs, only to check them
/// ([`SeedRun::revealed_commitment`]), and is taken for symmetry with [`audit`].
///
/// # Errors
/// Damage or I/O errors, as `wal verify` would report them.
pub fn commitments(storage: &dyn Storage, pool: &str) -> Result<Vec<SeedRun>, RecoveryError> {
    let _ = pool;
    Ok(collect(storage)?.runs)
}

/// What the first pass found.
#[derive(Default)]
struct Collected {
    runs: Vec<SeedRun>,
    /// Reveals that answered no open commitment.
    stray: Vec<(FramePlace, u64)>,
}

/// The first pass: every run, its draws and its end.
fn collect(storage: &dyn Storage) -> Result<Collected, RecoveryError> {
    let layout = layout(storage)?;
    let count = layout.segments.len();
    let mut c = Collected::default();
    let mut open: Option<usize> = None;
    let mut newest_open = false;
    for (i, (seq, name)) in layout.segments.iter().enumerate() {
        check_gap(storage, &layout.segments, i)?;
        let file = storage.describe(name);
        let scan = scan_segment(storage, name, *seq, i + 1 == count, |info| {
            if !info.torn {
                collect_frame(&mut c, &mut open, &file, info);
            }
            Ok(())
        })?;
        newest_open = scan.header.status == SegmentStatus::Open;
    }
    if let Some(r) = open {
        if newest_open {
            if let Some(run) = c.runs.get_mut(r) {
                run.status = RunStatus::Pending;
            }
        }
    }
    Ok(c)
}

/// Refuses a gap in the segments' sequence (as `wal dump` does).
fn check_gap(
    storage: &dyn Storage,
    segments: &[(u64, String)],
    i: usize,
) -> Result<(), RecoveryError> {
    let (Some(prev), Some((seq, name))) =
        (i.checked_sub(1).and_then(|p| segments.get(p)), segments.get(i))
    else {
        return Ok(());
    };
    if *seq == prev.0 + 1 {
        return Ok(());
    }
    Err(RecoveryError::Damaged {
        file: storage.describe(name),
        offset: 0,
        reason: format!("missing segment before it (previous is {})", prev.0),
    })
}

/// One frame of the first pass.
fn collect_frame(c: &mut Collected, open: &mut Option<usize>, file: &str, info: &FrameInfo) {
    let place = || FramePlace { file: file.to_owned(), segment: info.segment, offset: info.offset };
    match &info.record {
        Record::Draw { request_id, .. } => {
            if let Some(run) = open.and_then(|r| c.runs.get_mut(r)) {
                run.draws += 1;
                run.last_request_id = Some(*request_id);
            }
        }
        Record::Seed { first_request_id, segment, generator, commitment, revealed: None } => {
            // A newer commitment ends the run before it unrevealed (its status already says
            // so until a reveal comes).
            *open = Some(c.runs.len());
            c.runs.push(SeedRun {
                committed_at: place(),
                commitment_segment: *segment,
                first_request_id: *first_request_id,
                last_request_id: None,
                draws: 0,
                generator: *generator,
                commitment: *commitment,
                status: RunStatus::Unrevealed,
            });
        }
        Record::Seed { first_request_id, segment, commitment, revealed: Some(seed), .. } => {
            let first_seed_frame = c.runs.is_empty();
            let run = open.and_then(|r| c.runs.get_mut(r)).filter(|run| {
                run.first_request_id == *first_request_id && run.commitment_segment == *segment
            });
            match run {
                Some(run) => {
                    run.status =
                        RunStatus::Revealed { seed: *seed, at: place(), repeated: *commitment };
                    *open = None;
                }
                // The log's first seed frame is a reveal: its commitment lay in a segment
                // retention has deleted (a run spanning segments, as on a replica's log). Its
                // draws here cannot be checked against a commitment: they count as unseeded.
                None if first_seed_frame => {}
                None => c.stray.push((place(), *first_request_id)),
            }
        }
        _ => {}
    }
}

/// The run the second pass draws from now.
#[derive(Clone, Copy)]
enum Current {
    /// Outside any run.
    None,
    /// A revealed run whose seed matched: its draws are recomputed.
    Verify { rng: Rng, mismatched: bool },
    /// A pending run.
    Pending,
    /// An unrevealed run, or a revealed one whose seed did not match.
    Unchecked,
}

/// The second pass's state.
struct Replay<'a> {
    storage: &'a dyn Storage,
    pool_name: &'a str,
    runs: &'a [SeedRun],
    /// The next run whose commitment the walk may meet.
    next_run: usize,
    pool: Option<Pool>,
    current: Current,
    report: FairnessReport,
}

/// Checks every run committed in segments `from..=to` (default: the whole retained log) of
/// pool `pool`'s log: each revealed seed against its commitment, then every draw of the run
/// recomputed from the seed and the state before it ([`Pool::choice_at`]) against the logged
/// item. Mismatches are findings, not errors: the report counts them and names the first.
///
/// # Errors
/// Damage or I/O errors, as `wal verify` would report them (the log cannot be read, or its
/// frames do not replay).
pub fn audit(
    storage: &dyn Storage,
    pool: &str,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<FairnessReport, RecoveryError> {
    let collected = collect(storage)?;
    let layout = layout(storage)?;
    let from = from.unwrap_or(0);
    let to = to.unwrap_or(u64::MAX);
    let mut replay = Replay {
        storage,
        pool_name: pool,
        runs: &collected.runs,
        next_run: collected.runs.partition_point(|r| r.committed_at.segment < from),
        pool: None,
        current: Current::None,
        report: FairnessReport::default(),
    };
    for (place, first_request_id) in &collected.stray {
        if (from..=to).contains(&place.segment) {
            replay.fail(FairnessFailure::StrayReveal {
                at: place.clone(),
                first_request_id: *first_request_id,
            });
        }
    }
    replay.enter_range(from);
    let count = layout.segments.len();
    for (i, (seq, name)) in layout.segments.iter().enumerate() {
        if !(from..=to).contains(seq) {
            continue;
        }
        let file = storage.describe(name);
        let scan = scan_segment(storage, name, *seq, i + 1 == count, |info| {
            if info.torn {
                return Ok(());
            }
            replay.frame(&file, info)
        })?;
        replay.report.segments += 1;
        if scan.header.version < SEEDED_VERSION {
            replay.report.segments_without_commitments += 1;
        }
    }
    Ok(replay.report)
}

impl Replay<'_> {
    fn fail(&mut self, failure: FairnessFailure) {
        self.report.mismatches += 1;
        if self.report.failure.is_none() {
            self.report.failure = Some(failure);
        }
    }

    /// A run committed before the range may still be drawing in it (a replica's log copies
    /// seed frames whose runs span its own segments).
    fn enter_range(&mut self, from: u64) {
        let Some(run) = self.next_run.checked_sub(1).and_then(|r| self.runs.get(r)) else {
            return;
        };
        self.current = match &run.status {
            RunStatus::Revealed { at, .. } if at.segment >= from => self.check_seed(run),
            RunStatus::Pending => Current::Pending,
            _ => Current::None,
        };
    }

    /// Checks a revealed run's seed and generator: how its draws are then treated.
    fn check_seed(&mut self, run: &SeedRun) -> Current {
        let RunStatus::Revealed { seed, at, repeated } = &run.status else {
            return Current::Unchecked;
        };
        if run.generator != GENERATOR {
            self.fail(FairnessFailure::Generator {
                at: run.committed_at.clone(),
                generator: run.generator,
            });
            return Current::Unchecked;
        }
        if *repeated != run.commitment {
            self.fail(FairnessFailure::Reveal {
                at: at.clone(),
                committed_at: run.committed_at.clone(),
                first_request_id: run.first_request_id,
                committed: run.commitment,
                repeated: *repeated,
            });
            return Current::Unchecked;
        }
        let seed = DrawSeed::from_bytes(*seed);
        let got = seed.commitment(run.commitment_segment, self.pool_name);
        if got != run.commitment {
            self.fail(FairnessFailure::Seed {
                at: at.clone(),
                first_request_id: run.first_request_id,
                expected: run.commitment,
                got,
            });
            return Current::Unchecked;
        }
        Current::Verify { rng: seed.rng(), mismatched: false }
    }

    /// One frame of the second pass.
    fn frame(&mut self, file: &str, info: &FrameInfo) -> Result<(), RecoveryError> {
        let damage = |reason: String| RecoveryError::Damaged {
            file: file.to_owned(),
            offset: info.offset,
            reason,
        };
        match &info.record {
            Record::Draw { request_id, item } => {
                let logged = item.map(ItemIndex);
                let draw = Draw { request_id: RequestId(*request_id), item: logged };
                match self.current {
                    Current::Verify { rng, .. } => self.check_draw(rng, file, info, draw)?,
                    Current::Pending => self.report.draws_pending += 1,
                    Current::Unchecked => self.report.draws_unrevealed += 1,
                    Current::None => self.report.draws_unseeded += 1,
                }
                let pool = self.pool.as_mut().ok_or_else(|| damage(NO_MARKER.into()))?;
                pool.replay_draw(draw).map_err(|e| damage(e.to_string()))?;
            }
            Record::Snapshot { file_name, sha256, last_request_id, .. } => {
                // The replayed state continues into the next segment; a snapshot is read only
                // where the walk starts, or where the log skips request ids (a recovery or a
                // repair raised the floor), so the state is always the engine's.
                if self.pool.as_ref().map(|p| p.last_request_id().0) != Some(*last_request_id) {
                    let state = recovery::load_snapshot(self.storage, file_name, Some(sha256))?;
                    let pool =
                        Pool::from_state(&state, Rng::from_seed(0)).map_err(RecoveryError::Pool)?;
                    self.pool = Some(pool);
                }
            }
            Record::Update { index, item_id, quantity, weight } => {
                let pool = self.pool.as_mut().ok_or_else(|| damage(NO_MARKER.into()))?;
                let quantity = Quantity::from_i64(*quantity)
                    .ok_or_else(|| damage(format!("quantity {quantity} below -1")))?;
                let state = ItemState { id: item_id.clone(), quantity, weight: *weight };
                pool.replay_update(ItemIndex(*index), &state).map_err(|e| damage(e.to_string()))?;
            }
            Record::Key { key, first_request_id, count, unix_s } => {
                let pool = self.pool.as_mut().ok_or_else(|| damage(NO_MARKER.into()))?;
                pool.replay_key(*key, RequestId(*first_request_id), *count, *unix_s)
                    .map_err(|e| damage(e.to_string()))?;
            }
            Record::Seed { revealed: None, .. } => self.commitment(info),
            Record::Seed { revealed: Some(_), .. } => self.reveal(),
            Record::Commit { .. } | Record::Batch(_) => {}
        }
        Ok(())
    }

    /// Recomputes one draw of a verified run; a mismatch is recorded, not returned.
    #[inline]
    fn check_draw(
        &mut self,
        rng: Rng,
        file: &str,
        info: &FrameInfo,
        draw: Draw,
    ) -> Result<(), RecoveryError> {
        let Some(pool) = self.pool.as_ref() else {
            return Err(RecoveryError::Damaged {
                file: file.to_owned(),
                offset: info.offset,
                reason: NO_MARKER.into(),
            });
        };
        let recomputed = pool.choice_at(rng, draw.request_id);
        if recomputed == draw.item {
            self.report.draws_verified += 1;
            return Ok(());
        }
        self.current = Current::Verify { rng, mismatched: true };
        if self.report.failure.is_some() {
            // Only the first is described: a wrong draw usually changes every later one.
            self.report.mismatches += 1;
            return Ok(());
        }
        let failure = FairnessFailure::Draw {
            at: FramePlace { file: file.to_owned(), segment: info.segment, offset: info.offset },
            request_id: draw.request_id.0,
            logged: draw.item.map(|i| item_name(pool, i)),
            recomputed: recomputed.map(|i| item_name(pool, i)),
        };
        self.fail(failure);
        Ok(())
    }

    /// A commitment frame: the run it starts (found by its place, collected in pass 1).
    fn commitment(&mut self, info: &FrameInfo) {
        self.reveal();
        let runs = self.runs;
        while runs.get(self.next_run).is_some_and(|r| {
            (r.committed_at.segment, r.committed_at.offset) < (info.segment, info.offset)
        }) {
            self.next_run += 1;
        }
        let Some(run) = runs.get(self.next_run) else {
            self.current = Current::None;
            return;
        };
        self.next_run += 1;
        self.current = match run.status {
            RunStatus::Revealed { .. } => self.check_seed(run),
            RunStatus::Pending => {
                self.report.runs_pending += 1;
                Current::Pending
            }
            RunStatus::Unrevealed => {
                self.report.runs_unrevealed += 1;
                Current::Unchecked
            }
        };
    }

    /// The end of the current run (a reveal, or a newer commitment).
    fn reveal(&mut self) {
        if let Current::Verify { mismatched: false, .. } = self.current {
            self.report.runs_verified += 1;
        }
        self.current = Current::None;
    }
}

/// An item's id, or `#index` for an index the pool does not have.
fn item_name(pool: &Pool, index: ItemIndex) -> String {
    pool.item_id(index).map_or_else(|| format!("#{}", index.0), str::to_owned)
}
