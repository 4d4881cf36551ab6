//! `wal dump | verify | repair | stats | audit | commitments`: read-only inspection and explicit repair of the log,
//! over the library's [`rewardpool::inspect`] tools.
//!
//! Locks: `dump`, `verify`, `stats`, `audit` and `commitments` take the directory's shared lock (they run beside
//! other readers, never beside a writer), without creating a file on a directory that
//! cannot be written (a backup on a read-only mount: see `OsStorage`'s lock); `repair`
//! takes the exclusive lock. A missing `working_dir` holds no log: there is nothing to dump,
//! verify, repair or audit (exit 0); a missing explicit `--data-dir` is an error (exit 2).
//!
//! Exit codes: 0 success; 1 a failed check (`verify` found damage, `stats` found draws that
//! do not follow the weights, `audit` found a draw or seed that does not match, a repair
//! that did not leave a clean log); 2 bad input (a damaged log under `dump`, `stats`,
//! `audit` or `commitments`, a directory in use, an unreadable file, a `stats --from/--to`
//! range that is reversed or names a segment the log does not hold). `audit` and
//! `commitments` live in [`fair`].

mod fair;

use std::io::Write as _;

use anyhow::{anyhow, Context as _};
use rewardpool::inspect::hex;
use serde::Serialize;

use super::args::{GlobalArgs, WalCommand};
use super::output::Out;
use super::{pool_config, require_data_dir, CmdResult, Failure};
use rewardpool::config::Config;
use rewardpool::inspect::{self, Audit, RangeAuditError, RepairPlan, SegmentRange, VerifyReport};
use rewardpool::recovery::{self, FrameInfo, RecoveryError};
use rewardpool::storage::{DirLock, OsStorage, Storage};
use rewardpool::wal::frame::Record;

/// The audit fails below this p-value (SPEC §2, guarantee 4).
const P_VALUE_MIN: f64 = 0.001;

/// Dump output is handed to stdout in chunks of about this size.
const DUMP_CHUNK: usize = 64 * 1024;

pub(crate) fn run(global: &GlobalArgs, pool: Option<&str>, command: &WalCommand) -> CmdResult {
    require_data_dir(global)?;
    let config = pool_config(global, pool)?;
    match *command {
        WalCommand::Dump { json, all } => dump(&config, json, all),
        WalCommand::Verify => verify(&config),
        WalCommand::Repair => repair(&config),
        WalCommand::Stats { json, from, to } => stats(&config, json, SegmentRange { from, to }),
        WalCommand::Audit { from, to, json } => fair::audit(&config, from, to, json),
        WalCommand::Commitments { json } => fair::commitments(&config, json),
    }
}

/// The data directory if it exists (read-only commands never create it).
fn existing(config: &Config) -> Option<OsStorage> {
    OsStorage::existing(&config.working_dir).ok()
}

/// Takes the directory's lock: shared for readers, exclusive for `repair`.
fn lock(storage: &OsStorage, exclusive: bool) -> Result<Box<dyn DirLock>, Failure> {
    storage.lock(exclusive).map_err(|e| {
        let dir = storage.describe("");
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Failure::bad_input(anyhow!(
                "data directory {dir} is in use by another process (its lock file is held)"
            ))
        } else {
            Failure::bad_input(
                anyhow::Error::new(e).context(format!("cannot lock the data directory {dir}")),
            )
        }
    })
}

fn no_log(config: &Config) -> String {
    format!("no data directory {}", config.working_dir.display())
}

// ---------------------------------------------------------------------------------------
// dump

/// Item names by index, JSON-quoted and plain. Indices are stable and items are only
/// appended, so the final state's list names every index the log can hold; update frames
/// fill in what it lacks (when the final state cannot be read, on a damaged log).
#[derive(Default)]
struct Names {
    json: Vec<Option<String>>,
    plain: Vec<Option<String>>,
}

