//! Test servers and helpers for Weir's tests and benchmarks; the media generators are
//! `weir-samples`, re-exported here so tests name one crate.
//!
//! [`moto`] starts a local S3-compatible server for tests that need real object storage, and
//! [`proxy`] puts a TCP proxy in front of it that can stage an outage; [`prometheus`] starts a
//! real Prometheus scraping a run's processes; [`openai`] is an OpenAI-compatible server whose answers
//! and faults are scripted by the prompts; [`logs`] captures what a test logs.

pub mod logs;
pub mod moto;
pub mod openai;
pub mod process;
pub mod prometheus;
pub mod proxy;

pub use weir_samples::{docs, images, media, speech};
