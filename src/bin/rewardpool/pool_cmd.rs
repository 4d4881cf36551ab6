//! `draw`, `state` and `update`: the commands that recover a data directory and act on its
//! pool through [`rewardpool::store`].

use std::collections::VecDeque;
use std::io::Write as _;

use anyhow::{anyhow, Context as _};
use serde::Serialize;

use super::args::{DrawArgs, GlobalArgs, StateArgs, UpdateArgs};
use super::output::Out;
use super::{catalog, pool_config, require_data_dir, CmdResult, Failure};
use rewardpool::config::Config;
use rewardpool::engine::{DrawError, Engine, EngineError, Outcome, PullTicket};
use rewardpool::pool::{ItemIndex, PoolState, Quantity};
use rewardpool::store::{self, Durability, OpenError};

/// Recovers the data directory and starts an engine on it.
pub(crate) fn open(config: &Config) -> Result<Engine, Failure> {
    store::open_engine(&config.catalog(), &config.wal_options(), config.engine_config(), None)
        .map_err(|e| open_failure(e, config))
}

/// A log, catalog or directory that refuses to open is bad input (exit 2); an engine, journal
/// or the operating system failing at start is a failed run (exit 1).
pub(crate) fn open_failure(e: OpenError, config: &Config) -> Failure {
    let dir = config.working_dir.display().to_string();
    let runtime = matches!(e, OpenError::Engine(_) | OpenError::Entropy(_) | OpenError::Journal(_));
    let e = anyhow::Error::new(e).context(format!("cannot open the data directory {dir}"));
    if runtime {
        Failure::failed(e)
    } else {
        Failure::bad_input(e)
    }
}

/// Item names by index, JSON-quoted and plain, read from the engine once and again only when
/// an index is unknown (an item added by an update).
struct Names {
    json: Vec<String>,
    plain: Vec<String>,
}

impl Names {
    fn load(engine: &Engine) -> Result<Names, Failure> {
        let state = engine
            .state()
            .map_err(|e| Failure::failed(anyhow::Error::new(e).context("cannot read item ids")))?;
        Ok(Names {
            json: state
                .items
                .iter()
                .map(|i| serde_json::to_string(&i.id).unwrap_or_else(|_| "\"?\"".to_owned()))
                .collect(),
            plain: state.items.into_iter().map(|i| i.id).collect(),
        })
    }

    fn ensure(&mut self, engine: &Engine, index: ItemIndex) -> Result<(), Failure> {
        if (index.0 as usize) >= self.plain.len() {
            *self = Names::load(engine)?;
            if (index.0 as usize) >= self.plain.len() {
                return Err(Failure::failed(anyhow!(
                    "the engine returned item #{} which its state does not list",
                    index.0
                )));
            }
        }
        Ok(())
    }
}

/// `draw [--count N] [--pull P] [--key HEX] [--json]`. `--count 0` returns before the data directory
/// is opened: nothing is created or written. Under `memory` durability it says on stderr
/// that the draws are kept nowhere.
pub(crate) fn draw(global: &GlobalArgs, args: &DrawArgs) -> CmdResult {
    let config = pool_config(global, args.pool.pool.as_deref())?;
    if let Some(pull) = args.pull {
        if pull == 0 || pull > rewardpool::PULL_LEN_MAX {
            return Err(Failure::bad_input(anyhow!(
                "--pull is {pull}: a pull asks for 1 to {} draws",
                rewardpool::PULL_LEN_MAX
            )));
        }
    }
    if args.key.is_some() && args.count > 1 {
        return Err(Failure::bad_input(anyhow!(
            "--key names one request: with --count {} every request after the first would \
             replay it (use --count 1)",
            args.count
        )));
    }
    if args.count == 0 {
        return Ok(());
    }
    if config.wal.durability == Durability::Memory {
        eprintln!(
            "warning: wal.durability is memory: these draws are kept nowhere (no log is read \
             or written, so every run starts again from the catalog; {} is not used)",
            config.working_dir.display()
        );
    }
    let engine = open(&config)?;
    if config.wal.durability != Durability::Memory {
        if let Err(f) = report_catalog(global, args.pool.pool.as_deref(), &config, &engine) {
            let _ = engine.shutdown();
            return Err(f);
        }
    }
    // Single draws are pulls of one: the same frames, one group member each.
    let result = pull_loop(&engine, args, args.pull.unwrap_or(1));
    let shutdown = engine.shutdown();
    result?;
    shutdown
        .map(drop)
        .map_err(|e| Failure::failed(anyhow::Error::new(e).context("clean shutdown failed")))
}

