//! The integration test binary: one module per concern.

mod cli;
mod config;
mod crash;
mod engine;
mod process;
mod readme;
mod recovery;
mod wal_cli;
