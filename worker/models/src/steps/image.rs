//! `image.embed` (pooled features as a fixed-size list of f32) and `image.classify` (the top
//! label, plus the `topK` best `{label, index, score}`), on one image-model kernel.

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Fields};
use rayon::prelude::*;
use weir_core::batch::{drop_rows, with_column};
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{BuildError, RowFailure, Step, StepError, StepOutput};
use weir_crds::{ImageClassify, ImageEmbed, ModelSpec};
use weir_ops::image::ImageColumn;

use super::{labels, struct_list_column, vector_column};
use crate::nn::unit_length;
use crate::vision::VisionModel;
use crate::weights::Weights;
use crate::{ModelAssets, ModelError, device};

/// Images per forward pass when the manifest does not say.
pub const DEFAULT_BATCH_SIZE: usize = 16;
/// Labels kept per image when the manifest does not say.
pub const DEFAULT_TOP_K: usize = 5;

/// What the step makes of the pooled features.
enum Head {
    Embed { normalize: bool },
    Classify { labels: Vec<String>, top_k: usize },
}

/// The runnable `image.embed` or `image.classify` step.
pub struct ImageModelStep {
    input: String,
    output: String,
    model: VisionModel,
    head: Head,
    batch_size: usize,
}

fn load(spec: &ModelSpec, assets: &ModelAssets) -> Result<VisionModel, ModelError> {
    VisionModel::load(spec, &Weights::parse(&assets.weights)?)
}

fn kernel(input: &str, output: &str, model: VisionModel, head: Head, batch_size: Option<u32>) -> ImageModelStep {
    ImageModelStep {
        input: input.to_string(),
        output: output.to_string(),
        model,
        head,
        batch_size: batch_size.map_or(DEFAULT_BATCH_SIZE, |b| b as usize),
    }
}

/// Builds `image.embed`, loading its model from `assets`.
///
/// # Errors
/// [`BuildError`] naming `model.*`: a missing or misshapen tensor, or an unavailable device.
pub fn build_embed(config: &ImageEmbed, assets: &ModelAssets) -> Result<Arc<dyn Step>, BuildError> {
    let model = load(&config.model, assets)?;
    let head = Head::Embed { normalize: config.normalize.unwrap_or(true) };
    Ok(Arc::new(ComputeStep(kernel(&config.input, &config.output, model, head, config.batch_size))))
}

/// Builds `image.classify`, loading its model and labels from `assets`.
///
/// # Errors
/// As [`build_embed`], and a labels file whose count differs from the classifier's.
pub fn build_classify(config: &ImageClassify, assets: &ModelAssets) -> Result<Arc<dyn Step>, BuildError> {
    Ok(Arc::new(ComputeStep(classify_kernel(config, assets)?)))
}

/// The `image.classify` kernel, for callers that run it directly.
///
/// # Errors
/// As [`build_classify`].
pub fn classify_kernel(config: &ImageClassify, assets: &ModelAssets) -> Result<ImageModelStep, BuildError> {
    let model = load(&config.model, assets)?;
    let classes = model.classes();
    let labels = match &assets.labels {
        Some(asset) => labels::parse(asset, classes)?,
        None => labels::indices(classes),
    };
    let top_k = config.top_k.map_or(DEFAULT_TOP_K, |k| k as usize).min(classes);
    Ok(kernel(&config.input, &config.output, model, Head::Classify { labels, top_k }, config.batch_size))
}

/// The top `k` classes of one probability row, best first.
fn top_k(probabilities: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> = probabilities.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(k);
    ranked
}

