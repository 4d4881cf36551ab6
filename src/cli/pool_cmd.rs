//! `draw`, `state` and `update`: the commands that recover a data directory and act on its
//! pool through [`crate::store`].

use std::collections::VecDeque;
use std::io::Write as _;

use anyhow::{anyhow, Context as _};
use serde::Serialize;

use super::args::{DrawArgs, GlobalArgs, StateArgs, UpdateArgs};
use super::output::Out;
use super::{load_config, CmdResult, Failure};
use crate::config::Config;
use crate::engine::{DrawError, Engine, EngineError, Outcome, Ticket};
use crate::pool::{ItemIndex, PoolState, Quantity};
use crate::store::{self, OpenError};

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

/// `draw [--count N] [--json]`.
pub(crate) fn draw(global: &GlobalArgs, args: &DrawArgs) -> CmdResult {
    let config = load_config(global)?;
    let engine = open(&config)?;
    let result = draw_loop(&engine, args);
    let shutdown = engine.shutdown();
    result?;
    shutdown
        .map(drop)
        .map_err(|e| Failure::failed(anyhow::Error::new(e).context("clean shutdown failed")))
}

/// Keeps up to a ring's worth of draws in flight and prints outcomes in ticket order: wait for
/// the oldest (so each pass ends with at least one committed group), then take everything
/// else that completed, write it from one reused buffer, and flush.
fn draw_loop(engine: &Engine, args: &DrawArgs) -> CmdResult {
    let mut names = Names::load(engine)?;
    let mut client = engine
        .client()
        .map_err(|e| Failure::failed(anyhow::Error::new(e).context("cannot register a client")))?;
    let window = client.capacity();
    let mut tickets: VecDeque<Ticket> = VecDeque::with_capacity(window);
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut out = Out::new();
    let (mut sent, mut done) = (0_u64, 0_u64);

    while done < args.count {
        while sent < args.count && tickets.len() < window {
            match client.try_draw() {
                Ok(ticket) => {
                    tickets.push_back(ticket);
                    sent += 1;
                }
                Err(DrawError::Full) => break,
                Err(e) => return Err(draw_failed(engine, e, done)),
            }
        }
        let Some(oldest) = tickets.pop_front() else {
            break;
        };
        let first = client.wait(oldest).map_err(|e| draw_failed(engine, e, done))?;
        emit(&mut buf, &mut names, engine, first, args.json)?;
        done += 1;

        let mut failure: Option<Failure> = None;
        client.drain(|_, result| {
            let _ = tickets.pop_front();
            if failure.is_some() {
                return;
            }
            match result {
                Ok(outcome) => match emit(&mut buf, &mut names, engine, outcome, args.json) {
                    Ok(()) => done += 1,
                    Err(f) => failure = Some(f),
                },
                Err(e) => failure = Some(draw_failed(engine, e, done)),
            }
        });
        // What was acknowledged is printed even when a later draw failed.
        out.write(&buf)?;
        out.flush()?;
        buf.clear();
        if let Some(f) = failure {
            return Err(f);
        }
    }
    Ok(())
}

fn emit(
    buf: &mut Vec<u8>,
    names: &mut Names,
    engine: &Engine,
    outcome: Outcome,
    json: bool,
) -> Result<(), Failure> {
    let id = outcome.request_id.0;
    // Writing into a Vec cannot fail.
    let _ = match (outcome.item, json) {
        (Some(index), true) => {
            names.ensure(engine, index)?;
            writeln!(buf, "{{\"request_id\":{id},\"item\":{}}}", names.json[index.0 as usize])
        }
        (None, true) => writeln!(buf, "{{\"request_id\":{id},\"item\":null}}"),
        (Some(index), false) => {
            names.ensure(engine, index)?;
            writeln!(buf, "{id} {}", names.plain[index.0 as usize])
        }
        (None, false) => writeln!(buf, "{id} (empty)"),
    };
    Ok(())
}

fn draw_failed(engine: &Engine, e: DrawError, done: u64) -> Failure {
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
}

/// `state [--json]`.
pub(crate) fn state(global: &GlobalArgs, args: &StateArgs) -> CmdResult {
    let config = load_config(global)?;
    let state = store::read_state(&config.catalog(), &config.wal_options())
        .map_err(|e| open_failure(e, &config))?;
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
            .map(|i| ItemJson { item_id: &i.id, quantity: i.quantity.to_i64(), weight: i.weight })
            .collect(),
    }
}

fn print_state_table(out: &mut Out, state: &PoolState) -> CmdResult {
    let width = state.items.iter().map(|i| i.id.len()).max().unwrap_or(0).max("item".len());
    out.line(&format!("last request id: {}", state.last_request_id.0))?;
    out.line(&format!("{:<width$}  {:>12}  {:>10}", "item", "quantity", "weight"))?;
    for item in &state.items {
        let quantity = match item.quantity {
            Quantity::Unlimited => "unlimited".to_owned(),
            Quantity::Finite(n) => n.to_string(),
        };
        out.line(&format!("{:<width$}  {quantity:>12}  {:>10}", item.id, item.weight))?;
    }
    Ok(())
}

/// `update --item ID [--quantity Q] [--weight W]`.
pub(crate) fn update(global: &GlobalArgs, args: &UpdateArgs) -> CmdResult {
    let quantity = match args.quantity {
        None => None,
        Some(q) => Some(Quantity::from_i64(q).ok_or_else(|| {
            Failure::bad_input(anyhow!("--quantity is {q}: it must be -1 (unlimited) or more"))
        })?),
    };
    if quantity.is_none() && args.weight.is_none() {
        return Err(Failure::bad_input(anyhow!(
            "nothing to update: give --quantity and/or --weight for item {:?}",
            args.item
        )));
    }
    if args.item.is_empty() {
        return Err(Failure::bad_input(anyhow!("--item is empty: an item id is required")));
    }
    let config = load_config(global)?;
    let engine = open(&config)?;
    let result = engine.update(&args.item, quantity, args.weight);
    let shutdown = engine.shutdown();
    let item = result.map_err(|e| {
        let bad = matches!(e, EngineError::Update(_));
        let e = anyhow::Error::new(e).context(format!("cannot update item {:?}", args.item));
        if bad {
            Failure::bad_input(e)
        } else {
            Failure::failed(e)
        }
    })?;
    shutdown
        .map_err(|e| Failure::failed(anyhow::Error::new(e).context("clean shutdown failed")))?;
    let mut out = Out::new();
    out.line(&format!("{} quantity={} weight={}", item.id, item.quantity.to_i64(), item.weight))?;
    out.flush()
}
