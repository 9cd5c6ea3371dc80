//! Sentence embeddings from a BERT-family encoder (all-MiniLM-L6-v2 and kin): tokens in,
//! attention-masked mean pooling, optional L2 normalisation out, as sentence-transformers does.

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{BertModel, Config};
use rayon::prelude::*;
use tokenizers::{Tokenizer, TruncationParams};
use weir_crds::ModelSpec;

use super::encoder::CpuBert;
use crate::assets::{Asset, ModelAssets};
use crate::nn::unit_length;
use crate::weights::Weights;
use crate::{ModelError, device};

/// A loaded sentence embedder on its device.
pub struct SentenceEmbedder {
    model: Encoder,
    tokenizer: Tokenizer,
    hidden: usize,
    device: Device,
    normalize: bool,
}

/// The encoder: ours on the CPU in f32 (exact GELU), candle's `BertModel` otherwise.
enum Encoder {
    Cpu(Box<CpuBert>),
    Candle(Box<BertModel>),
}

/// One text's tokens.
struct Tokens {
    ids: Vec<u32>,
}

fn asset_error(field: &'static str, asset: &Asset, message: String) -> ModelError {
    ModelError::Asset { field, uri: asset.uri.clone(), message }
}

impl SentenceEmbedder {
    /// Loads the encoder, its `config.json` and `tokenizer.json`. Texts are truncated to
    /// `max_length` tokens (default: the tokenizer's setting, else the model's position limit),
    /// never past the position limit.
    ///
    /// # Errors
    /// [`ModelError`]: a missing or unusable companion file, an unavailable device, or a weight
    /// the configuration needs that is missing or misshapen.
    pub fn load(
        spec: &ModelSpec,
        assets: &ModelAssets,
        max_length: Option<u32>,
        normalize: bool,
    ) -> Result<Self, ModelError> {
        let missing = |field: &'static str| ModelError::Asset {
            field,
            uri: String::new(),
            message: "was not read before the model was built".into(),
        };
        let config_asset = assets.config.as_ref().ok_or_else(|| missing("model.config"))?;
        let config: Config = serde_json::from_slice(&config_asset.bytes)
            .map_err(|e| asset_error("model.config", config_asset, format!("is not a BERT config.json: {e}")))?;
        let tokenizer_asset = assets.tokenizer.as_ref().ok_or_else(|| missing("model.tokenizer"))?;
        let mut tokenizer = Tokenizer::from_bytes(&tokenizer_asset.bytes[..]).map_err(|e| {
            asset_error("model.tokenizer", tokenizer_asset, format!("is not a usable tokenizer.json: {e}"))
        })?;
        let limit = config.max_position_embeddings;
        let wanted = max_length.map(|m| m as usize).or_else(|| tokenizer.get_truncation().map(|t| t.max_length));
        let truncation = TruncationParams {
            max_length: wanted.unwrap_or(limit).min(limit),
            ..tokenizer.get_truncation().cloned().unwrap_or_default()
        };
        tokenizer
            .with_truncation(Some(truncation))
            .map_err(|e| asset_error("model.tokenizer", tokenizer_asset, e.to_string()))?;
        // Rows are padded per batch, to the batch's longest text, not by the tokenizer.
        tokenizer.with_padding(None);

        let device = device::select(spec.device)?;
        let dtype = device::dtype(spec.dtype, &device);
        let weights = Weights::parse(&assets.weights)?;
        let uri = weights.uri().to_string();
        let vb = weights.into_var_builder(dtype, &device);
        let model = if device.is_cpu() && dtype == DType::F32 && CpuBert::supports(&config) {
            CpuBert::load(vb, &config).map(|m| Encoder::Cpu(Box::new(m)))
        } else {
            BertModel::load(vb, &config).map(|m| Encoder::Candle(Box::new(m)))
        };
        let model = model.map_err(|e| ModelError::Weights { uri, message: e.to_string() })?;
        Ok(Self { model, tokenizer, hidden: config.hidden_size, device, normalize })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Length of each embedding.
    pub fn dimensions(&self) -> usize {
        self.hidden
    }

    /// Embeds `texts`, `batch_size` at a time, texts of similar length together so little of
    /// each batch is padding. Each result is in the order of `texts`.
    ///
    /// # Errors
    /// A per-text message when the tokenizer refuses it; a model failure fails the whole call.
    pub fn embed(&self, texts: &[&str], batch_size: usize) -> Result<Vec<Result<Vec<f32>, String>>, ModelError> {
        let tokens: Vec<Result<Tokens, String>> = texts
            .par_iter()
            .map(|text| {
                let encoding = self.tokenizer.encode_fast(*text, true).map_err(|e| format!("tokenizer: {e}"))?;
                Ok(Tokens { ids: encoding.get_ids().to_vec() })
            })
            .collect();
        let mut order: Vec<usize> = (0..texts.len()).filter(|&i| tokens[i].is_ok()).collect();
        order.sort_by_key(|&i| tokens[i].as_ref().map_or(0, |t| t.ids.len()));
        let mut results: Vec<Result<Vec<f32>, String>> = tokens
            .iter()
            .map(|t| match t {
                Ok(_) => Ok(Vec::new()),
                Err(message) => Err(message.clone()),
            })
            .collect();
        for group in order.chunks(batch_size.max(1)) {
            let batch: Vec<&Tokens> = group.iter().filter_map(|&i| tokens[i].as_ref().ok()).collect();
            for (&row, vector) in group.iter().zip(self.forward(&batch)?) {
                results[row] = Ok(vector);
            }
        }
        Ok(results)
    }

    /// One padded forward pass: `(B, L)` tokens to `B` pooled vectors.
    fn forward(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>, ModelError> {
        let longest = batch.iter().map(|t| t.ids.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0u32; batch.len() * longest];
        let mut mask = vec![0u32; batch.len() * longest];
        for (row, tokens) in batch.iter().enumerate() {
            ids[row * longest..row * longest + tokens.ids.len()].copy_from_slice(&tokens.ids);
            mask[row * longest..row * longest + tokens.ids.len()].fill(1);
        }
        let shape = (batch.len(), longest);
        let hidden = match &self.model {
            Encoder::Cpu(model) => {
                let lengths: Vec<usize> = batch.iter().map(|t| t.ids.len()).collect();
                model.forward(&ids, &lengths)?
            }
            Encoder::Candle(model) => {
                let ids = Tensor::from_vec(ids, shape, &self.device)?;
                model.forward(&ids, &ids.zeros_like()?, Some(&Tensor::from_vec(mask.clone(), shape, &self.device)?))?
            }
        };
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let mask = mask.to_dtype(hidden.dtype())?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        // A text with no tokens at all (a tokenizer without special tokens, an empty text) pools
        // to zeros rather than 0 / 0.
        let counts = mask.sum(1)?.clamp(1f64, f64::MAX)?;
        let mut pooled = summed.broadcast_div(&counts)?;
        if self.normalize {
            pooled = unit_length(&pooled)?;
        }
        Ok(pooled.to_dtype(DType::F32)?.to_vec2()?)
    }
}