impl Names {
    fn load(storage: &OsStorage) -> Names {
        let mut names = Names::default();
        let items = match rewardpool::store::read_state_on(storage, &[]) {
            Ok(state) => Some(state.items),
            // A damaged log: the newest snapshot that still loads names what it holds.
            Err(_) => newest_snapshot_items(storage),
        };
        for (index, item) in items.into_iter().flatten().enumerate() {
            names.set(index, &item.id);
        }
        names
    }

    fn set(&mut self, index: usize, id: &str) {
        if self.plain.len() <= index {
            self.plain.resize(index + 1, None);
            self.json.resize(index + 1, None);
        }
        if self.plain[index].is_none() {
            self.json[index] = Some(json_string(id));
            self.plain[index] = Some(id.to_owned());
        }
    }

    fn json(&self, index: u32) -> Option<&str> {
        self.json.get(index as usize).and_then(Option::as_deref)
    }

    fn plain(&self, index: u32) -> Option<&str> {
        self.plain.get(index as usize).and_then(Option::as_deref)
    }
}

fn newest_snapshot_items(storage: &OsStorage) -> Option<Vec<rewardpool::pool::ItemState>> {
    let layout = recovery::layout(storage).ok()?;
    layout
        .snapshots
        .iter()
        .rev()
        .find_map(|(_, name)| recovery::load_snapshot(storage, name, None).ok())
        .map(|state| state.items)
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"?\"".to_owned())
}

/// Appends one frame's line to `buf` (writing into a Vec cannot fail).
fn format_frame(buf: &mut Vec<u8>, names: &mut Names, info: &FrameInfo, json: bool) {
    let _ = if json { format_json(buf, names, info) } else { format_plain(buf, names, info) };
}

fn format_json(buf: &mut Vec<u8>, names: &mut Names, info: &FrameInfo) -> std::io::Result<()> {
    write!(buf, "{{\"segment\":{},\"offset\":{},", info.segment, info.offset)?;
    match &info.record {
        Record::Draw { request_id, item } => {
            write!(buf, "\"type\":\"draw\",\"request_id\":{request_id},\"item\":")?;
            match item {
                None => write!(buf, "null")?,
                Some(index) => match names.json(*index) {
                    Some(name) => buf.extend_from_slice(name.as_bytes()),
                    None => write!(buf, "\"#{index}\"")?,
                },
            }
        }
        Record::Update { index, item_id, quantity, weight } => {
            names.set(*index as usize, item_id);
            write!(
                buf,
                "\"type\":\"update\",\"item\":{},\"quantity\":{quantity},\"weight\":{weight}",
                json_string(item_id)
            )?;
        }
        Record::Snapshot { file_name, last_request_id, .. } => write!(
            buf,
            "\"type\":\"snapshot\",\"file\":{},\"last_request_id\":{last_request_id}",
            json_string(file_name)
        )?,
        Record::Commit { last_request_id, .. } => {
            write!(buf, "\"type\":\"commit\",\"request_id\":{last_request_id}")?
        }
        Record::Key { key, first_request_id, count, .. } => write!(
            buf,
            "\"type\":\"key\",\"key\":\"{key:032x}\",\"request_id\":{first_request_id},\
             \"count\":{count}"
        )?,
        // The walker expands batches into keys and draws; a whole one never reaches here.
        Record::Batch(b) => write!(
            buf,
            "\"type\":\"batch\",\"request_id\":{},\"count\":{}",
            b.first_request_id,
            b.items.len()
        )?,
        Record::Seed { first_request_id, segment, commitment, revealed, .. } => {
            write!(
                buf,
                "\"type\":\"seed\",\"request_id\":{first_request_id},\"commitment_segment\":{segment},\
                 \"commitment\":\"{}\",\"seed\":",
                hex(commitment)
            )?;
            match revealed {
                Some(seed) => write!(buf, "\"{}\"", hex(seed))?,
                None => write!(buf, "null")?,
            }
        }
    }
    if info.torn {
        write!(buf, ",\"torn\":true")?;
    }
    writeln!(buf, "}}")
}