/// Keeps up to a ring's worth of pulls in flight (fewer when the client's pull area holds
/// fewer) and prints one line per draw in request-id order: waits for the oldest pull (so
/// each pass ends with at least one committed group), then takes everything else that
/// completed (`drain` delivers a pull's draws one by one under its ticket id), writes it from
/// one reused buffer, and flushes.
fn pull_loop(engine: &Engine, args: &DrawArgs, pull: u32) -> CmdResult {
    let mut names = Names::load(engine)?;
    let mut client = engine
        .client()
        .map_err(|e| Failure::failed(anyhow::Error::new(e).context("cannot register a client")))?;
    if pull > client.pull_max() {
        return Err(Failure::bad_input(anyhow!(
            "--pull is {pull}: this log holds at most {} draws in one group (raise \
             wal.max_file_size_kb for longer pulls)",
            client.pull_max()
        )));
    }
    let window = client.capacity();
    let mut tickets: VecDeque<PullTicket> = VecDeque::with_capacity(window);
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut out = Out::new();
    let (mut sent, mut done, mut drawn) = (0_u64, 0_u64, 0_u64);

    while done < args.count {
        while sent < args.count && tickets.len() < window {
            match client.try_pull_keyed(pull, args.key.unwrap_or(0)) {
                Ok(ticket) => {
                    tickets.push_back(ticket);
                    sent += 1;
                }
                Err(DrawError::Full) => break,
                Err(e) => return Err(draw_failed(engine, e, drawn)),
            }
        }
        let Some(oldest) = tickets.pop_front() else {
            break;
        };
        let outcomes = client.wait_pull(oldest).map_err(|e| draw_failed(engine, e, drawn))?;
        if let (true, Some(key)) = (outcomes.replayed(), args.key) {
            eprintln!(
                "note: idempotency key {key:032x} was used before: these are its original \
                 outcomes, nothing was drawn"
            );
        }
        for outcome in outcomes {
            emit(&mut buf, &mut names, engine, outcome, args)?;
            drawn += 1;
        }
        done += 1;

        let mut failure: Option<Failure> = None;
        let mut current: Option<u64> = None;
        client.drain(|seq, result| {
            if current != Some(seq) {
                current = Some(seq);
                let _ = tickets.pop_front();
                done += 1;
            }
            if failure.is_some() {
                return;
            }
            match result {
                Ok(outcome) => match emit(&mut buf, &mut names, engine, outcome, args) {
                    Ok(()) => drawn += 1,
                    Err(f) => failure = Some(f),
                },
                Err(e) => failure = Some(draw_failed(engine, e, drawn)),
            }
        });
        // What was acknowledged is printed even when a later pull failed.
        out.write(&buf)?;
        out.flush()?;
        buf.clear();
        if let Some(f) = failure {
            return Err(f);
        }
    }
    Ok(())
}

