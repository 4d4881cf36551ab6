//! The integration test binary: one module per concern.

mod engine;
mod cli;
mod config;
mod recovery;
