//! The step registry: each `op` config becomes its runnable step, one line per op.

use std::sync::Arc;

use bytes::Bytes;
use weir_core::Step;
use weir_core::step::WithConcurrency;
use weir_crds::{ModelSpec, MultimodalJobSpec, StepSpec};
use weir_io::StoreRegistry;
use weir_io::fetch::{FetchError, fetch, fetch_cached};
use weir_io::store::S3Settings;
use weir_models::assets::{Asset, companions};
use weir_models::{ModelAssets, steps as model_steps};
use weir_ops::BuildError;
use weir_ops::image::{crop, decode, encode, resize, tensor};
use weir_ops::relational::{explode, filter, select};
use weir_ops::text::{chunk, normalize, tokenize};
use weir_ops::vector::{self, Metric};

/// A step that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Its config is unusable.
    #[error("spec.steps[{index}] ({op}).{source}")]
    Build { index: usize, op: &'static str, source: BuildError },
    /// An object it needs (a tokenizer file) could not be read.
    #[error("spec.steps[{index}] ({op}).{field}: {source}")]
    Fetch { index: usize, op: &'static str, field: &'static str, source: FetchError },
}

/// Builds the runnable steps of `spec`, in order, first reading the objects they need whole
/// (tokenizer files, model weights and their companion files), so a missing one fails the job
/// before any row runs. Model steps load their model here, once.
///
/// # Errors
/// [`PlanError`] naming the first step whose config is unusable or whose object cannot be read.
pub async fn build_steps(
    spec: &MultimodalJobSpec,
    stores: &Arc<StoreRegistry>,
) -> Result<Vec<Arc<dyn Step>>, PlanError> {
    Ok(build_steps_where(spec, stores, |_| true).await?.into_iter().flatten().collect())
}

/// As [`build_steps`], for the steps whose index `include` accepts (a worker builds, and loads the
/// models of, only its pool's steps); the others are `None`.
///
/// # Errors
/// As [`build_steps`].
pub async fn build_steps_where(
    spec: &MultimodalJobSpec,
    stores: &Arc<StoreRegistry>,
    include: impl Fn(usize) -> bool,
) -> Result<Vec<Option<Arc<dyn Step>>>, PlanError> {
    let mut steps = Vec::with_capacity(spec.steps.len());
    for (index, step) in spec.steps.iter().enumerate() {
        if !include(index) {
            steps.push(None);
            continue;
        }
        let assets = fetch_assets(index, step, stores).await?;
        let built =
            build_step(step, stores, &assets).map_err(|source| PlanError::Build { index, op: step.op(), source })?;
        steps.push(Some(match step.config().concurrency() {
            Some(n) => WithConcurrency::wrap(built, n as usize),
            None => built,
        }));
    }
    Ok(steps)
}

/// Objects a step reads whole before it is built.
#[derive(Debug, Default)]
struct Assets {
    /// `text.tokenize`'s `tokenizer.json`.
    tokenizer: Bytes,
    /// A model step's weights and companion files.
    model: Option<ModelAssets>,
}

/// Reads the objects step `index` needs.
async fn fetch_assets(index: usize, step: &StepSpec, stores: &StoreRegistry) -> Result<Assets, PlanError> {
    let read = async |field: &'static str, uri: &str| {
        fetch(stores, uri).await.map_err(|source| PlanError::Fetch { index, op: step.op(), field, source })
    };
    let model =
        async |spec: &ModelSpec| -> Result<Assets, PlanError> {
            let weights = fetch_cached(stores, &spec.uri, &model_cache_dir())
                .await
                .map_err(|source| PlanError::Fetch { index, op: step.op(), field: "model.uri", source })?;
            let mut assets = ModelAssets::new(Asset { uri: spec.uri.clone(), bytes: weights });
            for (companion, uri) in companions(spec) {
                let bytes = read(companion.field(), &uri).await?;
                assets = assets.with(companion, Asset { uri, bytes });
            }
            Ok(Assets { model: Some(assets), ..Assets::default() })
        };
    match step {
        StepSpec::TextTokenize(c) => Ok(Assets { tokenizer: read("tokenizer", &c.tokenizer).await?, model: None }),
        StepSpec::TextEmbed(c) => model(&c.model).await,
        StepSpec::ImageEmbed(c) => model(&c.model).await,
        StepSpec::ImageClassify(c) => model(&c.model).await,
        StepSpec::ImageDetect(c) => model(&c.model).await,
        StepSpec::AudioTranscribe(c) => model(&c.model).await,
        _ => Ok(Assets::default()),
    }
}

/// Where remote model weights are cached: `$WEIR_MODEL_CACHE`, else `$XDG_CACHE_HOME/weir/models`,
/// else `~/.cache/weir/models`, else the temporary folder.
fn model_cache_dir() -> std::path::PathBuf {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
    env("WEIR_MODEL_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("weir/models")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/weir/models")))
        .unwrap_or_else(|| std::env::temp_dir().join("weir-models"))
}

/// The model assets of a model step (read by [`fetch_assets`]).
fn model_assets(assets: &Assets) -> Result<&ModelAssets, BuildError> {
    assets.model.as_ref().ok_or_else(|| BuildError::new("model", "the model's files were not read"))
}

fn build_step(step: &StepSpec, stores: &Arc<StoreRegistry>, assets: &Assets) -> Result<Arc<dyn Step>, BuildError> {
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
        StepSpec::TextTokenize(c) => tokenize::build(c, &assets.tokenizer),
        StepSpec::DocumentText(c) => weir_ops::document::build(c),
        StepSpec::VectorCosine(c) => vector::build(c, Metric::Cosine),
        StepSpec::VectorDot(c) => vector::build(c, Metric::Dot),
        StepSpec::VectorL2(c) => vector::build(c, Metric::L2),
        StepSpec::Upload(c) => weir_io::upload::build(c, stores),
        StepSpec::VideoMetadata(c) => weir_media::video::metadata::build(c, stores.clone()),
        StepSpec::VideoFrames(c) => weir_media::video::frames::build(c, stores.clone()),
        StepSpec::AudioDecode(c) => weir_media::audio::decode::build(c, stores.clone()),
        StepSpec::AudioResample(c) => weir_media::audio::resample::build(c),
        StepSpec::AudioMetadata(c) => weir_media::audio::metadata::build(c, stores.clone()),
        StepSpec::AudioChunk(c) => weir_media::audio::chunk::build(c),
        StepSpec::TextEmbed(c) => model_steps::text_embed::build(c, model_assets(assets)?),
        StepSpec::ImageEmbed(c) => model_steps::image::build_embed(c, model_assets(assets)?),
        StepSpec::ImageClassify(c) => model_steps::image::build_classify(c, model_assets(assets)?),
        StepSpec::ImageDetect(c) => model_steps::detect::build(c, model_assets(assets)?),
        StepSpec::AudioTranscribe(c) => model_steps::transcribe::build(c, model_assets(assets)?),
    }
}

/// The store registry for a job, honouring `spec.storage`.
pub fn stores_for(spec: &MultimodalJobSpec) -> Arc<StoreRegistry> {
    let storage = spec.storage.clone().unwrap_or_default();
    Arc::new(StoreRegistry::new(S3Settings { endpoint: storage.endpoint, region: storage.region }))
}
