//! Generators of realistic media fixtures for Weir's tests, benchmarks and examples.
//!
//! Everything here is deterministic for a given seed, so a failing test reproduces exactly.

pub mod docs;
pub mod images;
pub mod media;
pub mod process;
pub mod speech;