/// Writes one outcome's line: plain, or JSON (with `"replayed"` when the draw has a key).
fn emit(
    buf: &mut Vec<u8>,
    names: &mut Names,
    engine: &Engine,
    outcome: Outcome,
    args: &DrawArgs,
) -> Result<(), Failure> {
    let id = outcome.request_id.0;
    let replayed = match (args.key, outcome.replayed) {
        (None, _) => "",
        (Some(_), false) => ",\"replayed\":false",
        (Some(_), true) => ",\"replayed\":true",
    };
    // Writing into a Vec cannot fail.
    let _ = match (outcome.item, args.json) {
        (Some(index), true) => {
            names.ensure(engine, index)?;
            let item = &names.json[index.0 as usize];
            writeln!(buf, "{{\"request_id\":{id},\"item\":{item}{replayed}}}")
        }
        (None, true) => writeln!(buf, "{{\"request_id\":{id},\"item\":null{replayed}}}"),
        (Some(index), false) => {
            names.ensure(engine, index)?;
            writeln!(buf, "{id} {}", names.plain[index.0 as usize])
        }
        (None, false) => writeln!(buf, "{id} (empty)"),
    };
    Ok(())
}

fn draw_failed(engine: &Engine, e: DrawError, done: u64) -> Failure {
    if let DrawError::KeyConflict { .. } = e {
        // The request, not the engine, is at fault.
        return Failure::bad_input(anyhow!("{e}"));
    }
    let mut err = anyhow!("draw failed after {done} acknowledged draws: {e}");
    if let Some(reason) = engine.failure() {
        err = err.context(reason);
    }
    Failure::failed(err)
}

#[derive(Serialize)]
struct StateJson<'a> {
    last_request_id: u64,
    items: Vec<ItemJson<'a>>,
}

#[derive(Serialize)]
struct ItemJson<'a> {
    item_id: &'a str,
    quantity: i64,
    weight: u32,
    /// The item's chance on the next draw given the stock now (0 when it cannot be drawn):
    /// `ItemState::effective_probability`.
    probability: f64,
}

/// `state [--json]`.
pub(crate) fn state(global: &GlobalArgs, args: &StateArgs) -> CmdResult {
    require_data_dir(global)?;
    let config = pool_config(global, args.pool.pool.as_deref())?;
    let catalog = config.catalog();
    let state =
        store::read_state(&catalog, &config.wal_options()).map_err(|e| open_failure(e, &config))?;
    warn_catalog(global, args.pool.pool.as_deref(), config.working_dir.as_path(), &catalog, &state);
    let mut out = Out::new();
    if args.json {
        let text = serde_json::to_string(&state_json(&state)).context("cannot encode the state");
        out.line(&text.map_err(Failure::failed)?)?;
    } else {
        print_state_table(&mut out, &state)?;
    }
    out.flush()
}

fn state_json(state: &PoolState) -> StateJson<'_> {
    StateJson {
        last_request_id: state.last_request_id.0,
        items: state
            .items
            .iter()
            .zip(state.effective_probabilities())
            .map(|(i, probability)| ItemJson {
                item_id: &i.id,
                quantity: i.quantity.to_i64(),
                weight: i.weight,
                probability,
            })
            .collect(),
    }
}

fn print_state_table(out: &mut Out, state: &PoolState) -> CmdResult {
    let width = state.items.iter().map(|i| i.id.len()).max().unwrap_or(0).max("item".len());
    out.line(&format!("last request id: {}", state.last_request_id.0))?;
    out.line(&format!(
        "{:<width$}  {:>12}  {:>10}  {:>11}",
        "item", "quantity", "weight", "probability"
    ))?;
    for (item, probability) in state.items.iter().zip(state.effective_probabilities()) {
        let quantity = match item.quantity {
            Quantity::Unlimited => "unlimited".to_owned(),
            Quantity::Finite(n) => n.to_string(),
        };
        out.line(&format!(
            "{:<width$}  {quantity:>12}  {:>10}  {:>10.4}%",
            item.id,
            item.weight,
            probability * 100.0
        ))?;
    }
    Ok(())
}

/// Prints (stderr) how the configuration's catalog differs from the engine's recovered
/// pool, unless the pool came from that catalog (see [`catalog`]).
fn report_catalog(
    global: &GlobalArgs,
    pool: Option<&str>,
    config: &Config,
    engine: &Engine,
) -> CmdResult {
    let state = engine
        .state()
        .map_err(|e| Failure::failed(anyhow::Error::new(e).context("cannot read the pool")))?;
    warn_catalog(global, pool, &config.working_dir, &config.catalog(), &state);
    Ok(())
}

