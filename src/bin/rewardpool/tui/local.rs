//! `tui --config FILE`: the data directory opened in-process, as the Go TUI did. The host is
//! opened (recovery first) before the terminal changes, so a held lock is one sentence on a
//! normal terminal. One thread owns the host: every refresh it reads each engine's counters
//! (`Engine::metrics`, which never stops a core) into the same `WatchResponse` the service
//! sends, the items (`Engine::items`) every [`super::items_every`] readings, and carries out
//! the commands with a client per pool. `r` shuts the host down and opens it again
//! (recovery). Leaving shuts the pools down (final snapshot).

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use rewardpool::config::Config;
use rewardpool::engine::{Client, DrawError, Engine, ItemIds, Outcome};
use rewardpool::host::OpenError;
use rewardpool::pool::available_weight;
use rewardpool::{Host, Quantity};

use super::request::{draws_line, update_line, Call};
use super::state::Stock;
use super::{items_every, Event, Job, Reading, Source};
use crate::service::api::{pool_metrics, reward_item, reward_items};
use crate::service::proto::{
    DrawRequest, DrawResponse, GetStateResponse, UpdateResponse, WatchResponse,
};
use crate::Failure;

/// Opens the data directory of `config` (refused while another process holds it) and
/// starts the thread that owns it.
///
/// # Errors
/// The directory is held (a running server: use `--connect`), damaged or unreadable (bad
/// input, exit 2), or no thread could be started.
pub(super) fn start(
    config: Config,
    refresh: Duration,
    events: Sender<Event>,
) -> Result<Source, Failure> {
    let host = open(&config)?;
    let (jobs, inbox) = mpsc::channel();
    let owner = Owner { config, host: Some(host), clients: Vec::new(), refresh, events };
    owner.say_opened();
    let thread = std::thread::Builder::new()
        .name("rewardpool-tui-pools".into())
        .spawn(move || owner.run(&inbox))
        .map_err(|e| Failure::failed(anyhow!(e).context("cannot start a thread")))?;
    Ok(Source::Local(jobs, thread))
}

/// Opens the host; a held lock says to attach instead.
fn open(config: &Config) -> Result<Host, Failure> {
    Host::open(config).map_err(|e| {
        let dir = config.working_dir.display();
        if is_locked(&e) {
            Failure::bad_input(anyhow!(
                "{e}: a running `rewardpool serve` holds data directory {dir}; attach the \
                 dashboard to it with `rewardpool tui --connect HOST:PORT`"
            ))
        } else {
            Failure::bad_input(anyhow!(e).context(format!("cannot open the data directory {dir}")))
        }
    })
}

/// True when `e` is (or wraps) a held directory lock.
fn is_locked(e: &OpenError) -> bool {
    match e {
        OpenError::Locked { .. } => true,
        OpenError::InPool { error, .. } => is_locked(error),
        _ => false,
    }
}

/// The thread that owns the host.
struct Owner {
    config: Config,
    /// `None` after a failed reload (then `r` tries again).
    host: Option<Host>,
    /// One client per pool, made on the first command (with its item ids).
    clients: Vec<Option<(Client, ItemIds)>>,
    refresh: Duration,
    events: Sender<Event>,
}

impl Owner {
    /// Sends a reading to the dashboard.
    fn send(&self, reading: Reading) {
        let _ = self.events.send(Event::Reading(reading));
    }

    /// Readings every refresh, commands as they come; until the dashboard leaves.
    fn run(mut self, inbox: &Receiver<Job>) -> Option<String> {
        let every = items_every(self.refresh);
        let mut readings: u32 = 0;
        let mut next = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next {
                self.read_metrics(readings.is_multiple_of(every));
                readings = readings.wrapping_add(1);
                next += self.refresh;
                if next < now {
                    next = now + self.refresh;
                }
                continue;
            }
            match inbox.recv_timeout(next - now) {
                Ok(job) => self.command(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return self.close(),
            }
        }
    }

    /// One reading of every pool's counters (and items when `items`).
    fn read_metrics(&self, items: bool) {
        let Some(host) = &self.host else { return };
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let pools = host
            .engines()
            .map(|(name, engine)| {
                let m = engine.metrics();
                let phase = if m.failure.is_some() {
                    "failed"
                } else if m.stopped {
                    "stopping"
                } else {
                    "running"
                };
                let error = engine.failure().map(|e| e.to_string()).unwrap_or_default();
                pool_metrics(name, phase, &m, error)
            })
            .collect();
        self.send(Reading::Watch(WatchResponse { unix_ms, pools }));
        if items {
            // A failed or stopped engine answers no items (its error is in the reading).
            for (name, engine) in host.engines() {
                let m = engine.metrics();
                if m.failure.is_none() && !m.stopped {
                    self.read_items(name, engine);
                }
            }
        }
    }