impl ImageModelStep {
    /// The model's output rows (features, or probabilities) for one batch of prepared images.
    fn run(&self, inputs: &[&[f32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let features = self.model.features(&self.model.batch(inputs)?)?;
        let out = match &self.head {
            Head::Embed { normalize: true } => unit_length(&features)?,
            Head::Embed { normalize: false } => features,
            Head::Classify { .. } => self.model.probabilities(&features)?,
        };
        out.to_vec2::<f32>()
    }

    fn columns(&self, outputs: &[Option<Vec<f32>>]) -> Vec<(String, ArrayRef)> {
        match &self.head {
            Head::Embed { .. } => vec![(self.output.clone(), vector_column(outputs, self.model.feature_size()))],
            Head::Classify { labels, top_k: k } => {
                let ranked: Vec<Option<Vec<(usize, f32)>>> =
                    outputs.iter().map(|p| p.as_deref().map(|p| top_k(p, *k))).collect();
                vec![
                    (self.output.clone(), top_labels(&ranked, labels)),
                    (format!("{}_topk", self.output), ranked_column(&ranked, labels)),
                ]
            }
        }
    }
}

fn top_labels(ranked: &[Option<Vec<(usize, f32)>>], labels: &[String]) -> ArrayRef {
    let mut builder = StringBuilder::new();
    for row in ranked {
        builder.append_option(row.as_ref().and_then(|r| r.first()).map(|(i, _)| labels[*i].as_str()));
    }
    Arc::new(builder.finish())
}

fn ranked_fields() -> Fields {
    Fields::from(vec![
        Field::new("label", DataType::Utf8, false),
        Field::new("index", DataType::UInt32, false),
        Field::new("score", DataType::Float32, false),
    ])
}

fn ranked_column(ranked: &[Option<Vec<(usize, f32)>>], labels: &[String]) -> ArrayRef {
    let entries: Vec<(usize, f32)> = ranked.iter().flatten().flatten().copied().collect();
    let names = StringArray::from_iter_values(entries.iter().map(|(i, _)| labels[*i].as_str()));
    let indices = UInt32Array::from_iter_values(entries.iter().map(|(i, _)| *i as u32));
    let scores = Float32Array::from_iter_values(entries.iter().map(|(_, s)| *s));
    let columns: Vec<ArrayRef> = vec![Arc::new(names), Arc::new(indices), Arc::new(scores)];
    let lengths: Vec<Option<usize>> = ranked.iter().map(|r| r.as_ref().map(Vec::len)).collect();
    struct_list_column(ranked_fields(), columns, &lengths)
}

impl Kernel for ImageModelStep {
    fn concurrency(&self) -> Option<usize> {
        device::batches_in_flight(self.model.device())
    }

    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let column = ImageColumn::from_batch(input, &self.input)?;
        let spec = *self.model.input();
        let present: Vec<usize> = (0..column.len()).filter(|&i| column.get(i).is_some()).collect();
        let mut failures = Vec::new();
        let mut outputs = vec![None; input.num_rows()];
        // Images are prepared a batch at a time, so only one batch of f32 pixels (600 KB an
        // image at 224x224) exists at once, however large the morsel.
        for rows in present.chunks(self.batch_size.max(1)) {
            let prepared: Vec<Result<Vec<f32>, String>> = rows
                .par_iter()
                .map(|&row| column.get(row).map_or_else(|| Err("null image".to_string()), |img| spec.prepare(img)))
                .collect();
            let mut ready: Vec<(usize, Vec<f32>)> = Vec::with_capacity(rows.len());
            for (&row, result) in rows.iter().zip(prepared) {
                match result {
                    Ok(pixels) => ready.push((row, pixels)),
                    Err(message) => failures.push(RowFailure::new(row, message)),
                }
            }
            let inputs: Vec<&[f32]> = ready.iter().map(|(_, p)| p.as_slice()).collect();
            let results = self.run(&inputs).map_err(|e| StepError::Other(format!("running the image model: {e}")))?;
            for ((row, _), out) in ready.iter().zip(results) {
                outputs[*row] = Some(out);
            }
        }
        let mut batch = input.clone();
        for (name, array) in self.columns(&outputs) {
            batch = with_column(&batch, &name, array)?;
        }
        let failed: Vec<usize> = failures.iter().map(|f| f.row).collect();
        Ok(StepOutput::new(drop_rows(&batch, &failed)?, failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_ranks_best_first() {
        assert_eq!(top_k(&[0.1, 0.6, 0.3], 2), vec![(1, 0.6), (2, 0.3)]);
    }
}
