#![allow(dead_code)]
//! Shared helpers for integration tests: the external services and a
//! [`cli::Snap`] harness that runs the built `snap` binary.
pub mod cli;
pub mod services;
