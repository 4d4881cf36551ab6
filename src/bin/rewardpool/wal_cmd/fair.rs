//! `wal audit` and `wal commitments`: the provably-fair checks over
//! [`rewardpool::inspect::fairness`].
//!
//! `wal commitments` prints one line (or JSON object) per seed run, so an operator can
//! publish each commitment before its draws and the seed after them. `wal audit` checks every
//! revealed seed and recomputes every draw; exit 0 when nothing mismatched (pending and
//! unrevealed runs are reported, never counted as verified), 1 on a mismatch (the first is
//! printed: file, offset, request id, logged vs recomputed), 2 for bad arguments or a log
//! that cannot be read.

use anyhow::{anyhow, Context as _};
use serde::Serialize;

use super::{existing, hex, lock, no_log, plural};
use crate::output::Out;
use crate::{CmdResult, Failure};
use rewardpool::config::Config;
use rewardpool::inspect::fairness::{self, FairnessFailure, FairnessReport, RunStatus, SeedRun};

/// The pool name the commitments hash (`WalOptions::pool`).
fn pool_name(config: &Config) -> String {
    config.wal_options().pool
}

// ---------------------------------------------------------------------------------------
// commitments

/// `wal commitments --json`: one object per run, exactly these keys in this order.
#[derive(Serialize)]
struct RunJson {
    segment: u64,
    offset: u64,
    commitment_segment: u64,
    first_request_id: u64,
    last_request_id: Option<u64>,
    draws: u64,
    generator: u32,
    commitment: String,
    status: &'static str,
    seed: Option<String>,
}

fn status_name(status: &RunStatus) -> &'static str {
    match status {
        RunStatus::Revealed { .. } => "revealed",
        RunStatus::Pending => "pending",
        RunStatus::Unrevealed => "unrevealed",
    }
}

fn run_json(run: &SeedRun) -> RunJson {
    RunJson {
        segment: run.committed_at.segment,
        offset: run.committed_at.offset,
        commitment_segment: run.commitment_segment,
        first_request_id: run.first_request_id,
        last_request_id: run.last_request_id,
        draws: run.draws,
        generator: run.generator,
        commitment: hex(&run.commitment),
        status: status_name(&run.status),
        seed: run.seed().map(|s| hex(&s.to_bytes())),
    }
}

/// Lists every seed run: segment, first request id, draws, commitment, seed or status.
pub(super) fn commitments(config: &Config, json: bool) -> CmdResult {
    let mut out = Out::new();
    let Some(storage) = existing(config) else {
        if !json {
            out.line(&format!("no commitments: {}", no_log(config)))?;
        }
        return out.flush();
    };
    let _lock = lock(&storage, false)?;
    let runs = fairness::commitments(&storage, &pool_name(config)).map_err(|e| {
        Failure::bad_input(anyhow::Error::new(e).context("cannot read the commitments"))
    })?;
    if json {
        for run in &runs {
            let text = serde_json::to_string(&run_json(run)).context("cannot encode a run");
            out.line(&text.map_err(Failure::failed)?)?;
        }
        return out.flush();
    }
    out.line(&format!(
        "{:>8}  {:>14}  {:>10}  {:<64}  seed",
        "segment", "first request", "draws", "commitment"
    ))?;
    for run in &runs {
        let seed = match &run.status {
            RunStatus::Revealed { seed, .. } => hex(seed),
            RunStatus::Pending => "pending (committed, not yet revealed)".to_owned(),
            RunStatus::Unrevealed => "unrevealed (a crash lost the seed)".to_owned(),
        };
        out.line(&format!(
            "{:>8}  {:>14}  {:>10}  {:<64}  {seed}",
            run.committed_at.segment,
            run.first_request_id,
            run.draws,
            hex(&run.commitment)
        ))?;
    }
    out.flush()
}

// ---------------------------------------------------------------------------------------
// audit

/// `wal audit --json`: exactly these keys, in this order.
#[derive(Serialize)]
struct AuditJson {
    segments: u64,
    segments_without_commitments: u64,
    runs_verified: u64,
    runs_pending: u64,
    runs_unrevealed: u64,
    draws_verified: u64,
    draws_pending: u64,
    draws_unrevealed: u64,
    draws_unseeded: u64,
    mismatches: u64,
    failure: Option<FailureJson>,
}

/// The first mismatch: what kind, where, and the sentence the text output prints.
#[derive(Serialize)]
struct FailureJson {
    kind: &'static str,
    file: String,
    offset: u64,
    request_id: Option<u64>,
    logged: Option<String>,
    recomputed: Option<String>,
    message: String,
}

