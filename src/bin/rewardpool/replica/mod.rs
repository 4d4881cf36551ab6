//! Replication through NATS JetStream, the network side (issue 12): `serve`'s shipper (one
//! per replicated pool, `ship`), `rewardpool follow` (`follow`), `rewardpool promote`
//! (`promote`), and the message format they
//! share (`wire`). What they need from the engine is the library's `rewardpool::replicate`
//! (the log tail, the replica's log); no NATS code is in the library.

pub(crate) mod follow;
pub(crate) mod promote;
pub(crate) mod ship;
mod wire;
