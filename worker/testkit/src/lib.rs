//! Generators of realistic media fixtures for Weir's tests, benchmarks and examples.
//!
//! Everything here is deterministic for a given seed, so a failing test reproduces exactly.
//! [`moto`] starts a local S3-compatible server for tests that need real object storage, and
//! [`proxy`] puts a TCP proxy in front of it that can stage an outage.

pub mod docs;
pub mod images;
pub mod media;
pub mod moto;
pub mod process;
pub mod proxy;
pub mod speech;
