#![allow(dead_code)]
//! Shared helpers for integration tests: the external services, a
//! [`cli::Snap`] harness that runs the built `snap` binary, and a reference
//! model with [`verify::verify_repository`].
pub mod cli;
pub mod gen;
pub mod profiled;
pub mod services;
pub mod verify;