/// Prints (stderr) the differences between `catalog` and the pool `state` recovered from
/// `dir`, if they are worth reporting ([`catalog::unapplied`]).
fn warn_catalog(
    global: &GlobalArgs,
    pool: Option<&str>,
    dir: &std::path::Path,
    catalog: &[rewardpool::pool::ItemSpec],
    state: &PoolState,
) {
    let diffs = catalog::unapplied(dir, catalog, state);
    eprint!(
        "{}",
        catalog::warning(&diffs, &catalog_source(global), dir, &apply_command(global, pool))
    );
}

/// The catalog's name in messages.
fn catalog_source(global: &GlobalArgs) -> String {
    match &global.config {
        Some(path) => path.display().to_string(),
        None => "the built-in configuration (no --config given)".to_owned(),
    }
}

/// The command line that applies the configuration's catalog to the same pool (`pool`: the
/// `--pool` the command was given; without one the configuration has a single pool).
fn apply_command(global: &GlobalArgs, pool: Option<&str>) -> String {
    let mut cmd = "rewardpool update --apply-catalog".to_owned();
    if let Some(path) = &global.config {
        cmd.push_str(&format!(" --config {}", path.display()));
    }
    if let Some(dir) = &global.data_dir {
        cmd.push_str(&format!(" --data-dir {}", dir.display()));
    }
    if let Some(pool) = pool {
        cmd.push_str(&format!(" --pool {pool}"));
    }
    cmd
}

/// Refuses `memory` durability for commands whose only effect is the log.
fn require_log(config: &Config, what: &str) -> CmdResult {
    if config.wal.durability == Durability::Memory {
        return Err(Failure::bad_input(anyhow!(
            "wal.durability is memory: {what} would be kept nowhere (no log is written); \
             use buffered or sync"
        )));
    }
    Ok(())
}

fn update_failure(e: EngineError, item: &str) -> Failure {
    let bad = matches!(e, EngineError::Update(_));
    let e = anyhow::Error::new(e).context(format!("cannot update item {item:?}"));
    if bad {
        Failure::bad_input(e)
    } else {
        Failure::failed(e)
    }
}

fn shutdown_failure(e: EngineError) -> Failure {
    Failure::failed(anyhow::Error::new(e).context("clean shutdown failed"))
}

/// `update --item ID [--quantity Q] [--weight W] [--add]` or `update --apply-catalog`.
///
/// An id the pool does not know is refused unless `--add` is given (so a typo never creates
/// an item), and `--add` of an id it knows is refused too. `memory` durability is refused:
/// the update would be kept nowhere.
pub(crate) fn update(global: &GlobalArgs, args: &UpdateArgs) -> CmdResult {
    if args.apply_catalog {
        return apply_catalog(global, args.pool.pool.as_deref());
    }
    let item = args.item.as_deref().unwrap_or_default();
    let quantity = match args.quantity {
        None => None,
        Some(q) => Some(Quantity::from_i64(q).ok_or_else(|| {
            Failure::bad_input(anyhow!("--quantity is {q}: it must be -1 (unlimited) or more"))
        })?),
    };
    let weight = match args.weight {
        None => None,
        Some(w) => Some(u32::try_from(w).map_err(|_| {
            Failure::bad_input(anyhow!(
                "--weight is {w}: a weight must be an integer from 0 to {}",
                u32::MAX
            ))
        })?),
    };
    if quantity.is_none() && weight.is_none() {
        return Err(Failure::bad_input(anyhow!(
            "nothing to update: give --quantity and/or --weight for item {item:?}"
        )));
    }
    if item.is_empty() {
        return Err(Failure::bad_input(anyhow!("--item is empty: an item id is required")));
    }
    if args.add && (quantity.is_none() || weight.is_none()) {
        return Err(Failure::bad_input(anyhow!(
            "--add needs both --quantity and --weight for the new item {item:?}"
        )));
    }
    let config = pool_config(global, args.pool.pool.as_deref())?;
    require_log(&config, "an update")?;
    // Refused before the directory is opened for writing: a refused update changes nothing.
    // (Checked again on the engine's own state below.)
    let current = store::read_state(&config.catalog(), &config.wal_options())
        .map_err(|e| open_failure(e, &config))?;
    check_known(&current, item, args.add)?;
    let engine = open(&config)?;
    let result = update_on(&engine, item, quantity, weight, args.add);
    let after = result.and_then(|updated| {
        report_catalog(global, args.pool.pool.as_deref(), &config, &engine)?;
        Ok(updated)
    });
    let shutdown = engine.shutdown();
    let updated = after?;
    shutdown.map_err(shutdown_failure)?;
    let mut out = Out::new();
    out.line(&updated_line(&updated))?;
    out.flush()
}