fn format_plain(buf: &mut Vec<u8>, names: &mut Names, info: &FrameInfo) -> std::io::Result<()> {
    write!(buf, "{:06}:{:<8} ", info.segment, info.offset)?;
    match &info.record {
        Record::Draw { request_id, item } => {
            write!(buf, "draw      request {request_id} -> ")?;
            match item {
                None => write!(buf, "(empty)")?,
                Some(index) => match names.plain(*index) {
                    Some(name) => buf.extend_from_slice(name.as_bytes()),
                    None => write!(buf, "#{index}")?,
                },
            }
        }
        Record::Update { index, item_id, quantity, weight } => {
            names.set(*index as usize, item_id);
            if *quantity == -1 {
                write!(buf, "update    {item_id} quantity=unlimited weight={weight}")?;
            } else {
                write!(buf, "update    {item_id} quantity={quantity} weight={weight}")?;
            }
        }
        Record::Snapshot { file_name, last_request_id, .. } => {
            write!(buf, "snapshot  {file_name} (up to request {last_request_id})")?
        }
        Record::Commit { last_request_id, group } => {
            write!(buf, "commit    group {group}, up to request {last_request_id}")?
        }
        Record::Key { key, first_request_id, count, .. } => {
            write!(buf, "key       {key:032x} -> requests {first_request_id} x{count}")?
        }
        Record::Batch(b) => {
            write!(buf, "batch     requests {} x{}", b.first_request_id, b.items.len())?
        }
        Record::Seed { first_request_id, commitment, revealed: None, .. } => {
            write!(buf, "seed      commitment {} from request {first_request_id}", hex(commitment))?
        }
        Record::Seed { first_request_id, revealed: Some(seed), .. } => {
            write!(buf, "seed      revealed {} from request {first_request_id}", hex(seed))?
        }
    }
    if info.torn {
        write!(buf, "  [torn: never acknowledged]")?;
    }
    writeln!(buf)
}

/// One line per frame recovery accepts; `all` adds the torn tail with `"torn":true`.
fn dump(config: &Config, json: bool, all: bool) -> CmdResult {
    let Some(storage) = existing(config) else {
        return Ok(());
    };
    let _lock = lock(&storage, false)?;
    let mut names = Names::load(&storage);
    let mut out = Out::new();
    let mut buf: Vec<u8> = Vec::with_capacity(DUMP_CHUNK + 1024);
    // A write failure (a closed pipe) stops the walk; it is reported as itself, not as damage.
    let mut write_failure: Option<Failure> = None;
    let result = inspect::dump(&storage, all, |info| {
        format_frame(&mut buf, &mut names, info, json);
        if buf.len() >= DUMP_CHUNK {
            if let Err(f) = out.write(&buf) {
                write_failure = Some(f);
                return Err(RecoveryError::Io {
                    file: "standard output".to_owned(),
                    source: std::io::Error::other("write failed"),
                });
            }
            buf.clear();
        }
        Ok(())
    });
    if let Some(f) = write_failure {
        return Err(f);
    }
    // What precedes the damage is printed before the error.
    out.write(&buf)?;
    out.flush()?;
    result.map_err(|e| {
        Failure::bad_input(anyhow::Error::new(e).context("wal dump stopped at damage in the log"))
    })
}

// ---------------------------------------------------------------------------------------
// verify

