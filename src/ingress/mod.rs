//! Ingress: what a caller touches. A [`Client`] pushes fixed-size requests on its SPSC ring
//! and reads outcomes from its completion slots; the core thread holds the other end of
//! both, a [`Port`]; [`ItemIds`] names an outcome's item; the [`Intake`] is what every
//! client sees of the core thread (its doorbell, whether intake is closed, whether it has
//! stopped and why).
//!
//! ```text
//!  Client ──try_draw, try_pull──▶ rtrb ring ──▶ Port (core thread): select, append, commit
//!    ▲                                             │
//!    └── SlotBlock (slots, pull area) ◀── publish once the group is durable
//! ```
//!
//! The engine (above) starts the core thread and owns the ports; nothing here imports it.

mod client;
mod ids;
mod intake;
mod port;
mod request;
pub(crate) mod slots;

pub use client::{Client, DrawError, Outcome, Pull, PullTicket, Ticket};
pub use ids::ItemIds;
pub use request::PULL_LEN_MAX;

pub(crate) use client::{pair, ClientShape};
pub(crate) use ids::IdCell;
pub(crate) use intake::Intake;
pub(crate) use port::Port;
pub(crate) use request::{Request, RequestKind};
pub(crate) use slots::{Completion, SlotBlock};
