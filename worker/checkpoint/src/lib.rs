//! Weir's checkpoint store: which work units of a job are committed, kept in object storage and
//! arbitrated by create-if-absent puts, so that a job's output holds every input exactly once even
//! when workers and the coordinator are killed, and even if two coordinators ever run at once.
//!
//! # Layout
//! - [`store`]: [`CheckpointStore`], the epochs, plan, unit commits, manifest and notes of one job.
//! - [`record`]: the stored documents ([`UnitCommit`], [`JobManifest`]) and their object names.
//! - [`sweep`]: [`sweep_orphans`], deleting the part files of attempts that lost.
//! - [`error`]: [`CheckpointError`], transient or fatal by [`CheckpointError::is_transient`].
//!
//! # Objects
//! Under the store's prefix (conventionally `<output>/_weir/`):
//!
//! ```text
//! epochs/0000000000                 one empty marker per coordinator start
//! plan.pb                           the job's unit plan, written once
//! committed/unit-0000000042.json    one UnitCommit per committed unit, written once
//! manifest.json                     the JobManifest, written at the end from the records
//! notes/coordinator.json            small documents overwritten freely
//! ```
//!
//! # Lifecycle of a unit
//! 1. **Planned.** The first coordinator stores the plan with [`CheckpointStore::create_plan`]; a
//!    restarted (or rival) coordinator gets the same plan back, so a unit id names the same inputs
//!    for every attempt. Each coordinator start claims an epoch with
//!    [`CheckpointStore::begin_epoch`] and derives its attempt numbers from it, so attempt numbers
//!    never repeat across restarts.
//! 2. **Staged.** A worker runs an attempt and writes its own part files
//!    (`part-<unit>-<attempt>.parquet`, `_errors/part-<unit>-<attempt>.parquet`); attempts never
//!    write each other's files, so a killed or slow attempt harms nobody.
//! 3. **Committed.** When an attempt has finished writing, the coordinator calls
//!    [`CheckpointStore::commit`]: a create-if-absent put of the unit's record. The first attempt
//!    to land wins; a later one finds the record and loses ([`CommitOutcome::AlreadyCommitted`]),
//!    and its files become orphans.
//! 4. **Finished.** When every unit is committed, the coordinator reads the records
//!    ([`CheckpointStore::committed`]), writes `manifest.json`, deletes the orphans with
//!    [`sweep_orphans`] (keeping every file the records name) and writes the output's `_SUCCESS`.
//!
//! # Guarantees
//! - **Exactly once.** A unit has at most one record, and a record never changes, so the output
//!   (the files the records name) holds each unit's inputs exactly once, from one attempt.
//! - **Two coordinators.** Both commit through the same create-if-absent put on the same key; the
//!   store picks one winner and both learn it.
//! - **Crashes.** A kill before a commit lands leaves only orphans, and the unit is run again; a
//!   kill after leaves a durable record. A commit retried after a lost reply is idempotent: the
//!   same attempt gets [`CommitOutcome::Committed`] again. Every other method is idempotent too,
//!   so any step of a restarted coordinator can simply be redone.
//!
//! These rest on create-if-absent being atomic, which it is on the local filesystem (a hard link
//! of a fully written file), in memory and on S3 (`If-None-Match: *`).
//!
//! # Why one record per unit
//! A single manifest rewritten by compare-and-swap on every commit costs O(units) bytes per commit,
//! quadratic over a job of 100k units, and object_store's `LocalFileSystem` has no
//! `PutMode::Update` at all. Per-unit create-if-absent records cost O(1) per commit and work on
//! every backend; the whole-job manifest is written once, at the end.

pub mod error;
pub mod record;
pub mod store;
pub mod sweep;

pub use error::CheckpointError;
pub use record::{CommitOutcome, CommittedFile, JobManifest, UnitCommit};
pub use store::CheckpointStore;
pub use sweep::sweep_orphans;