fn summary(report: &VerifyReport) -> String {
    format!(
        "{} segment{}, {} frame{}, {} snapshot{} checked, {} torn frame{} (never acknowledged), last request id {}",
        report.segments,
        plural(report.segments as u64),
        report.frames,
        plural(report.frames),
        report.snapshots,
        plural(report.snapshots as u64),
        report.torn_frames,
        plural(report.torn_frames),
        report.last_request_id
    )
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A damage sentence: which file, where, why, and what to do.
fn damage_failure(e: RecoveryError) -> Failure {
    match e {
        RecoveryError::Damaged {
            file,
            offset,
            reason,
        } => Failure::failed(anyhow!(
            "the log is damaged: {file} at offset {offset}: {reason} (`rewardpool wal repair` keeps what is intact and says what it drops)"
        )),
        other => Failure::bad_input(anyhow::Error::new(other).context("cannot verify the log")),
    }
}

/// Exit 0 when clean, 1 when damaged (file, offset, reason).
fn verify(config: &Config) -> CmdResult {
    let mut out = Out::new();
    let Some(storage) = existing(config) else {
        out.line(&format!("ok: nothing to verify ({})", no_log(config)))?;
        return out.flush();
    };
    let _lock = lock(&storage, false)?;
    let report = inspect::verify(&storage).map_err(damage_failure)?;
    out.line(&format!("ok: {}", summary(&report)))?;
    out.flush()
}

// ---------------------------------------------------------------------------------------
// repair

fn describe_plan(plan: &RepairPlan, storage: &OsStorage) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(damage) = &plan.damage {
        lines.push(format!("found: {damage}"));
    }
    for (name, _) in &plan.rebuilt_snapshots {
        lines.push(format!(
            "will rebuild {name} from the replay of the segment before it (its SHA-256 matches \
             the one its segment records): nothing is lost"
        ));
    }
    if plan.end_missing {
        lines.push(
            "newer segments are missing (deleted or lost): their draws cannot be recovered; the \
             newest segment left becomes the log's end"
                .to_owned(),
        );
    }
    if let Some((snapshot, segment)) = &plan.adopted_snapshot {
        lines.push(format!(
            "will start the log again from {snapshot} (request id {}, its SHA-256 checks out) in \
             a new {segment}: it holds more than the segments left; they become history",
            plan.kept_last_request_id
        ));
    }
    if let Some((name, offset)) = &plan.cut {
        lines.push(format!(
            "will close {name} at offset {offset} (just past its last intact commit) as the log's end"
        ));
    }
    if !plan.dropped_segments.is_empty() {
        let verb = if plan.history_only || plan.adopted_snapshot.is_some() {
            "move aside as history"
        } else {
            "drop"
        };
        lines.push(format!(
            "will {verb} {} whole segment{}: {}",
            plan.dropped_segments.len(),
            plural(plan.dropped_segments.len() as u64),
            plan.dropped_segments.join(", ")
        ));
    }
    if !plan.dropped_snapshots.is_empty() {
        lines.push(format!(
            "will move aside {} snapshot{} beyond the log's end: {}",
            plan.dropped_snapshots.len(),
            plural(plan.dropped_snapshots.len() as u64),
            plan.dropped_snapshots.join(", ")
        ));
    }
    if plan.history_only {
        lines.push(
            "the damage is in old segments whose draws the newer segments' snapshots already \
             hold: moving them aside loses no state"
                .to_owned(),
        );
    }
    if plan.adopted_snapshot.is_some() {
        lines.push(format!(
            "will move aside {} readable frame{} ({} draw{}) as history: the snapshot holds their outcomes",
            plan.dropped_frames,
            plural(plan.dropped_frames),
            plan.dropped_draws,
            plural(plan.dropped_draws),
        ));
    } else if plan.history_only {
        lines.push(format!(
            "will move aside {} readable frame{} of history ({} draw{}): their outcomes are in the \
             newer snapshots",
            plan.dropped_frames,
            plural(plan.dropped_frames),
            plan.dropped_draws,
            plural(plan.dropped_draws),
        ));
    } else if plan.rebuilt_snapshots.is_empty() {
        let ids = match plan.dropped_request_ids {
            Some((lo, hi)) if lo == hi => format!(", request id {lo}"),
            Some((lo, hi)) => format!(", request ids {lo} to {hi}"),
            None => String::new(),
        };
        lines.push(format!(
            "will drop {} readable frame{} ({} draw{}{ids}); frames after unreadable bytes cannot be counted",
            plan.dropped_frames,
            plural(plan.dropped_frames),
            plan.dropped_draws,
            plural(plan.dropped_draws),
        ));
    }
    if plan.next_request_id > 0 {
        let margin = if plan.unreadable {
            " (one segment's capacity above the highest id seen, because some dropped or missing \
             bytes could not be read)"
        } else {
            " (above every id seen)"
        };
        lines.push(format!(
            "request ids continue from {}{margin}: none that may have been acknowledged is issued again",
            plan.next_request_id
        ));
    }
    let copies: Vec<String> = plan
        .rebuilt_snapshots
        .iter()
        .map(|(name, _)| name)
        .chain(plan.cut.iter().map(|(name, _)| name))
        .chain(&plan.dropped_segments)
        .chain(&plan.dropped_snapshots)
        .map(|name| format!("dropped.{name} (or dropped.{name}.N if that exists)"))
        .collect();
    if !copies.is_empty() {
        lines.push(format!(
            "a copy of everything changed or dropped is kept in {}: {}",
            storage.describe(""),
            copies.join(", ")
        ));
    }
    lines
}

