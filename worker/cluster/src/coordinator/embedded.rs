//! The coordinator of the embedded `weir run`: the same stored plan, epochs, commit records and
//! finalize as [`Coordinator`](super::Coordinator), driven by a pipeline in the same process
//! instead of workers over RPC, so a killed run resumes where it stopped.
//!
//! # Guarantees
//! - A run reads the units no earlier run (embedded or distributed) of the job committed, in a new
//!   epoch, so its files never reuse an earlier attempt's names.
//! - A unit counts once it is published and committed; a killed run loses only its units in
//!   flight, and the next run redoes just those. Their leftover files are deleted when the job is
//!   finalized.
//! - A run first checks the files of every earlier commit: a unit whose file went missing or
//!   changed since is withdrawn and runs again.

use std::collections::BTreeSet;
use std::sync::Arc;

use weir_checkpoint::{CheckpointStore, CommitOutcome, UnitCommit};
use weir_core::unit::BoxError;
use weir_core::{UnitSummary, WorkUnit};
use weir_crds::MultimodalJobSpec;
use weir_io::StoreRegistry;
use weir_io::sink::UnitListener;

use super::publish::{Claim, publish, unpublish};
use super::state::Verdict;
use super::{CoordinatorError, finalize, load_or_create_plan};
use crate::leases::ATTEMPTS_PER_EPOCH;

/// What earlier runs of the job committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    pub units: u64,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_failed: u64,
}

/// The job's totals once it is finalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finalized {
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_failed: u64,
}

/// One embedded run of a job: the units it still has to do, and how to commit and finish them.
pub struct LocalCoordinator {
    spec: MultimodalJobSpec,
    stores: Arc<StoreRegistry>,
    checkpoint: CheckpointStore,
    units_total: u64,
    pending: Vec<WorkUnit>,
    committed: Committed,
}

impl LocalCoordinator {
    /// Opens the job's checkpoint, takes a new epoch, loads the stored plan (or plans the source
    /// and stores it) and the commit records.
    ///
    /// # Errors
    /// When the checkpoint or the source cannot be read, or the stored plan is unreadable.
    pub async fn open(spec: &MultimodalJobSpec, stores: Arc<StoreRegistry>) -> Result<Self, CoordinatorError> {
        let location = stores.resolve(&spec.checkpoint_uri())?;
        let checkpoint = CheckpointStore::new(location.store.clone(), location.path.clone());
        let epoch = checkpoint.begin_epoch().await?;
        let units = load_or_create_plan(spec, &stores, &checkpoint).await?;
        let mut records = checkpoint.committed().await?;
        let earlier: Vec<UnitCommit> = records.values().cloned().collect();
        for (unit, _) in finalize::withdraw_broken(&stores, &checkpoint, &earlier).await? {
            records.remove(&unit);
        }
        let done: BTreeSet<u64> = records.keys().copied().collect();
        let committed = records.values().fold(Committed::default(), |sum, c| Committed {
            units: sum.units + 1,
            rows_in: sum.rows_in + c.rows_in,
            rows_out: sum.rows_out + c.rows_out,
            rows_failed: sum.rows_failed + c.errors,
        });
        let units_total = units.len() as u64;
        let attempt = epoch.saturating_mul(ATTEMPTS_PER_EPOCH);
        let mut pending: Vec<WorkUnit> =
            units.into_iter().filter(|u| !done.contains(&u.id)).map(|u| WorkUnit { attempt, ..u }).collect();
        pending.sort_by_key(WorkUnit::lease_order);
        Ok(Self { spec: spec.clone(), stores, checkpoint, units_total, pending, committed })
    }

    pub fn units_total(&self) -> u64 {
        self.units_total
    }

    /// What earlier runs committed (nothing on a first run).
    pub fn committed_before(&self) -> Committed {
        self.committed
    }

    /// The units this run must do, largest first ([`WorkUnit::lease_order`]); empty after the
    /// first call.
    pub fn take_pending(&mut self) -> Vec<WorkUnit> {
        std::mem::take(&mut self.pending)
    }

    /// Commits units for this run's sink; cheap to clone.
    pub fn committer(&self) -> UnitCommitter {
        UnitCommitter {
            checkpoint: self.checkpoint.clone(),
            stores: self.stores.clone(),
            sink_uri: self.spec.sink.parquet.uri.clone(),
        }
    }

    /// Writes the manifest, deletes the files no commit names, and writes `_SUCCESS` last. Call it
    /// once every unit this run took is committed. Idempotent.
    ///
    /// # Errors
    /// [`CoordinatorError::Failed`] when more rows failed than the error policy allows (no marker
    /// is written); storage errors otherwise.
    pub async fn finalize(&self) -> Result<Finalized, CoordinatorError> {
        match finalize::finalize(&self.spec, &self.stores, &self.checkpoint, self.units_total).await? {
            Verdict::Succeeded { rows_in, rows_out, rows_failed } => Ok(Finalized { rows_in, rows_out, rows_failed }),
            Verdict::Failed(message) => Err(CoordinatorError::Failed(message)),
            Verdict::Redo(units) => {
                let units: Vec<String> =
                    units.into_iter().map(|(unit, reason)| format!("unit {unit}: {reason}")).collect();
                Err(CoordinatorError::Failed(format!(
                    "committed files changed during the run; their units were withdrawn, run the job again to redo them ({})",
                    units.join("; ")
                )))
            }
        }
    }
}

/// Publishes and commits finished attempts to the job's checkpoint.
#[derive(Clone)]
pub struct UnitCommitter {
    checkpoint: CheckpointStore,
    stores: Arc<StoreRegistry>,
    sink_uri: String,
}

impl UnitCommitter {
    /// Publishes `claim`'s staged files into the output and commits them, unless another attempt
    /// of its unit was committed first, in which case this attempt's published files are deleted
    /// (best effort: finalize deletes what is left). Returns whether this attempt is the
    /// committed one.
    ///
    /// # Errors
    /// When the files cannot be published, or the commit record cannot be written or read.
    pub async fn commit(&self, claim: &Claim<'_>, rows_in: u64) -> Result<bool, BoxError> {
        let files = publish(&self.stores, &self.sink_uri, claim).await?;
        let commit = UnitCommit {
            unit: claim.unit,
            attempt: claim.attempt,
            rows_in,
            rows_out: claim.rows_out,
            errors: claim.errors,
            files,
        };
        match self.checkpoint.commit(&commit).await? {
            CommitOutcome::Committed => Ok(true),
            CommitOutcome::AlreadyCommitted(_) => {
                unpublish(&self.stores, &commit.files).await;
                Ok(false)
            }
        }
    }
}

/// The embedded run's sink listener: each unit is published and committed once its files are
/// closed, so a killed run does not redo it.
impl UnitListener for UnitCommitter {
    async fn unit_closed(&mut self, unit: &WorkUnit, summary: &UnitSummary) -> Result<(), BoxError> {
        let claim = Claim {
            unit: summary.unit,
            attempt: summary.attempt,
            rows_out: summary.rows,
            errors: summary.errors,
            files: &summary.files,
        };
        self.commit(&claim, unit.rows()).await?;
        Ok(())
    }
}
