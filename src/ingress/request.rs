//! Fixed-size request records carried by the SPSC rings from a client to the core thread.

/// The most draws one pull may ask for. A client may accept fewer when its engine's log
/// cannot hold that many draws in one group (a small segment): see `Client::pull_max`.
pub const PULL_LEN_MAX: u32 = 1000;

/// What a client asks of the core thread. `Copy`, no heap pointers, at most 64 bytes, so a
/// ring of them is allocated once and never again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Request {
    /// The client's request number (0, 1, 2, ... in push order); also its slot.
    pub(crate) seq: u64,
    /// Optional idempotency key (0 = none): a request whose key the core knows with the
    /// same count gets the original outcomes and draws nothing (`pool::keys`).
    pub(crate) key: u128,
    /// What to do.
    pub(crate) kind: RequestKind,
}

/// The kinds of request a ring carries. Updates and state reads travel on the control path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// Draw one unit.
    Draw,
    /// Draw `len` units (1 ≤ `len` ≤ [`PULL_LEN_MAX`]) in one group: consecutive request
    /// ids, all durable or none. The items go to the client's pull area from position `at`
    /// (free-running; the area is indexed modulo its length), the first request id to the
    /// request's slot.
    Pull {
        /// Draws asked for.
        len: u32,
        /// Where the first item goes in the client's pull area.
        at: u64,
    },
}

impl RequestKind {
    /// Draws this request makes.
    #[inline]
    pub(crate) fn draws(self) -> u32 {
        match self {
            RequestKind::Draw => 1,
            RequestKind::Pull { len, .. } => len,
        }
    }
}

const _: () = assert!(std::mem::size_of::<Request>() <= 64);
// A keyed pull's outcomes always fit in the key window's arena.
const _: () = assert!(PULL_LEN_MAX as usize <= crate::pool::KEY_DRAWS_MIN);
