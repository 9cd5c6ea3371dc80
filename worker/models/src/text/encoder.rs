//! Our BERT encoder for the CPU: candle's matrix products and layer norms, with each layer's
//! bias, GELU, residual add and masked softmax fused into passes on the compute pool.
//!
//! candle's `BertModel` computes the exact GELU one element at a time through libm's `erff`, and
//! adds biases, residuals and the attention mask on candle's own element-wise thread pool, which
//! spins between calls: `perf` of pipeline C (1,000 sentences through all-MiniLM-L6-v2) put 13%
//! of the samples in `erff` and 15% in that pool's spinning thread. Here those element-wise steps
//! are loops the compiler vectorises, run where the products run. Tensor names, configuration
//! and results are `BertModel`'s (a test compares the two on the real weights).

use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};
use rayon::prelude::*;

use crate::nn::{contiguous_f32, contiguous_f32_mut};

/// A BERT encoder (absolute positions, exact GELU) in f32 on the CPU.
pub struct CpuBert {
    /// `(vocabulary, hidden)`, row-major.
    words: Vec<f32>,
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
            words: table("word_embeddings", config.vocab_size)?,
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
        let mut x = Vec::with_capacity(ids.len() * self.hidden);
        for (index, &id) in ids.iter().enumerate() {
            let Some(word) = self.words.get(id as usize * self.hidden..(id as usize + 1) * self.hidden) else {
                candle_core::bail!("token id {id} is outside the vocabulary")
            };
            let position = &self.positions[(index % longest) * self.hidden..][..self.hidden];
            x.extend(word.iter().zip(position).zip(&self.segment).map(|((w, p), s)| w + p + s));
        }
        let mut x =
            self.embedding_norm.forward(&Tensor::from_vec(x, (ids.len(), self.hidden), &candle_core::Device::Cpu)?)?;
        let kept: Vec<bool> = lengths.iter().flat_map(|&n| (0..longest).map(move |t| t < n)).collect();
        let shape = Shape { rows, longest, heads: self.heads, hidden: self.hidden };
        for layer in &self.layers {
            x = layer.forward(&x, shape, &kept)?;
        }
        x.reshape((rows, longest, self.hidden))
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
        let part = |name: &str| Dense::load(attention.pp("self").pp(name), hidden, hidden);
        Ok(Self {
            qkv: Dense::concat(&[part("query")?, part("key")?, part("value")?])?,
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

/// A linear layer with its weight stored transposed, `(in, out)`, for `x W`.
struct Dense {
    weight: Tensor,
    bias: Vec<f32>,
}

impl Dense {
    fn load(vb: VarBuilder, inputs: usize, outputs: usize) -> candle_core::Result<Self> {
        let weight = vb.get((outputs, inputs), "weight")?.t()?.contiguous()?;
        Ok(Self { weight, bias: vb.get(outputs, "bias")?.to_vec1()? })
    }

    /// The layers side by side: one product gives all their outputs, in order.
    fn concat(parts: &[Dense]) -> candle_core::Result<Self> {
        let weights: Vec<&Tensor> = parts.iter().map(|p| &p.weight).collect();
        Ok(Self {
            weight: Tensor::cat(&weights, 1)?,
            bias: parts.iter().flat_map(|p| p.bias.iter().copied()).collect(),
        })
    }

    /// `x W + b` for the rows of `x`, then `ending`.
    fn forward(&self, x: &Tensor, ending: Ending) -> candle_core::Result<Tensor> {
        // A fresh tensor: the endings write it in place.
        let y = x.matmul(&self.weight)?;
        let op = RowEnding { bias: &self.bias, gelu: matches!(ending, Ending::BiasGelu) };
        match ending {
            Ending::BiasResidual(residual) => y.inplace_op2(residual, &op)?,
            Ending::Bias | Ending::BiasGelu => y.inplace_op1(&op)?,
        }
        Ok(y)
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

/// What follows a product.
#[derive(Clone, Copy)]
enum Ending<'t> {
    Bias,
    BiasGelu,
    /// The bias, then this tensor (of the product's shape) added.
    BiasResidual(&'t Tensor),
}

/// `act(y + b [+ residual])` on each row `y`, in place: the residual where the op is given one
/// (as an [`InplaceOp2`]), `act` the exact GELU where `gelu` says, else nothing.
struct RowEnding<'a> {
    bias: &'a [f32],
    gelu: bool,
}

/// Rows of about this many values per task.
const ROW_CHUNK: usize = 1 << 14;

impl RowEnding<'_> {
    fn rows<'s>(&self, storage: &'s mut CpuStorage, layout: &Layout) -> candle_core::Result<&'s mut [f32]> {
        if layout.dims().last() != Some(&self.bias.len()) {
            candle_core::bail!("row-ending of {} biases on {:?}", self.bias.len(), layout.dims())
        }
        contiguous_f32_mut("row-ending", storage, layout)
    }

    fn chunk(&self) -> usize {
        (ROW_CHUNK / self.bias.len().max(1)).max(1) * self.bias.len().max(1)
    }

    fn apply(&self, rows: &mut [f32], residual: Option<&[f32]>) {
        #[cfg(target_arch = "x86_64")]
        if crate::nn::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked on the line above).
            return unsafe { self.apply_avx2(rows, residual) };
        }
        self.apply_with(rows, residual);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn apply_avx2(&self, rows: &mut [f32], residual: Option<&[f32]>) {
        self.apply_with(rows, residual);
    }

