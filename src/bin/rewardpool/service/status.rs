//! Errors to gRPC status codes, from their kinds (the variants of [`DrawError`] and
//! [`EngineError`], the [`FailureKind`] inside), never from their messages. The message is
//! the error's own `Display`, so a client reads the same sentence the command line prints.
//!
//! | error                                   | code                |
//! |-----------------------------------------|---------------------|
//! | bad input (count, pool, key, message)   | `INVALID_ARGUMENT`  |
//! | key reused with another count           | `FAILED_PRECONDITION` |
//! | gateway queue full past its deadline    | `RESOURCE_EXHAUSTED` |
//! | disk full (the pool goes on)            | `RESOURCE_EXHAUSTED` |
//! | the pool failed (I/O), or stopping      | `UNAVAILABLE`       |
//! | the server is stopping                  | `UNAVAILABLE`       |
//! | an update the pool refuses              | `INVALID_ARGUMENT`  |
//! | a draw or update on a standby pool      | `FAILED_PRECONDITION` |
//! | a bug (a ticket taken twice, a panic)   | `INTERNAL`          |

use rewardpool::{DrawError, EngineError};
use tonic::{Code, Status};

/// The status of a draw or pull the engine did not serve.
pub(crate) fn draw_error(pool: &str, e: DrawError) -> Status {
    let code = match e {
        DrawError::PullLen { .. } => Code::InvalidArgument,
        DrawError::KeyConflict { .. } => Code::FailedPrecondition,
        DrawError::Full | DrawError::NoSpace => Code::ResourceExhausted,
        DrawError::ShuttingDown | DrawError::Failed(_) => Code::Unavailable,
        DrawError::AlreadyTaken => Code::Internal,
    };
    match e {
        DrawError::Failed(kind) => Status::new(code, format!("pool {pool:?}: {e} ({kind})")),
        _ => Status::new(code, format!("pool {pool:?}: {e}")),
    }
}

/// The status of an engine call (update, state) that failed.
pub(crate) fn engine_error(pool: &str, e: &EngineError) -> Status {
    let code = match e {
        EngineError::Update(_) | EngineError::Config(_) => Code::InvalidArgument,
        EngineError::NoSpace(_) => Code::ResourceExhausted,
        EngineError::ShuttingDown | EngineError::Failed(_) => Code::Unavailable,
        EngineError::TooManyClients { .. } => Code::ResourceExhausted,
        _ => Code::Internal,
    };
    Status::new(code, format!("pool {pool:?}: {e}"))
}

/// A draw or update on a pool this server follows as a standby.
pub(crate) fn not_primary(e: &NotPrimary) -> Status {
    Status::new(Code::FailedPrecondition, e.to_string())
}

/// The server is stopping: new streams and requests are refused.
pub(crate) fn stopping() -> Status {
    Status::unavailable("the server is shutting down: no new requests are accepted")
}

/// A request the client got wrong, with the reason.
pub(crate) fn invalid(reason: impl Into<String>) -> Status {
    Status::invalid_argument(reason)
}

/// The status a Draw stream ends with when its inbound side failed. tonic reports a message
/// that does not decode, and a frame cut short, as `INTERNAL` (its codec's code for any
/// protobuf parse error; the `DecodeError` is not kept as a source): on the inbound side that
/// is the client's bytes, so it becomes `INVALID_ARGUMENT` with tonic's reason. A message
/// longer than the decoder's limit (tonic: `OUT_OF_RANGE`) is a malformed request too. Anything
/// else (a reset stream, a transport error) keeps tonic's own code.
pub(crate) fn inbound(status: Status) -> Status {
    match status.code() {
        Code::Internal => {
            Status::invalid_argument(format!("malformed DrawRequest: {}", status.message()))
        }
        Code::OutOfRange => Status::invalid_argument(format!(
            "malformed DrawRequest: longer than the 4 MiB limit: {}",
            status.message()
        )),
        _ => status,
    }
}

/// A draw or update named a pool this server only follows (the error kind behind
/// `FAILED_PRECONDITION`, [`not_primary`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotPrimary {
    /// The pool.
    pub(crate) pool: String,
}

impl std::fmt::Display for NotPrimary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pool {:?} is a standby on this server: it follows the primary's replication \
             stream and takes no draws or updates (send them to the primary, or promote it \
             here: `rewardpool promote --connect HOST:PORT --pool NAME`)",
            self.pool
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewardpool::FailureKind;

    #[test]
    fn draw_errors_map_by_kind() {
        let io = FailureKind::Io { kind: std::io::ErrorKind::Other, os_code: Some(5) };
        let cases = [
            (DrawError::PullLen { len: 2000, max: 1000 }, Code::InvalidArgument),
            (DrawError::KeyConflict { key: 1, len: 2, original: 1 }, Code::FailedPrecondition),
            (DrawError::Full, Code::ResourceExhausted),
            (DrawError::NoSpace, Code::ResourceExhausted),
            (DrawError::ShuttingDown, Code::Unavailable),
            (DrawError::Failed(io), Code::Unavailable),
            (DrawError::AlreadyTaken, Code::Internal),
        ];
        for (e, code) in cases {
            let status = draw_error("p", e);
            assert_eq!(status.code(), code, "{e:?}");
            assert!(status.message().contains("pool \"p\""), "{status:?}");
        }
    }

    #[test]
    fn a_standby_pool_is_a_failed_precondition() {
        let status = not_primary(&NotPrimary { pool: "p".into() });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().contains("pool \"p\" is a standby"), "{status:?}");
    }

    #[test]
    fn a_decode_error_is_invalid_argument() {
        let status = Status::internal("failed to decode Protobuf message: buffer underflow");
        assert_eq!(inbound(status).code(), Code::InvalidArgument);
        assert_eq!(inbound(Status::cancelled("gone")).code(), Code::Cancelled);
    }
}
