//! `rewardpool tui`: the terminal dashboard (issue 11). This is its pure core so far: the
//! state as a value ([`state`]), the arithmetic on readings ([`series`]), the rendering as a
//! function of the state ([`render`]), the command parser ([`command`]) and the keys and
//! typed lines applied to the state ([`keys`]), and commands into the service's requests and
//! its answers into log lines ([`request`]). The terminal
//! loop and the gRPC client come next; until then `service::tui` answers "not available".

pub(crate) mod command;
pub(crate) mod keys;
pub(crate) mod render;
pub(crate) mod request;
pub(crate) mod series;
pub(crate) mod state;
