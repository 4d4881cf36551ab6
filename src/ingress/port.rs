//! The core thread's end of one client: the ring's consumer and the client's completion
//! slots, with how far the core has served and published them.

use std::sync::Arc;

use super::request::Request;
use super::slots::SlotBlock;

/// The core's end of one client (made with the client by [`pair`](super::pair)).
pub(crate) struct Port {
    pub(crate) consumer: rtrb::Consumer<Request>,
    pub(crate) slots: Arc<SlotBlock>,
    /// Requests processed (outcome written into the slot).
    pub(crate) staged: u64,
    /// Requests published (`completed` stored).
    pub(crate) published: u64,
    /// Requests whose idempotency key's index slot the core thread has prefetched (the
    /// core's look-ahead: each key is touched once).
    pub(crate) touched: u64,
}

impl Port {
    pub(crate) fn new(consumer: rtrb::Consumer<Request>, slots: Arc<SlotBlock>) -> Port {
        Port { consumer, slots, staged: 0, published: 0, touched: 0 }
    }
}