fn updated_line(item: &rewardpool::pool::ItemState) -> String {
    format!("{} quantity={} weight={}", item.id, item.quantity.to_i64(), item.weight)
}

fn update_on(
    engine: &Engine,
    item: &str,
    quantity: Option<Quantity>,
    weight: Option<u32>,
    add: bool,
) -> Result<rewardpool::pool::ItemState, Failure> {
    let state = engine
        .state()
        .map_err(|e| Failure::failed(anyhow::Error::new(e).context("cannot read the pool")))?;
    check_known(&state, item, add)?;
    engine.update(item, quantity, weight).map_err(|e| update_failure(e, item))
}

/// An unknown id needs `--add`; `--add` needs an unknown id.
fn check_known(state: &PoolState, item: &str, add: bool) -> CmdResult {
    let known = state.items.iter().any(|i| i.id == item);
    if !known && !add {
        let ids: Vec<&str> = state.items.iter().map(|i| i.id.as_str()).collect();
        return Err(Failure::bad_input(anyhow!(
            "unknown item {item}; known: {}; pass --add to add it",
            ids.join(", ")
        )));
    }
    if known && add {
        return Err(Failure::bad_input(anyhow!(
            "item {item} exists already: drop --add to change it"
        )));
    }
    Ok(())
}

/// `update --apply-catalog`: one logged update per item that differs from the
/// configuration's catalog, then the catalog is recorded as applied.
fn apply_catalog(global: &GlobalArgs, pool: Option<&str>) -> CmdResult {
    let config = pool_config(global, pool)?;
    require_log(&config, "applying the catalog")?;
    let catalog = config.catalog();
    let engine = open(&config)?;
    let mut out = Out::new();
    let mut lines = Vec::new();
    let result = (|| {
        let state = engine
            .state()
            .map_err(|e| Failure::failed(anyhow::Error::new(e).context("cannot read the pool")))?;
        for diff in catalog::differences(&catalog, &state.items) {
            let (id, quantity, weight) = diff.update();
            let updated = engine.update(id, quantity, weight).map_err(|e| update_failure(e, id))?;
            lines.push(updated_line(&updated));
        }
        Ok(())
    })();
    let shutdown = engine.shutdown();
    // What was logged is printed even when a later update failed.
    for line in &lines {
        out.line(line)?;
    }
    out.flush()?;
    result?;
    shutdown.map_err(shutdown_failure)?;
    catalog::record_applied(&config.working_dir, &catalog).map_err(|e| {
        Failure::failed(anyhow::Error::new(e).context(format!(
            "the updates are logged, but recording the applied catalog in {} failed",
            config.working_dir.display()
        )))
    })?;
    out.line(&format!(
        "applied the catalog of {}: {} item{} updated",
        catalog_source(global),
        lines.len(),
        if lines.len() == 1 { "" } else { "s" }
    ))?;
    out.flush()
}
