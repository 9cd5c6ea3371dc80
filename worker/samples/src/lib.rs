//! Deterministic generators of sample media: what `weir generate` writes, and what tests,
//! benchmarks and examples run on.
//!
//! Everything here is deterministic for a given seed, so a failing test reproduces exactly. The
//! test servers (an S3-compatible server, a fault-injecting proxy) are in `weir-testkit`, which
//! only tests depend on.

pub mod docs;
pub mod images;
pub mod media;
pub mod speech;
