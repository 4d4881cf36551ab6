//! Fixed-size request records carried by the SPSC rings from a client to the core thread.

/// What a client asks of the core thread. `Copy`, no heap pointers, at most 64 bytes, so a
/// ring of them is allocated once and never again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Request {
    /// The client's request number (0, 1, 2, ... in push order); also its slot.
    pub(crate) seq: u64,
    /// Optional idempotency key (0 = none). Reserved: a later issue makes a retried key
    /// return its original outcome.
    pub(crate) key: u128,
    /// What to do.
    pub(crate) kind: RequestKind,
}

/// The kinds of request a ring carries. Updates and state reads travel on the control path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RequestKind {
    /// Draw one unit.
    Draw = 1,
}

const _: () = assert!(std::mem::size_of::<Request>() <= 64);
