//! `Promote`: a pool of `serve --standby` promoted in place, without a restart.
//!
//! 1. its follower stops (what it applied is durable and recorded, its log closed);
//! 2. the pool is taken over as `rewardpool promote` does (`replica::promote::take_over`:
//!    catch up with the stream, take the leader lease, fence the old primary, write
//!    `replica.epoch`); if that fails the follower starts again and the pool stays a
//!    standby;
//! 3. its directory is opened as a primary's (a host of this one pool), its shipper starts
//!    (under `ack: replica` it gates the journal before any draw), then its gateway;
//! 4. the pool is published as a primary ([`Promoted`]): from then on requests naming it
//!    resolve to it, `ListPools`/`Watch`/`/metrics` show it as one.
//!
//! One promotion at a time per pool (the follower's lock is held throughout).

use std::sync::{Arc, Mutex};

use rewardpool::host::PoolIndex;
use rewardpool::Host;
use tonic::Status;

use super::gateway::Gateway;
use super::pools::{PoolEntry, Pools, Promoted};
use super::proto::PromoteResponse;
use crate::replica::follow::Standby;
use crate::replica::ship::Shipper;
use crate::Failure;

/// Promotes the standby pool at `index` of [`Pools::standbys`] (module docs). Blocks.
///
/// # Errors
/// `FAILED_PRECONDITION`: promoted already, or its follower had failed (the directory
/// must be rebuilt); `UNAVAILABLE`: the take-over failed (NATS, the lease, a stream that
/// keeps moving: the pool follows again); `INTERNAL`: the promoted directory could not be
/// opened or served (the pool is promoted in the stream: restart the server with `serve`).
pub(crate) fn promote(pools: &Pools, index: usize) -> Result<PromoteResponse, Status> {
    let standby = pools
        .standbys()
        .get(index)
        .ok_or_else(|| Status::internal(format!("no standby pool at {index}")))?;
    let name = standby.name.as_str();
    let mut follower = standby.follower.lock().unwrap_or_else(|e| e.into_inner());
    if standby.promoted.get().is_some() {
        return Err(Status::failed_precondition(format!(
            "pool {name:?} was promoted already: it is a primary on this server"
        )));
    }
    let Some(running) = follower.take() else {
        return Err(Status::failed_precondition(format!(
            "pool {name:?}: its follower is gone (it had failed, or an earlier promotion \
             failed after its take-over): restart the server (`serve --takeover` if the \
             directory was not promoted, else plain `serve`)"
        )));
    };
    if let Err(why) = running.stop() {
        return Err(Status::failed_precondition(format!(
            "pool {name:?}: not promoted: its follower had failed: {why:#} (rebuild this \
             standby's directory from the stream)"
        )));
    }
    let config = &standby.config;
    let Some(replication) = config.replication.clone() else {
        return Err(Status::internal(format!("pool {name:?} has no replication section")));
    };
    let taken = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(anyhow::anyhow!(e).context("cannot start a runtime")))
        .and_then(|rt| rt.block_on(crate::replica::promote::take_over(config, &replication, name)));
    let done = match taken {
        Ok(done) => done,
        Err(failure) => {
            let why = match failure {
                Failure::CheckFailed(e) | Failure::BadInput(e) => format!("{e:#}"),
                Failure::StdoutClosed => String::new(),
            };
            // Still a standby: follow again.
            let again = Standby::start(config.clone());
            let follows = again.is_ok();
            *follower = again.ok();
            return Err(Status::unavailable(format!(
                "pool {name:?}: not promoted: {why}{}",
                if follows { " (it follows the stream again)" } else { "" }
            )));
        }
    };
    let opened = |what: &str, e: &dyn std::fmt::Display| {
        Status::internal(format!(
            "pool {name:?}: promoted to epoch {} (fenced at stream sequence {}), but {what}: \
             {e}; restart the server with `serve` (without --standby) to serve it",
            done.epoch, done.fence_sequence
        ))
    };
    let host = Host::open(config).map_err(|e| opened("its directory cannot be opened", &e))?;
    let Some(engine) = host.engine(PoolIndex(0)) else {
        let _ = host.shutdown();
        return Err(opened("its directory held no pool", &""));
    };
    let shipper = match Shipper::start(name, standby.log_dir.clone(), engine.meter(), replication) {
        Ok(shipper) => shipper,
        Err(e) => {
            let _ = host.shutdown();
            return Err(opened("its shipper cannot start", &e));
        }
    };
    let settings = pools.settings();
    let gateway = match Gateway::start(name, engine, settings.gateways, settings.queue_len) {
        Ok(gateway) => gateway,
        Err(e) => {
            let _ = host.shutdown();
            let _ = shipper.stop(std::time::Duration::from_secs(1));
            return Err(opened("its gateway cannot start", &e));
        }
    };
    let entry = PoolEntry {
        name: name.to_owned(),
        index: PoolIndex(0),
        pull_max: gateway.pull_max(),
        gateway,
        meter: engine.meter(),
        ids: engine.item_ids(),
        log_dir: Some(standby.log_dir.clone()),
        promoted: true,
    };
    let _ = standby.promoted_meters.set((engine.meter(), Arc::clone(shipper.stats())));
    let promoted = Promoted { entry, host, shipper: Mutex::new(Some(shipper)) };
    if let Err(promoted) = standby.promoted.set(promoted) {
        // Not reachable: the follower's lock is held and `promoted` was empty.
        drop(promoted.entry);
        let _ = promoted.host.shutdown();
        return Err(Status::internal(format!("pool {name:?} was promoted twice")));
    }
    eprintln!(
        "rewardpool: pool {name:?}: promoted in place to epoch {}: fenced the stream at \
         sequence {}; request ids continue above {}",
        done.epoch, done.fence_sequence, done.last_request_id
    );
    Ok(PromoteResponse {
        pool: name.to_owned(),
        epoch: done.epoch,
        fence_sequence: done.fence_sequence,
        last_request_id: done.last_request_id,
    })
}
