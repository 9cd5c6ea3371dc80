//! Our BERT encoder for the CPU: our linear layers ([`super::dense`]), candle's layer norms and
//! attention products, and a masked softmax run on the compute pool.
//!
//! candle's `BertModel` computes the exact GELU one element at a time through libm's `erff`, and
//! adds biases, residuals and the attention mask on candle's own element-wise thread pool, which
//! spins between calls: `perf` of pipeline C (1,000 sentences through all-MiniLM-L6-v2) put 13%
//! of the samples in `erff` and 15% in that pool's spinning thread. Here those element-wise steps
//! are loops the compiler vectorises, run where the products run. Tensor names, configuration
//! and results are `BertModel`'s (a test compares the two on the real weights).

use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};
use rayon::prelude::*;

use super::dense::{Dense, Ending};
use super::math::exp_non_positive;
use crate::nn::{contiguous_f32_mut, with_f32};

/// A BERT encoder (absolute positions, exact GELU) in f32 on the CPU.
pub struct CpuBert {
    /// `(vocabulary, hidden)`, f32: the loaded tensor itself (read in place, not copied: it is
    /// half of a small model's weights).
    words: Tensor,
    /// `(positions, hidden)`, row-major.
    positions: Vec<f32>,
    /// Token type 0's embedding (every text here is one segment).
    segment: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
}

impl CpuBert {
    /// Whether this encoder computes what `BertModel` would for `config` (otherwise use that).
    pub fn supports(config: &Config) -> bool {
        config.hidden_act == HiddenAct::Gelu && config.num_attention_heads > 0
    }

    /// Loads the encoder from `vb` (tensors at the root, or under the config's `model_type`, as
    /// `BertModel` finds them).
    ///
    /// # Errors
    /// A missing or misshapen tensor.
    pub fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Self> {
        let vb = match &config.model_type {
            Some(prefix) if !vb.contains_tensor("embeddings.word_embeddings.weight") => vb.pp(prefix),
            _ => vb,
        };
        let hidden = config.hidden_size;
        let embeddings = vb.pp("embeddings");
        let table = |name: &str, rows: usize| -> candle_core::Result<Vec<f32>> {
            embeddings.get((rows, hidden), &format!("{name}.weight"))?.flatten_all()?.to_vec1()
        };
        let segment = table("token_type_embeddings", config.type_vocab_size)?;
        let layers = (0..config.num_hidden_layers)
            .map(|index| Layer::load(vb.pp(format!("encoder.layer.{index}")), config))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            words: embeddings.get((config.vocab_size, hidden), "word_embeddings.weight")?.to_dtype(DType::F32)?,
            positions: table("position_embeddings", config.max_position_embeddings)?,
            segment: segment.get(..hidden).map(<[f32]>::to_vec).unwrap_or_else(|| vec![0.0; hidden]),
            embedding_norm: Norm::load(embeddings.pp("LayerNorm"), config)?,
            layers,
            heads: config.num_attention_heads,
            hidden,
        })
    }

    /// The last hidden states `(B, L, hidden)` of `ids` (`B` rows of `L` tokens, row-major), where
    /// row `b` holds `lengths[b]` real tokens and padding after them.
    ///
    /// # Errors
    /// A token id or length past the model's vocabulary or positions, or a failed product.
    pub fn forward(&self, ids: &[u32], lengths: &[usize]) -> candle_core::Result<Tensor> {
        let rows = lengths.len();
        let longest = ids.len() / rows.max(1);
        if longest * self.hidden > self.positions.len() {
            candle_core::bail!("{longest} tokens is more than the model's positions");
        }
        let x = with_f32("word embeddings", &self.words, |words| self.embed(words, ids, longest))??;
        let mut x =
            self.embedding_norm.forward(&Tensor::from_vec(x, (ids.len(), self.hidden), &candle_core::Device::Cpu)?)?;
        let kept: Vec<bool> = lengths.iter().flat_map(|&n| (0..longest).map(move |t| t < n)).collect();
        let shape = Shape { rows, longest, heads: self.heads, hidden: self.hidden };
        for layer in &self.layers {
            x = layer.forward(&x, shape, &kept)?;
        }
        x.reshape((rows, longest, self.hidden))
    }

    /// Each token's word, position and segment embeddings summed, `(tokens, hidden)` row-major.
    fn embed(&self, words: &[f32], ids: &[u32], longest: usize) -> candle_core::Result<Vec<f32>> {
        let mut x = Vec::with_capacity(ids.len() * self.hidden);
        for (index, &id) in ids.iter().enumerate() {
            let Some(word) = words.get(id as usize * self.hidden..(id as usize + 1) * self.hidden) else {
                candle_core::bail!("token id {id} is outside the vocabulary")
            };
            let position = &self.positions[(index % longest) * self.hidden..][..self.hidden];
            x.extend(word.iter().zip(position).zip(&self.segment).map(|((w, p), s)| w + p + s));
        }
        Ok(x)
    }
}

/// The dimensions of one forward pass.
#[derive(Clone, Copy)]
struct Shape {
    rows: usize,
    longest: usize,
    heads: usize,
    hidden: usize,
}