fn failure_json(failure: &FairnessFailure) -> FailureJson {
    let message = failure.to_string();
    let (kind, at, request_id, logged, recomputed) = match failure {
        FairnessFailure::Draw { at, request_id, logged, recomputed } => {
            ("draw", at, Some(*request_id), logged.clone(), recomputed.clone())
        }
        FairnessFailure::Seed { at, first_request_id, expected, got } => {
            ("seed", at, Some(*first_request_id), Some(hex(expected)), Some(hex(got)))
        }
        FairnessFailure::Reveal { at, first_request_id, committed, repeated, .. } => {
            ("reveal", at, Some(*first_request_id), Some(hex(committed)), Some(hex(repeated)))
        }
        FairnessFailure::StrayReveal { at, first_request_id } => {
            ("stray_reveal", at, Some(*first_request_id), None, None)
        }
        FairnessFailure::Generator { at, .. } => ("generator", at, None, None, None),
        // The enum is non-exhaustive: a later kind still prints its sentence.
        _ => ("other", &EMPTY_PLACE, None, None, None),
    };
    FailureJson {
        kind,
        file: at.file.clone(),
        offset: at.offset,
        request_id,
        logged,
        recomputed,
        message,
    }
}

static EMPTY_PLACE: fairness::FramePlace =
    fairness::FramePlace { file: String::new(), segment: 0, offset: 0 };

fn audit_json(report: &FairnessReport) -> AuditJson {
    AuditJson {
        segments: report.segments,
        segments_without_commitments: report.segments_without_commitments,
        runs_verified: report.runs_verified,
        runs_pending: report.runs_pending,
        runs_unrevealed: report.runs_unrevealed,
        draws_verified: report.draws_verified,
        draws_pending: report.draws_pending,
        draws_unrevealed: report.draws_unrevealed,
        draws_unseeded: report.draws_unseeded,
        mismatches: report.mismatches,
        failure: report.failure.as_ref().map(failure_json),
    }
}

fn print_audit(out: &mut Out, r: &FairnessReport) -> CmdResult {
    out.line(&format!(
        "segments audited: {} ({} without commitments: format < 4)",
        r.segments, r.segments_without_commitments
    ))?;
    out.line(&format!(
        "runs:  {:>12} verified  {:>12} pending (committed, not yet revealed)  {:>12} unrevealed \
         (never verified)",
        r.runs_verified, r.runs_pending, r.runs_unrevealed
    ))?;
    out.line(&format!(
        "draws: {:>12} verified  {:>12} pending  {:>12} unrevealed  {:>12} unseeded",
        r.draws_verified, r.draws_pending, r.draws_unrevealed, r.draws_unseeded
    ))?;
    let verdict = match &r.failure {
        Some(f) => format!(
            "verdict: FAILED, {} mismatch{}; the first: {f}",
            r.mismatches,
            if r.mismatches == 1 { "" } else { "es" }
        ),
        None => format!(
            "verdict: every revealed seed matches its commitment and gives every logged draw \
             ({} draw{} verified)",
            r.draws_verified,
            plural(r.draws_verified)
        ),
    };
    out.line(&verdict)
}

/// Checks the runs of segments `from..=to`; exit 1 on any mismatch.
pub(super) fn audit(config: &Config, from: Option<u64>, to: Option<u64>, json: bool) -> CmdResult {
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(Failure::bad_input(anyhow!(
                "--from {from} is after --to {to}: no segment to audit"
            )));
        }
    }
    let report = match existing(config) {
        None => FairnessReport::default(),
        Some(storage) => {
            let _lock = lock(&storage, false)?;
            fairness::audit(&storage, &pool_name(config), from, to).map_err(|e| {
                Failure::bad_input(anyhow::Error::new(e).context("cannot audit the log"))
            })?
        }
    };
    let mut out = Out::new();
    if json {
        let text = serde_json::to_string(&audit_json(&report)).context("cannot encode the audit");
        out.line(&text.map_err(Failure::failed)?)?;
    } else {
        if existing(config).is_none() {
            out.line(&format!("nothing to audit: {}", no_log(config)))?;
        }
        print_audit(&mut out, &report)?;
    }
    out.flush()?;
    match &report.failure {
        Some(failure) => Err(Failure::failed(anyhow!("the fairness audit failed: {failure}"))),
        None => Ok(()),
    }
}