    #[inline(always)]
    fn apply_with(&self, rows: &mut [f32], residual: Option<&[f32]>) {
        for (index, row) in rows.chunks_exact_mut(self.bias.len()).enumerate() {
            // `for` loops, not `for_each`: a closure's fold is compiled apart from the AVX2
            // caller (without its target features), as `perf annotate` showed.
            // One loop per case, so that no loop computes a GELU it then discards.
            match (residual.map(|residual| &residual[index * self.bias.len()..][..self.bias.len()]), self.gelu) {
                (Some(residual), false) => {
                    for ((v, b), r) in row.iter_mut().zip(self.bias).zip(residual) {
                        *v += b + r;
                    }
                }
                (Some(residual), true) => {
                    for ((v, b), r) in row.iter_mut().zip(self.bias).zip(residual) {
                        *v = gelu(*v + b + r);
                    }
                }
                (None, false) => {
                    for (v, b) in row.iter_mut().zip(self.bias) {
                        *v += b;
                    }
                }
                (None, true) => {
                    for (v, b) in row.iter_mut().zip(self.bias) {
                        *v = gelu(*v + b);
                    }
                }
            }
        }
    }
}

impl InplaceOp1 for RowEnding<'_> {
    fn name(&self) -> &'static str {
        "row-ending"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let chunk = self.chunk();
        self.rows(storage, layout)?.par_chunks_mut(chunk).for_each(|rows| self.apply(rows, None));
        Ok(())
    }
}

impl InplaceOp2 for RowEnding<'_> {
    fn name(&self) -> &'static str {
        "row-ending-residual"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let residual = contiguous_f32("row-ending residual", s2, l2)?;
        if l1.dims() != l2.dims() {
            candle_core::bail!("row-ending of {:?} with a residual of {:?}", l1.dims(), l2.dims())
        }
        let chunk = self.chunk();
        self.rows(s1, l1)?
            .par_chunks_mut(chunk)
            .zip(residual.par_chunks(chunk))
            .for_each(|(rows, residual)| self.apply(rows, Some(residual)));
        Ok(())
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

/// The exact GELU, `x Φ(x) = x (1 + erf(x / √2)) / 2`, as `BertModel`'s `gelu_erf` (within a few
/// units in the last place).
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `erf(x)` without branches (so that loops over it vectorise): fdlibm's rational form below
/// 0.84375, Abramowitz and Stegun's 7.1.26 above (absolute error under 1.5e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let p = 1.283_791_7e-1 + z * (-3.250_421e-1 + z * (-2.848_175e-2 + z * (-5.770_270_3e-3 + z * -2.376_301_7e-5)));
    let q =
        1.0 + z * (3.979_172e-1 + z * (6.502_225e-2 + z * (5.081_306e-3 + z * (1.324_947_4e-4 + z * -3.960_228_3e-6))));
    let small = x + x * (p / q);
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    let large = (1.0 - poly * exp_non_positive(-z)).copysign(x);
    if a < 0.843_75 { small } else { large }
}

/// `e^x` for `x ≤ 0` without branches (Cephes' `expf`: a degree-5 polynomial on the reduced
/// argument, scaled by a power of two built from its bits); `e^-87` below -87.
#[inline(always)]
fn exp_non_positive(x: f32) -> f32 {
    // Adding and subtracting 1.5 × 2²³ rounds to the nearest integer without `floor`, which
    // is a library call where the target lacks SSE4.1 (and stops the loop vectorising).
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p =
        ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5;
    let e = p * r * r + r + 1.0;
    // n is in [-126, 0]: 2^n is a normal float; |r| ≤ ln 2 / 2.
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn the_gelu_matches_candles_exact_one() -> candle_core::Result<()> {
        let xs: Vec<f32> =
            (-40_000..=40_000).map(|i| i as f32 * 2.5e-4).chain([-30.0, -12.0, 15.0, 1e-20, -1e-30]).collect();
        let reference = Tensor::new(xs.as_slice(), &Device::Cpu)?.gelu_erf()?.to_vec1::<f32>()?;
        // Relative to max(1, |x|): erf's 1.5e-7 times |x| / 2, and f32 rounding on both sides.
        let (worst, at) = xs
            .iter()
            .zip(reference)
            .map(|(x, want)| ((gelu(*x) - want).abs() / x.abs().max(1.0), *x))
            .fold((0f32, 0f32), |a, b| if b.0 > a.0 { b } else { a });
        println!("largest GELU difference {worst:.2e} (relative to max(1, |x|)), at x = {at}");
        assert!(worst <= 4e-7, "gelu({at}) differs from candle's by {worst:e} (relative to max(1, |x|))");
        Ok(())
    }

    #[test]
    fn the_exponential_is_accurate_where_softmax_uses_it() {
        for i in 0..=86_000 {
            let x = -(i as f32) * 1e-3;
            let (ours, want) = (exp_non_positive(x), x.exp());
            assert!((ours - want).abs() <= 3e-7 * want.max(f32::MIN_POSITIVE), "exp({x}) = {ours}, want {want}");
        }
        assert_eq!(exp_non_positive(-200.0), exp_non_positive(-87.0));
    }

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
