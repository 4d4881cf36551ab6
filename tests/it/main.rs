//! The integration test binary: one module per concern.

mod campaign;
mod cli;
mod config;
mod crash;
mod crash_steps;
mod engine;
mod failure;
mod fuse;
mod host;
mod keys;
mod library;
mod log_format;
mod metrics;
mod pools;
mod process;
mod pulls;
mod readme;
mod recovery;
mod repair;
mod repair_faults;
mod service;
mod service_abuse;
mod service_crash;
mod service_harness;
mod service_metrics;
mod wal_cli;