/// Repair moves at most (each keeps the most of what is left; compound damage takes a few).
const REPAIR_MOVES_MAX: usize = 8;

/// Plan and apply repair moves, each said before it is made, until the log verifies.
fn repair(config: &Config) -> CmdResult {
    let mut out = Out::new();
    let Some(storage) = existing(config) else {
        out.line(&format!("nothing to repair: {}", no_log(config)))?;
        return out.flush();
    };
    let _lock = lock(&storage, true)?;
    for moves in 0..REPAIR_MOVES_MAX {
        let plan = inspect::plan_repair(&storage).map_err(|e| {
            Failure::bad_input(anyhow::Error::new(e).context("cannot plan the repair"))
        })?;
        if plan.damage.is_none() {
            if moves == 0 {
                out.line("nothing to repair: the log is intact")?;
                return out.flush();
            }
            break;
        }
        for line in describe_plan(&plan, &storage) {
            out.line(&line)?;
        }
        // Said before it is done, even if a reader stops reading.
        out.flush()?;
        if !plan.changes_anything() {
            return Err(Failure::failed(anyhow::anyhow!(
                "no intact part of the log to keep, and no snapshot to start again from: repair cannot \
                 fix this without re-issuing request ids; restore the data directory from a backup \
                 or a replica (the files are unchanged)")));
        }
        inspect::apply_repair(&storage, &plan)
            .map_err(|e| Failure::failed(anyhow::Error::new(e).context("the repair failed")))?;
        let mut done = Vec::new();
        if !plan.rebuilt_snapshots.is_empty() {
            let n = plan.rebuilt_snapshots.len() as u64;
            done.push(format!("rebuilt {n} snapshot{}", plural(n)));
        }
        if let Some((name, offset)) = &plan.cut {
            done.push(format!("closed {name} at offset {offset}"));
        }
        if let Some((snapshot, segment)) = &plan.adopted_snapshot {
            done.push(format!("started {segment} from {snapshot}"));
        }
        let moved = (plan.dropped_segments.len() + plan.dropped_snapshots.len()) as u64;
        if moved > 0 {
            done.push(format!("moved {moved} file{} aside", plural(moved)));
        }
        if !plan.history_only && plan.adopted_snapshot.is_none() && plan.dropped_frames > 0 {
            done.push(format!(
                "dropped {} frame{} ({} draw{})",
                plan.dropped_frames,
                plural(plan.dropped_frames),
                plan.dropped_draws,
                plural(plan.dropped_draws)
            ));
        }
        out.line(&format!("repaired: {}", done.join(", ")))?;
    }
    match inspect::verify(&storage) {
        Ok(report) => {
            out.line(&format!("verified: {}", summary(&report)))?;
            out.flush()
        }
        Err(e) => {
            out.flush()?;
            Err(Failure::failed(
                anyhow::Error::new(e)
                    .context("the log still fails verification after the repair; run `rewardpool wal repair` again"),
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------
// stats

/// `wal stats --json`: exactly these keys, in this order.
#[derive(Serialize)]
struct StatsJson<'a> {
    draws: u64,
    empty_draws: u64,
    chi_square: f64,
    degrees_of_freedom: u64,
    p_value: f64,
    items: Vec<ItemStatsJson<'a>>,
}

#[derive(Serialize)]
struct ItemStatsJson<'a> {
    item_id: &'a str,
    drawn: u64,
    observed_share: f64,
    expected_share: f64,
    weight: u32,
}

fn stats_json(audit: &Audit) -> StatsJson<'_> {
    StatsJson {
        draws: audit.draws,
        empty_draws: audit.empty_draws,
        chi_square: audit.chi_square,
        degrees_of_freedom: audit.degrees_of_freedom,
        p_value: audit.p_value,
        items: audit
            .items
            .iter()
            .map(|i| ItemStatsJson {
                item_id: &i.item_id,
                drawn: i.drawn,
                observed_share: i.observed_share,
                expected_share: i.expected_share,
                weight: i.weight,
            })
            .collect(),
    }
}

fn print_stats_table(out: &mut Out, audit: &Audit) -> CmdResult {
    let width = audit.items.iter().map(|i| i.item_id.len()).max().unwrap_or(0).max("item".len());
    out.line(&format!(
        "{:<width$}  {:>12}  {:>9}  {:>9}  {:>10}",
        "item", "drawn", "observed", "expected", "weight"
    ))?;
    for i in &audit.items {
        out.line(&format!(
            "{:<width$}  {:>12}  {:>8.4}%  {:>8.4}%  {:>10}",
            i.item_id,
            i.drawn,
            i.observed_share * 100.0,
            i.expected_share * 100.0,
            i.weight
        ))?;
    }
    let segments = match audit.segments {
        Some((first, last)) if first == last => format!(" in segment {first}"),
        Some((first, last)) => format!(" in segments {first} to {last}"),
        None => String::new(),
    };
    out.line(&format!("draws: {} ({} empty){segments}", audit.draws, audit.empty_draws))?;
    out.line(&format!(
        "chi-square: {:.4} with {} degree{} of freedom, p-value {:.6}",
        audit.chi_square,
        audit.degrees_of_freedom,
        plural(audit.degrees_of_freedom),
        audit.p_value
    ))?;
    Ok(())
}

/// Per-item counts, observed vs expected share, chi-square p-value, over the segments of
/// `range`; exit 1 when p < 0.001, 2 when the range does not fit the log.
fn stats(config: &Config, json: bool, range: SegmentRange) -> CmdResult {
    let audit = match existing(config) {
        // No directory holds no segments: nothing to audit, unless a segment is named.
        None => match range.select(&[]) {
            Ok(_) => Audit::empty(),
            Err(e) => {
                return Err(Failure::bad_input(
                    anyhow::Error::new(e).context(format!("wal stats: {}", no_log(config))),
                ))
            }
        },
        Some(storage) => {
            let _lock = lock(&storage, false)?;
            inspect::audit_range(&storage, range).map_err(|e| match e {
                RangeAuditError::Range(e) => Failure::bad_input(anyhow!("wal stats: {e}")),
                e => Failure::bad_input(anyhow::Error::new(e).context("cannot audit the log")),
            })?
        }
    };
    let fails = audit.p_value < P_VALUE_MIN;
    let mut out = Out::new();
    if json {
        let text =
            serde_json::to_string(&stats_json(&audit)).context("cannot encode the statistics");
        out.line(&text.map_err(Failure::failed)?)?;
    } else {
        print_stats_table(&mut out, &audit)?;
        let verdict = if audit.draws == audit.empty_draws {
            "verdict: no item was handed out; nothing to compare".to_owned()
        } else if fails {
            format!(
                "verdict: draws do NOT follow the weights (p = {:.6} < {P_VALUE_MIN})",
                audit.p_value
            )
        } else {
            format!("verdict: draws follow the weights (p = {:.6} >= {P_VALUE_MIN})", audit.p_value)
        };
        out.line(&verdict)?;
    }
    out.flush()?;
    if fails {
        return Err(Failure::failed(anyhow!(
            "draws do NOT follow the weights: chi-square {:.4}, p-value {:e} < {P_VALUE_MIN}",
            audit.chi_square,
            audit.p_value
        )));
    }
    Ok(())
}
