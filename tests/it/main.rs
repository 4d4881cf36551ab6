//! The integration test binary: one module per concern.

mod cli;
mod config;
mod crash;
mod engine;
mod fuse;
mod process;
mod recovery;
mod wal_cli;