/// One encoder layer: self-attention, then the feed-forward block, each with a residual and norm.
struct Layer {
    /// Query, key and value in one product.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

impl Layer {
    fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Self> {
        let (hidden, inner) = (config.hidden_size, config.intermediate_size);
        let attention = vb.pp("attention");
        let part = |name: &str| attention.pp("self").pp(name);
        Ok(Self {
            qkv: Dense::side_by_side(&[part("query"), part("key"), part("value")], hidden, hidden)?,
            attention_out: Dense::load(attention.pp("output").pp("dense"), hidden, hidden)?,
            attention_norm: Norm::load(attention.pp("output").pp("LayerNorm"), config)?,
            intermediate: Dense::load(vb.pp("intermediate").pp("dense"), hidden, inner)?,
            output: Dense::load(vb.pp("output").pp("dense"), inner, hidden)?,
            output_norm: Norm::load(vb.pp("output").pp("LayerNorm"), config)?,
        })
    }

    /// `x`: `(rows × longest, hidden)`; `kept`: whether each token is real (not padding).
    fn forward(&self, x: &Tensor, shape: Shape, kept: &[bool]) -> candle_core::Result<Tensor> {
        let Shape { rows, longest, heads, hidden } = shape;
        let head_size = hidden / heads;
        let qkv = self.qkv.forward(x, Ending::Bias)?;
        // (rows, longest, 3, heads, head) -> three (rows, heads, longest, head)
        let qkv = qkv.reshape((rows, longest, 3, heads, head_size))?;
        let part = |i: usize| qkv.narrow(2, i, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous();
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let scores = q.matmul(&k.t()?)?;
        scores.inplace_op1(&MaskedSoftmax { kept, longest, heads, scale: (head_size as f32).sqrt().recip() })?;
        let context = scores.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((rows * longest, hidden))?;
        let attended = self.attention_norm.forward(&self.attention_out.forward(&context, Ending::BiasResidual(x))?)?;
        let inner = self.intermediate.forward(&attended, Ending::BiasGelu)?;
        self.output_norm.forward(&self.output.forward(&inner, Ending::BiasResidual(&attended))?)
    }
}

/// A layer norm over the last dimension (candle's fused kernel).
struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl Norm {
    fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Self> {
        let hidden = config.hidden_size;
        Ok(Self { weight: vb.get(hidden, "weight")?, bias: vb.get(hidden, "bias")?, eps: config.layer_norm_eps as f32 })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// The attention's softmax over `(rows, heads, longest, longest)` scores, in place: each score
/// scaled, padding positions given no weight (as adding `f32::MIN` does).
struct MaskedSoftmax<'a> {
    /// `(rows, longest)`: whether a key position is a real token.
    kept: &'a [bool],
    longest: usize,
    heads: usize,
    scale: f32,
}

impl InplaceOp1 for MaskedSoftmax<'_> {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let data = contiguous_f32_mut(self.name(), storage, layout)?;
        let longest = self.longest.max(1);
        if data.len() != self.kept.len() * self.heads * longest {
            candle_core::bail!("masked-softmax of {:?} for {} tokens", layout.dims(), self.kept.len())
        }
        // One (row, head) block of `longest × longest` scores per task.
        data.par_chunks_mut(longest * longest).enumerate().for_each(|(block, scores)| {
            let kept = &self.kept[(block / self.heads) * longest..][..longest];
            softmax_block(scores, kept, self.scale);
        });
        Ok(())
    }
}

/// [`softmax_line`] over each line of `scores`, compiled for AVX2 where the CPU has it.
fn softmax_block(scores: &mut [f32], kept: &[bool], scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if crate::nn::has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked on the line above).
        return unsafe { softmax_block_avx2(scores, kept, scale) };
    }
    for line in scores.chunks_exact_mut(kept.len()) {
        softmax_line(line, kept, scale);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn softmax_block_avx2(scores: &mut [f32], kept: &[bool], scale: f32) {
    for line in scores.chunks_exact_mut(kept.len()) {
        softmax_line(line, kept, scale);
    }
}

/// `softmax(scale × line)` over the kept positions, zero elsewhere; uniform if none is kept (as
/// `BertModel`'s all-`f32::MIN` line is).
#[inline(always)]
fn softmax_line(line: &mut [f32], kept: &[bool], scale: f32) {
    let mut top = f32::NEG_INFINITY;
    for (v, &k) in line.iter().zip(kept) {
        if k {
            top = top.max(v * scale);
        }
    }
    if top == f32::NEG_INFINITY {
        let uniform = 1.0 / line.len() as f32;
        return line.fill(uniform);
    }
    let mut sum = 0.0;
    for (v, &k) in line.iter_mut().zip(kept) {
        *v = if k { exp_non_positive(*v * scale - top) } else { 0.0 };
        sum += *v;
    }
    let inverse = sum.recip();
    for v in line {
        *v *= inverse;
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// Scaled scores plus `f32::MIN` where masked, through candle's softmax: the reference.
    #[test]
    fn the_masked_softmax_matches_adding_the_mask_before_candles() -> candle_core::Result<()> {
        let (rows, heads, longest, scale) = (3, 2, 5, 0.125f32);
        let kept: Vec<bool> = [4, 5, 1].iter().flat_map(|&n| (0..longest).map(move |t| t < n)).collect();
        let scores = Tensor::randn(0f32, 4., (rows, heads, longest, longest), &Device::Cpu)?;
        let bias: Vec<f32> = kept.iter().map(|&k| if k { 0.0 } else { f32::MIN }).collect();
        let bias = Tensor::from_vec(bias, (rows, 1, 1, longest), &Device::Cpu)?;
        let want = candle_nn::ops::softmax_last_dim(&(scores.affine(f64::from(scale), 0.0)?.broadcast_add(&bias)?))?;
        let ours = scores.copy()?;
        ours.inplace_op1(&MaskedSoftmax { kept: &kept, longest, heads, scale })?;
        let diff = (ours - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "differs by {diff}");
        Ok(())
    }
}
