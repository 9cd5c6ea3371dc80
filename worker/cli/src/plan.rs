//! The step registry: each `op` config becomes its runnable step, one line per op.

use std::sync::Arc;

use weir_core::Step;
use weir_crds::{MultimodalJobSpec, StepSpec};
use weir_io::StoreRegistry;
use weir_io::store::S3Settings;
use weir_ops::BuildError;
use weir_ops::image::{crop, decode, encode, resize, tensor};
use weir_ops::relational::{explode, filter, select};
use weir_ops::text::{chunk, normalize};

/// A step whose config cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("spec.steps[{index}] ({op}).{source}")]
pub struct PlanError {
    pub index: usize,
    pub op: &'static str,
    pub source: BuildError,
}

/// Builds the runnable steps of `spec`, in order.
///
/// # Errors
/// [`PlanError`] naming the first step whose config is unusable.
pub fn build_steps(spec: &MultimodalJobSpec, stores: &Arc<StoreRegistry>) -> Result<Vec<Arc<dyn Step>>, PlanError> {
    spec.steps
        .iter()
        .enumerate()
        .map(|(index, step)| build_step(step, stores).map_err(|source| PlanError { index, op: step.op(), source }))
        .collect()
}

fn build_step(step: &StepSpec, stores: &Arc<StoreRegistry>) -> Result<Arc<dyn Step>, BuildError> {
    match step {
        StepSpec::Download(c) => Ok(weir_io::download::build(c, stores.clone())),
        StepSpec::ImageDecode(c) => decode::build(c),
        StepSpec::ImageResize(c) => resize::build(c),
        StepSpec::ImageCrop(c) => crop::build(c),
        StepSpec::ImageEncode(c) => encode::build(c),
        StepSpec::ImageToTensor(c) => tensor::build(c),
        StepSpec::Filter(c) => filter::build(c),
        StepSpec::Select(c) => select::build_select(c),
        StepSpec::Rename(c) => select::build_rename(c),
        StepSpec::Explode(c) => explode::build(c),
        StepSpec::TextNormalize(c) => normalize::build(c),
        StepSpec::TextChunk(c) => chunk::build(c),
        other => Err(BuildError::new("op", format!("{} is not implemented yet", other.op()))),
    }
}

/// The store registry for a job, honouring `spec.storage`.
pub fn stores_for(spec: &MultimodalJobSpec) -> Arc<StoreRegistry> {
    let storage = spec.storage.clone().unwrap_or_default();
    Arc::new(StoreRegistry::new(S3Settings { endpoint: storage.endpoint, region: storage.region }))
}