    /// One pool's items.
    fn read_items(&self, name: &str, engine: &Engine) {
        match engine.items() {
            Ok(items) => self.send(Reading::State(GetStateResponse {
                items: reward_items(&items),
                last_request_id: engine.metrics().last_request_id.0,
                pool: name.to_owned(),
            })),
            Err(e) => self.send(Reading::Log(format!("error: pool {name}: items: {e}"))),
        }
    }

    /// Carries out one command; its answer (or error) is a log line, then the pool's
    /// items are read again.
    fn command(&mut self, job: Job) {
        let Job { call, line } = job;
        let (pool, answer) = match call {
            Call::Reload => {
                self.reload();
                return;
            }
            Call::Draw(requests) => {
                let pool = requests.first().map(|r| r.pool.clone()).unwrap_or_default();
                let answer = self.draw(&pool, &requests).map(|answers| draws_line(&answers));
                (pool, answer)
            }
            Call::Update(request) => {
                let pool = request.pool.clone();
                let answer =
                    self.update(&pool, request.item_id.as_str(), request.quantity, request.weight);
                (pool, answer.map(|response| update_line(&response)))
            }
        };
        self.send(Reading::Log(match answer {
            Ok(said) => said,
            Err(why) => format!("error: {line}: {why}"),
        }));
        if let Some((name, engine)) = self.host.as_ref().and_then(|h| find(h, &pool)) {
            self.read_items(name, engine);
        }
    }

    /// Draws `requests` in order: single draws pipelined on the pool's client, pulls one
    /// at a time.
    fn draw(&mut self, pool: &str, requests: &[DrawRequest]) -> Result<Vec<DrawResponse>, String> {
        let at = self.pool_at(pool)?;
        let (client, ids) = self.client(at)?;
        let mut answers = Vec::with_capacity(requests.len());
        let singles = requests.iter().all(|r| r.count <= 1 && r.idempotency_key.is_empty());
        if singles {
            draw_pipelined(client, ids, requests.len(), &mut answers)?;
            return Ok(answers);
        }
        for request in requests {
            let len = u32::try_from(request.count.max(1)).unwrap_or(1);
            let key = key_of(&request.idempotency_key)?;
            let pull = if key == 0 { client.pull(len) } else { client.pull_keyed(len, key) };
            for outcome in pull.map_err(|e| e.to_string())? {
                answers.push(response(outcome, ids));
            }
        }
        Ok(answers)
    }

    /// Sets an item's stock and weight.
    fn update(
        &self,
        pool: &str,
        item: &str,
        quantity: Option<i32>,
        weight: Option<i64>,
    ) -> Result<UpdateResponse, String> {
        let host = self.host.as_ref().ok_or_else(not_open)?;
        let (_, engine) = find(host, pool).ok_or_else(|| format!("no pool {pool:?}"))?;
        let quantity = match quantity {
            None => None,
            Some(-1) => Some(Quantity::Unlimited),
            Some(q) => Some(Quantity::Finite(
                u64::try_from(q)
                    .map_err(|_| format!("quantity {q}: -1 (unlimited) or 0 or more"))?,
            )),
        };
        let weight = weight
            .map(|w| u32::try_from(w).map_err(|_| format!("weight {w}: 0 to {}", u32::MAX)))
            .transpose()?;
        let updated = engine.update(item, quantity, weight).map_err(|e| e.to_string())?;
        let items = engine.items().map_err(|e| e.to_string())?;
        let mut answer = reward_item(&updated, available_weight(&items));
        if let Some(now) = reward_items(&items).into_iter().find(|i| i.item_id == item) {
            answer = now;
        }
        Ok(UpdateResponse { item: Some(answer) })
    }

    /// The position of pool `name` (empty: the only pool).
    fn pool_at(&self, name: &str) -> Result<usize, String> {
        let host = self.host.as_ref().ok_or_else(not_open)?;
        let names: Vec<&str> = host.names().collect();
        match names.iter().position(|n| *n == name) {
            Some(at) => Ok(at),
            None if name.is_empty() && names.len() == 1 => Ok(0),
            None => Err(format!("no pool {name:?} (pools: {})", names.join(", "))),
        }
    }

