//! A job's plan, built once from the manifest and used by every runner (the embedded `weir run`
//! and the distributed worker): its stores, reader, steps, error handling, memory budget and sink.

mod columns;
mod fusion;
mod steps;

use std::sync::Arc;

use weir_core::budget::default_memory_limit;
use weir_core::{ErrorHandling, MemoryBudget, Step, UnitReader};
use weir_crds::{MultimodalJob, MultimodalJobSpec};
use weir_io::StoreRegistry;
use weir_io::sink::SinkPlan;
use weir_io::source;
use weir_io::store::S3Settings;

pub use steps::PlanError;

/// Of the memory budget, the most one open row group may take.
const ROW_GROUP_SHARE: u64 = 8;

/// What a runner runs a job with. Steps are built separately ([`JobPlan::steps`]): they load
/// models, and a worker builds only its pool's.
pub struct JobPlan {
    /// `metadata.name`, or `job`.
    pub name: String,
    pub spec: MultimodalJobSpec,
    pub stores: Arc<StoreRegistry>,
    pub reader: Arc<dyn UnitReader>,
    pub errors: ErrorHandling,
    pub budget: MemoryBudget,
    /// The job's Parquet sink, row groups sized to the budget (its buffers count against it).
    pub sink: SinkPlan,
}

impl JobPlan {
    /// The plan of `job`, with a memory budget of `memory_limit` bytes (default
    /// [`default_memory_limit`]).
    pub fn new(job: &MultimodalJob, memory_limit: Option<u64>) -> Self {
        let spec = job.spec.clone();
        let stores = stores_for(&spec);
        let policy = spec.error_policy();
        let budget = MemoryBudget::new(memory_limit.unwrap_or_else(default_memory_limit));
        let row_group_bytes = (budget.limit() / ROW_GROUP_SHARE) as usize;
        Self {
            name: job_name(job),
            reader: source::reader(&spec.source, stores.clone()),
            errors: ErrorHandling { skip_rows: policy.skips_rows(), max_error_ratio: policy.max_error_ratio },
            budget,
            sink: SinkPlan::new(&spec.sink.parquet, stores.clone(), row_group_bytes),
            stores,
            spec,
        }
    }

    /// The budget's size in bytes.
    pub fn memory_limit(&self) -> u64 {
        self.budget.limit()
    }

    /// Builds every step, in order (see [`steps::build_steps_where`]).
    ///
    /// # Errors
    /// [`PlanError`] naming the first step whose config is unusable or whose files cannot be read.
    pub async fn steps(&self) -> Result<Vec<Arc<dyn Step>>, PlanError> {
        Ok(self.steps_where(|_| true).await?.into_iter().flatten().collect())
    }

    /// Builds the steps whose index `include` accepts (loading their models); the others are
    /// `None`.
    ///
    /// # Errors
    /// As [`JobPlan::steps`].
    pub async fn steps_where(&self, include: impl Fn(usize) -> bool) -> Result<Vec<Option<Arc<dyn Step>>>, PlanError> {
        steps::build_steps_where(&self.spec, &self.stores, include).await
    }
}

/// The job's name (`metadata.name`), or `job`.
pub fn job_name(job: &MultimodalJob) -> String {
    job.metadata.name.clone().unwrap_or_else(|| "job".into())
}

/// The store registry for a job, honouring `spec.storage`.
pub fn stores_for(spec: &MultimodalJobSpec) -> Arc<StoreRegistry> {
    let storage = spec.storage.clone().unwrap_or_default();
    Arc::new(StoreRegistry::new(S3Settings { endpoint: storage.endpoint, region: storage.region }))
}
