//! [`CheckpointStore`]: epochs, the plan, unit commits, the manifest and notes under one prefix.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::CheckpointError;
use crate::record::{
    COMMITTED_DIR, EPOCHS_DIR, MANIFEST, NOTES_DIR, PLAN, check_note_name, epoch_name, parse_epoch_name,
    parse_record_name, record_name,
};
use crate::{CommitOutcome, JobManifest, UnitCommit};

/// How many records [`CheckpointStore::committed`] reads at once: enough to hide S3 latency over
/// 100k units, few enough not to exhaust a connection pool.
const READ_CONCURRENCY: usize = 16;

/// How often a create-if-absent put that reports "exists" is followed by a read that finds
/// nothing before giving up (see [`CheckpointError::Contended`]).
const CREATE_ROUNDS: usize = 5;

/// A job's checkpoint: which units are committed, and by which attempt.
///
/// Cheap to clone (the store is shared). Every object lives under `prefix` (conventionally the
/// job output's `_weir/` folder); see the crate docs for the layout and lifecycle.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl CheckpointStore {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        Self { store, prefix }
    }

    /// Claims the next epoch number (0, 1, 2, ...) by create-if-absent of `epochs/<n:010>`.
    ///
    /// The coordinator calls it once per start and folds the epoch into its attempt numbers, so
    /// an attempt number is never reused across restarts.
    ///
    /// # Guarantees
    /// Distinct for every call, even concurrent ones from different processes: the listing only
    /// picks a starting point, and a caller that loses the race for a number tries the next one.
    /// Numbers are claimed in order; one may be skipped when a create that succeeded is retried
    /// after a lost reply (it then reads as taken).
    ///
    /// # Errors
    /// [`CheckpointError::Store`] when listing or putting fails; [`CheckpointError::EpochsExhausted`]
    /// past `u32::MAX`.
    pub async fn begin_epoch(&self) -> Result<u32, CheckpointError> {
        let dir = self.prefix.clone().join(EPOCHS_DIR);
        let mut epoch = self.next_unclaimed_epoch(&dir).await?;
        loop {
            if self.create(&dir.clone().join(epoch_name(epoch)), Bytes::new()).await? {
                return Ok(epoch);
            }
            epoch = epoch.checked_add(1).ok_or_else(|| CheckpointError::EpochsExhausted { key: dir.to_string() })?;
        }
    }

    /// One past the highest claimed epoch (0 when none is).
    async fn next_unclaimed_epoch(&self, dir: &Path) -> Result<u32, CheckpointError> {
        let listing = self.store.list_with_delimiter(Some(dir)).await.map_err(|e| CheckpointError::store(dir, e))?;
        let highest =
            listing.objects.iter().filter_map(|meta| meta.location.filename().and_then(parse_epoch_name)).max();
        match highest {
            None => Ok(0),
            Some(n) => n.checked_add(1).ok_or_else(|| CheckpointError::EpochsExhausted { key: dir.to_string() }),
        }
    }

    /// Stores the job's unit plan once (create-if-absent `plan.pb`).
    ///
    /// # Guarantees
    /// Returns the stored plan: `plan` if this call created it, the existing bytes otherwise, so
    /// every coordinator of the job works from the first one's plan. Idempotent.
    ///
    /// # Errors
    /// [`CheckpointError::Store`] when a put or get fails.
    pub async fn create_plan(&self, plan: Bytes) -> Result<Bytes, CheckpointError> {
        let key = self.prefix.clone().join(PLAN);
        Ok(self.create_or_read(&key, plan.clone()).await?.unwrap_or(plan))
    }

    /// Commits a unit attempt: create-if-absent of `committed/unit-<unit:010>.json`.
    ///
    /// The caller must have finished writing every file in `commit.files` before calling.
    ///
    /// # Guarantees
    /// - At most one attempt of a unit is ever committed, whatever the number of concurrent
    ///   callers or coordinators; its record never changes afterwards.
    /// - Idempotent: when the stored record has the same `attempt` as `commit` (a retry after a
    ///   lost reply), the result is [`CommitOutcome::Committed`] again.
    /// - Otherwise the result is [`CommitOutcome::AlreadyCommitted`] with the winner's record;
    ///   the loser's files are orphans for [`crate::sweep_orphans`].
    ///
    /// # Errors
    /// [`CheckpointError::Store`] when a put or get fails (the commit may or may not have landed:
    /// retry it); [`CheckpointError::Corrupt`] when the stored record does not parse.
    pub async fn commit(&self, commit: &UnitCommit) -> Result<CommitOutcome, CheckpointError> {
        let key = self.record_key(commit.unit);
        let body =
            serde_json::to_vec(commit).map_err(|source| CheckpointError::Encode { key: key.to_string(), source })?;
        let Some(existing) = self.create_or_read(&key, Bytes::from(body)).await? else {
            return Ok(CommitOutcome::Committed);
        };
        let winner = decode_record(&key, commit.unit, &existing)?;
        Ok(if winner.attempt == commit.attempt {
            CommitOutcome::Committed
        } else {
            CommitOutcome::AlreadyCommitted(winner)
        })
    }

    /// Withdraws `unit`'s record, so the unit is run again: for a record whose files were found
    /// missing or changed. The only way a record ever goes away.
    ///
    /// # Guarantees
    /// Idempotent: a record already gone is not an error. Call it only while no attempt of the
    /// unit can commit (the coordinator holds no lease on it).
    ///
    /// # Errors
    /// [`CheckpointError::Store`] when the delete fails.
    pub async fn withdraw(&self, unit: u64) -> Result<(), CheckpointError> {
        let key = self.record_key(unit);
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(CheckpointError::store(&key, e)),
        }
    }

    /// Every committed unit, by id: lists `committed/` and reads the records, 16 at a time.
    ///
    /// # Guarantees
    /// Every unit whose [`commit`](Self::commit) returned before this call started is included,
    /// with the record that won. Objects in `committed/` that are not named like records are ignored.
    ///
    /// # Errors
    /// [`CheckpointError::Store`] when listing or a read fails; [`CheckpointError::Corrupt`] when
    /// a record does not parse or names another unit than its key.
    pub async fn committed(&self) -> Result<BTreeMap<u64, UnitCommit>, CheckpointError> {
        let dir = self.prefix.clone().join(COMMITTED_DIR);
        let listing = self.store.list_with_delimiter(Some(&dir)).await.map_err(|e| CheckpointError::store(&dir, e))?;
        let records = listing
            .objects
            .into_iter()
            .filter_map(|meta| Some((meta.location.filename().and_then(parse_record_name)?, meta.location)));
        futures::stream::iter(records)
            .map(|(unit, key)| self.read_record(unit, key))
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn read_record(&self, unit: u64, key: Path) -> Result<(u64, UnitCommit), CheckpointError> {
        let Some(bytes) = self.read(&key).await? else {
            return Err(CheckpointError::Corrupt { key: key.to_string(), message: "listed but not found".into() });
        };
        Ok((unit, decode_record(&key, unit, &bytes)?))
    }

    /// Writes `manifest.json`, replacing any earlier one.
    ///
    /// # Guarantees
    /// Idempotent: the manifest is derived from the immutable records, so rewriting it after a
    /// crash writes the same document.
    ///
    /// # Errors
    /// [`CheckpointError::Store`] when the put fails.
    pub async fn write_manifest(&self, manifest: &JobManifest) -> Result<(), CheckpointError> {
        let key = self.prefix.clone().join(MANIFEST);
        let body = serde_json::to_vec_pretty(manifest)
            .map_err(|source| CheckpointError::Encode { key: key.to_string(), source })?;
        self.overwrite(&key, Bytes::from(body)).await
    }

    /// The job's manifest, or `None` before [`write_manifest`](Self::write_manifest).
    ///
    /// # Errors
    /// [`CheckpointError::Store`] when the get fails; [`CheckpointError::Corrupt`] when it does not parse.
    pub async fn manifest(&self) -> Result<Option<JobManifest>, CheckpointError> {
        let key = self.prefix.clone().join(MANIFEST);
        let Some(bytes) = self.read(&key).await? else { return Ok(None) };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CheckpointError::Corrupt { key: key.to_string(), message: e.to_string() })
    }

    /// Stores a small named document under `notes/<name>`, replacing any earlier one (e.g.
    /// `coordinator.json` holding the coordinator's address). Last writer wins.
    ///
    /// # Errors
    /// [`CheckpointError::BadNoteName`] unless `name` is a plain file name (ASCII letters, digits,
    /// `.`, `_`, `-`, not starting with `.`); [`CheckpointError::Store`] when the put fails.
    pub async fn put_note(&self, name: &str, body: Bytes) -> Result<(), CheckpointError> {
        let key = self.note_key(name)?;
        self.overwrite(&key, body).await
    }

    /// The note `name`, or `None` if it was never written.
    ///
    /// # Errors
    /// As [`put_note`](Self::put_note), for a read.
    pub async fn note(&self, name: &str) -> Result<Option<Bytes>, CheckpointError> {
        let key = self.note_key(name)?;
        self.read(&key).await
    }

    fn record_key(&self, unit: u64) -> Path {
        self.prefix.clone().join(COMMITTED_DIR).join(record_name(unit))
    }

    fn note_key(&self, name: &str) -> Result<Path, CheckpointError> {
        check_note_name(name).map_err(|message| CheckpointError::BadNoteName { name: name.to_string(), message })?;
        Ok(self.prefix.clone().join(NOTES_DIR).join(name))
    }

    /// Creates `key` holding `body` unless it exists: `None` if this call created it, else the
    /// stored bytes.
    ///
    /// "Exists" followed by "not found" happens when S3 answers `409` to a put racing another
    /// conditional put that then failed; the put is tried again, a bounded number of times.
    async fn create_or_read(&self, key: &Path, body: Bytes) -> Result<Option<Bytes>, CheckpointError> {
        for _ in 0..CREATE_ROUNDS {
            if self.create(key, body.clone()).await? {
                return Ok(None);
            }
            if let Some(existing) = self.read(key).await? {
                return Ok(Some(existing));
            }
        }
        Err(CheckpointError::Contended { key: key.to_string(), rounds: CREATE_ROUNDS })
    }

    /// Create-if-absent put: `true` if this call created `key`, `false` if it already existed.
    async fn create(&self, key: &Path, body: Bytes) -> Result<bool, CheckpointError> {
        let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.store.put_opts(key, PutPayload::from(body), options).await {
            Ok(_) => Ok(true),
            // S3-compatible stores differ in how they refuse `If-None-Match: *`.
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(CheckpointError::store(key, e)),
        }
    }

    async fn overwrite(&self, key: &Path, body: Bytes) -> Result<(), CheckpointError> {
        self.store.put(key, PutPayload::from(body)).await.map(drop).map_err(|e| CheckpointError::store(key, e))
    }

    /// The bytes at `key`, or `None` if there is no such object.
    async fn read(&self, key: &Path) -> Result<Option<Bytes>, CheckpointError> {
        let result = match self.store.get(key).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(CheckpointError::store(key, e)),
        };
        result.bytes().await.map(Some).map_err(|e| CheckpointError::store(key, e))
    }
}

/// Parses a stored record and checks it is the record of `unit`.
fn decode_record(key: &Path, unit: u64, bytes: &[u8]) -> Result<UnitCommit, CheckpointError> {
    let corrupt = |message: String| CheckpointError::Corrupt { key: key.to_string(), message };
    let record: UnitCommit = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if record.unit != unit {
        return Err(corrupt(format!("holds the record of unit {}", record.unit)));
    }
    Ok(record)
}