    /// The client of pool `at`, made on first use.
    fn client(&mut self, at: usize) -> Result<&mut (Client, ItemIds), String> {
        let host = self.host.as_ref().ok_or_else(not_open)?;
        let engine =
            host.engine(rewardpool::host::PoolIndex(at)).ok_or_else(|| format!("no pool #{at}"))?;
        if self.clients.len() <= at {
            self.clients.resize_with(at + 1, || None);
        }
        let slot = &mut self.clients[at];
        if slot.is_none() {
            let client = engine.client().map_err(|e| e.to_string())?;
            *slot = Some((client, engine.item_ids()));
        }
        slot.as_mut().ok_or_else(|| "no client".to_owned())
    }

    /// `r`: shut the host down and open it again (recovery).
    fn reload(&mut self) {
        if let Some(why) = self.close() {
            self.send(Reading::Log(format!("error: {why}")));
        }
        match open(&self.config) {
            Ok(host) => {
                self.host = Some(host);
                self.say_opened();
            }
            Err(failure) => {
                let why = match failure {
                    Failure::BadInput(e) | Failure::CheckFailed(e) => format!("{e:#}"),
                    Failure::StdoutClosed => "stdout closed".into(),
                };
                self.send(Reading::Log(format!("error: {why} (r tries again)")));
            }
        }
    }

    /// A log line naming the pools opened and where each stands.
    fn say_opened(&self) {
        let Some(host) = &self.host else { return };
        let pools: Vec<String> = host
            .engines()
            .map(|(name, engine)| format!("{name} at id {}", engine.metrics().last_request_id.0))
            .collect();
        let dir = self.config.working_dir.display();
        self.send(Reading::Log(format!("opened {dir} (recovered): {}", pools.join(", "))));
        for pool in &self.config.pools {
            let items = pool
                .catalog
                .iter()
                .map(|item| {
                    let stock =
                        u64::try_from(item.quantity).map_or(Stock::Unlimited, Stock::Finite);
                    (item.item_id.clone(), stock)
                })
                .collect();
            self.send(Reading::Catalog { pool: pool.name.clone(), items });
        }
    }

    /// Drops the clients and shuts the host down (final snapshots); why it failed, if so.
    fn close(&mut self) -> Option<String> {
        self.clients.clear();
        let host = self.host.take()?;
        let failed: Vec<String> = host
            .shutdown()
            .into_iter()
            .filter_map(|(name, result)| result.err().map(|e| format!("pool {name:?}: {e}")))
            .collect();
        (!failed.is_empty()).then(|| failed.join("; "))
    }
}

/// Pool `name` of `host` (empty: the only pool).
fn find<'h>(host: &'h Host, name: &str) -> Option<(&'h str, &'h Engine)> {
    let mut engines = host.engines();
    if name.is_empty() {
        let only = engines.next()?;
        return engines.next().is_none().then_some(only);
    }
    engines.find(|(n, _)| *n == name)
}

/// `count` single draws, as many in flight as the client's ring holds, answered in order.
fn draw_pipelined(
    client: &mut Client,
    ids: &mut ItemIds,
    count: usize,
    answers: &mut Vec<DrawResponse>,
) -> Result<(), String> {
    let mut tickets = std::collections::VecDeque::new();
    let mut sent = 0;
    while sent < count || !tickets.is_empty() {
        if sent < count {
            match client.try_draw() {
                Ok(ticket) => {
                    tickets.push_back(ticket);
                    sent += 1;
                    continue;
                }
                Err(DrawError::Full) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        let Some(ticket) = tickets.pop_front() else { continue };
        let outcome = client.wait(ticket).map_err(|e| e.to_string())?;
        answers.push(response(outcome, ids));
    }
    Ok(())
}

/// An outcome as the service would answer it.
fn response(outcome: Outcome, ids: &mut ItemIds) -> DrawResponse {
    let item = outcome.item_id(ids).unwrap_or_default().to_owned();
    let error = if outcome.item.is_none() { "the pool is empty".to_owned() } else { String::new() };
    DrawResponse {
        request_id: outcome.request_id.0,
        item_id: item,
        error,
        replayed: outcome.replayed,
    }
}

/// An idempotency key's 16 bytes (big-endian, as the service reads them); empty = 0.
fn key_of(bytes: &[u8]) -> Result<u128, String> {
    if bytes.is_empty() {
        return Ok(0);
    }
    <[u8; 16]>::try_from(bytes)
        .map(u128::from_be_bytes)
        .map_err(|_| format!("an idempotency key is 16 bytes, got {}", bytes.len()))
}

/// The error of a command while no data directory is open.
fn not_open() -> String {
    "the data directory is not open (r opens it again)".to_owned()
}
