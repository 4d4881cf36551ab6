//! The integration test binary: one module per concern.

mod engine;
