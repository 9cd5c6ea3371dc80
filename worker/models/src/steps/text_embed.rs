//! `text.embed`: a text column to sentence vectors (fixed-size list of f32, unit length unless
//! `normalize: false`).

use std::sync::Arc;

use arrow_array::RecordBatch;
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{BuildError, RowFailure, Step, StepError, StepOutput};
use weir_crds::TextEmbed;
use weir_ops::text::string_rows;

use super::vector_column;
use crate::text::SentenceEmbedder;
use crate::{ModelAssets, device};

/// Texts per forward pass when the manifest does not say.
pub const DEFAULT_BATCH_SIZE: usize = 64;

/// The runnable `text.embed` step.
pub struct EmbedText {
    input: String,
    output: String,
    embedder: SentenceEmbedder,
    batch_size: usize,
}

/// Loads the model `config` names from `assets` (weights, tokenizer, config).
///
/// # Errors
/// [`BuildError`] naming `model.*`: an unusable file, a missing or misshapen tensor, or an
/// unavailable device.
pub fn build(config: &TextEmbed, assets: &ModelAssets) -> Result<Arc<dyn Step>, BuildError> {
    let embedder = SentenceEmbedder::load(&config.model, assets, config.max_length, config.normalize.unwrap_or(true))?;
    Ok(Arc::new(ComputeStep(EmbedText {
        input: config.input.clone(),
        output: config.output.clone(),
        embedder,
        batch_size: config.batch_size.map_or(DEFAULT_BATCH_SIZE, |b| b as usize),
    })))
}

impl Kernel for EmbedText {
    fn concurrency(&self) -> Option<usize> {
        device::batches_in_flight(self.embedder.device())
    }

    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let rows = string_rows(input, &self.input)?;
        let present: Vec<(usize, &str)> = rows.iter().enumerate().filter_map(|(i, t)| Some((i, (*t)?))).collect();
        let texts: Vec<&str> = present.iter().map(|(_, t)| *t).collect();
        let embedded = self.embedder.embed(&texts, self.batch_size).map_err(|e| StepError::Other(e.to_string()))?;
        let mut vectors = vec![None; rows.len()];
        let mut failures = Vec::new();
        for ((row, _), result) in present.into_iter().zip(embedded) {
            match result {
                Ok(vector) => vectors[row] = Some(vector),
                Err(message) => failures.push(RowFailure::new(row, message)),
            }
        }
        let column = vector_column(&vectors, self.embedder.dimensions());
        StepOutput::with_column(input, &self.output, column, failures)
    }
}
