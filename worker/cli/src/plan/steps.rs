//! The step registry: each `op` config becomes its runnable step, named by its `op`, one arm per op.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;

use bytes::Bytes;
use weir_core::Step;
use weir_core::step::{ComputeStep, CoveredStep, Planned};
use weir_crds::{ModelSpec, MultimodalJobSpec, StepSpec};
use weir_io::StoreRegistry;
use weir_io::fetch::{FetchError, fetch, fetch_cached};
use weir_models::assets::{Asset, companions};
use weir_models::{ModelAssets, steps as model_steps};
use weir_ops::BuildError;
use weir_ops::image::chain::{ImageChain, Link, LinkStep};
use weir_ops::image::{crop, decode, draw, encode, resize, tensor};
use weir_ops::relational::{explode, filter, select};
use weir_ops::text::{chunk, normalize, tokenize};
use weir_ops::vector::{self, Metric};

use super::columns::needed_after_each_step;
use super::fusion::image_chains;

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

/// Builds the runnable steps of `spec` whose index `include` accepts (a worker builds, and loads
/// the models of, only its pool's steps), in order, the others `None`. Each step first reads the
/// objects it needs whole (tokenizer files, model weights and their companion files), so a missing
/// one fails the job before any row runs; model steps load their model here, once. Each step drops
/// the columns no later step nor the sink reads ([`needed_after_each_step`]). Consecutive image
/// steps whose columns in between nothing else reads run as one pass per image ([`image_chains`]),
/// built at the first one's position; the others keep theirs, passing morsels on
/// ([`CoveredStep`]), unless `include` leaves some step of the chain out (each is then built
/// alone).
///
/// # Errors
/// [`PlanError`] naming the first step whose config is unusable or whose object cannot be read.
pub async fn build_steps_where(
    spec: &MultimodalJobSpec,
    stores: &Arc<StoreRegistry>,
    include: impl Fn(usize) -> bool,
) -> Result<Vec<Option<Arc<dyn Step>>>, PlanError> {
    let mut steps = Vec::with_capacity(spec.steps.len());
    let needed_after = needed_after_each_step(spec);
    let chains = image_chains(spec, &needed_after);
    let checkpoint_uri = spec.checkpoint_uri();
    for (index, step) in spec.steps.iter().enumerate() {
        if !include(index) {
            steps.push(None);
            continue;
        }
        let concurrency = step.config().concurrency().map(|n| n as usize);
        let needed_of = |at: usize| needed_after[at].as_ref().map(|n| n.iter().cloned().collect());
        if let Some(chain) = chains.iter().find(|c| c.contains(&index) && (*c).clone().all(&include)) {
            steps.push(Some(if index == *chain.start() {
                let built = build_chain(spec, chain.clone()).map_err(|(index, source)| PlanError::Build {
                    index,
                    op: spec.steps[index].op(),
                    source,
                })?;
                Planned::wrap_pruned(step.op(), concurrency, needed_of(*chain.end()), Arc::new(ComputeStep(built)))
            } else {
                Arc::new(CoveredStep::new(step.op()))
            }));
            continue;
        }
        let assets = fetch_assets(index, step, stores).await?;
        let built = build_step(step, stores, &assets, &checkpoint_uri).map_err(|source| PlanError::Build {
            index,
            op: step.op(),
            source,
        })?;
        steps.push(Some(Planned::wrap_pruned(step.op(), concurrency, needed_of(index), built)));
    }
    Ok(steps)
}

/// The steps `chain` of `spec` as one [`ImageChain`] (see [`image_chains`]).
///
/// # Errors
/// The position of the step whose config is unusable, and why.
fn build_chain(spec: &MultimodalJobSpec, chain: RangeInclusive<usize>) -> Result<ImageChain, (usize, BuildError)> {
    let start = *chain.start();
    let mut links = Vec::new();
    for index in chain {
        let step = &spec.steps[index];
        let not_a_link = || BuildError::new("op", "cannot run in a chain of image steps");
        let link = Link::for_step(step).unwrap_or_else(|| Err(not_a_link())).map_err(|e| (index, e))?;
        links.push((link, LinkStep { index, op: step.op() }));
    }
    ImageChain::new(links).map_err(|e| (start, e))
}

/// Objects a step reads whole before it is built.
#[derive(Debug, Default)]
struct Assets {
    /// Each of [`StepConfig::objects`], by field (`text.tokenize`'s `tokenizer`).
    objects: BTreeMap<&'static str, Bytes>,
    /// A model step's weights and companion files.
    model: Option<ModelAssets>,
}

impl Assets {
    fn object(&self, field: &str) -> Result<&Bytes, BuildError> {
        self.objects.get(field).ok_or_else(|| BuildError::new(field, "the file was not read"))
    }
}

/// Reads the objects step `index` needs: those its config names, and a model step's files.
async fn fetch_assets(index: usize, step: &StepSpec, stores: &StoreRegistry) -> Result<Assets, PlanError> {
    let op = step.op();
    let read = async |field: &'static str, uri: &str| {
        fetch(stores, uri).await.map_err(|source| PlanError::Fetch { index, op, field, source })
    };
    let config = step.config();
    let mut assets = Assets::default();
    for (field, uri) in config.objects() {
        assets.objects.insert(field, read(field, uri).await?);
    }
    if let Some(spec) = config.model() {
        assets.model = Some(read_model(spec, read, index, op, stores).await?);
    }
    Ok(assets)
}

/// A model's weights (cached on local disk) and its companion files.
async fn read_model(
    spec: &ModelSpec,
    read: impl AsyncFn(&'static str, &str) -> Result<Bytes, PlanError>,
    index: usize,
    op: &'static str,
    stores: &StoreRegistry,
) -> Result<ModelAssets, PlanError> {
    let weights = fetch_cached(stores, &spec.uri, &model_cache_dir()).await.map_err(|source| PlanError::Fetch {
        index,
        op,
        field: "model.uri",
        source,
    })?;
    let mut assets = ModelAssets::new(Asset { uri: spec.uri.clone(), bytes: weights });
    for (companion, uri) in companions(spec) {
        let bytes = read(companion.field(), &uri).await?;
        assets = assets.with(companion, Asset { uri, bytes });
    }
    Ok(assets)
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

/// Builds one step; `checkpoint_uri` is where steps keep state beside the checkpoint
/// (`llm.prompt`'s answers).
fn build_step(
    step: &StepSpec,
    stores: &Arc<StoreRegistry>,
    assets: &Assets,
    checkpoint_uri: &str,
) -> Result<Arc<dyn Step>, BuildError> {
    match step {
        StepSpec::Download(c) => Ok(weir_io::download::build(c, stores.clone())),
        StepSpec::ImageDecode(c) => decode::build(c),
        StepSpec::ImageResize(c) => resize::build(c),
        StepSpec::ImageCrop(c) => crop::build(c),
        StepSpec::ImageDraw(c) => draw::build(c),
        StepSpec::ImageEncode(c) => encode::build(c),
        StepSpec::ImageToTensor(c) => tensor::build(c),
        StepSpec::Filter(c) => filter::build(c),
        StepSpec::Select(c) => select::build_select(c),
        StepSpec::Rename(c) => select::build_rename(c),
        StepSpec::Explode(c) => explode::build(c),
        StepSpec::TextNormalize(c) => normalize::build(c),
        StepSpec::TextChunk(c) => chunk::build(c),
        StepSpec::TextTokenize(c) => tokenize::build(c, assets.object("tokenizer")?),
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
        StepSpec::LlmPrompt(c) => weir_llm::build(c, stores, checkpoint_uri),
    }
}
