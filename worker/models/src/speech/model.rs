//! Whisper's encoder and decoder on candle; the decoder keeps its self-attention keys and values
//! between steps, so each greedy step runs the new position only, not the whole prefix again.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::whisper::Config;

/// Layer norms' epsilon in every Whisper checkpoint.
const LAYER_NORM_EPS: f64 = 1e-5;

/// Whisper's transformer (Hugging Face tensor names under `model.`). Holds no decoding state:
/// one loaded model serves any number of [`Decoding`]s at once.
pub struct WhisperModel {
    encoder: Encoder,
    decoder: Decoder,
    config: Config,
}

impl WhisperModel {
    /// Loads the weights `vb` holds for the sizes in `config`.
    ///
    /// # Errors
    /// A tensor that is missing or has another shape than `config` implies.
    pub fn load(vb: &VarBuilder, config: Config) -> Result<Self> {
        let heads = Heads::new(config.d_model, config.encoder_attention_heads);
        let encoder = Encoder::load(vb.pp("model.encoder"), &config, heads)?;
        let heads = Heads::new(config.d_model, config.decoder_attention_heads);
        let decoder = Decoder::load(vb.pp("model.decoder"), &config, heads)?;
        Ok(Self { encoder, decoder, config })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The audio features of log-mel windows `(batch, mels, 3000)`: `(batch, 1500, d_model)`.
    pub fn encode(&self, mel: &Tensor) -> Result<Tensor> {
        self.encoder.forward(mel)
    }

    /// Starts decoding against `features` (from [`Self::encode`]): the cross-attention keys and
    /// values are computed here, once.
    pub fn start(&self, features: &Tensor) -> Result<Decoding<'_>> {
        let cross = self
            .decoder
            .layers
            .iter()
            .map(|layer| layer.cross_keys_values(features, self.decoder.heads))
            .collect::<Result<_>>()?;
        Ok(Decoding { decoder: &self.decoder, cross, past: vec![None; self.decoder.layers.len()], fed: 0 })
    }
}

/// One batch being decoded: what the decoder has seen so far, as attention keys and values.
pub struct Decoding<'m> {
    decoder: &'m Decoder,
    /// Per layer: keys (transposed) and values of the audio features.
    cross: Vec<(Tensor, Tensor)>,
    /// Per layer: keys (transposed) and values of every token fed so far.
    past: Vec<Option<(Tensor, Tensor)>>,
    /// Tokens fed so far per row.
    fed: usize,
}

impl Decoding<'_> {
    /// Feeds `tokens` `(batch, n)`, the positions after those fed before, and returns the
    /// logits `(batch, vocab)` after the last of them (in the model's dtype).
    ///
    /// # Errors
    /// A shape that does not fit the batch, or more positions in all than the model's
    /// `max_target_positions`.
    pub fn next_logits(&mut self, tokens: &Tensor) -> Result<Tensor> {
        let decoder = self.decoder;
        let (_, n) = tokens.dims2()?;
        let positions = decoder.positions.narrow(0, self.fed, n)?;
        let mut x = decoder.embed.forward(tokens)?.broadcast_add(&positions)?;
        let mask = if n > 1 { Some(causal_mask(n, self.fed, x.dtype(), x.device())?) } else { None };
        for ((layer, cross), past) in decoder.layers.iter().zip(&self.cross).zip(&mut self.past) {
            let (q, keys, values) = layer.self_qkv.project(&layer.self_ln.forward(&x)?, decoder.heads)?;
            let (keys, values) = match past.take() {
                Some((old_keys, old_values)) => {
                    (Tensor::cat(&[&old_keys, &keys], 3)?, Tensor::cat(&[&old_values, &values], 2)?)
                }
                None => (keys, values),
            };
            let attended = decoder.heads.attend(&q, &keys, &values, mask.as_ref())?;
            *past = Some((keys, values));
            x = (x + layer.self_out.forward(&attended)?)?;
            let q = decoder.heads.split(&layer.cross_q.forward(&layer.cross_ln.forward(&x)?)?)?;
            let attended = decoder.heads.attend(&q, &cross.0, &cross.1, None)?;
            x = (&x + layer.cross_out.forward(&attended)?)?;
            x = (&x + layer.mlp.forward(&x)?)?;
        }
        self.fed += n;
        let last = decoder.ln.forward(&x.narrow(1, n - 1, 1)?.squeeze(1)?)?;
        // The output projection is the token embedding, (vocab, width): multiplying it by the
        // few rows as columns reads it once in its stored order, about a third faster here than
        // the rows times its transpose.
        decoder.embed.embeddings().matmul(&last.t()?)?.t()
    }
}

/// `(n, past + n)`: position `i` of the new ones sees every earlier position and itself.
fn causal_mask(n: usize, past: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let width = past + n;
    let mask: Vec<f32> =
        (0..n).flat_map(|i| (0..width).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Tensor::from_vec(mask, (n, width), device)?.to_dtype(dtype)
}

/// How attention splits the model width into heads.
#[derive(Debug, Clone, Copy)]
struct Heads {
    count: usize,
    dim: usize,
}

impl Heads {
    fn new(width: usize, count: usize) -> Self {
        Self { count, dim: width / count.max(1) }
    }

    /// `(batch, time, width)` → `(batch, heads, time, head_dim)`, contiguous.
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, time, _) = x.dims3()?;
        x.reshape((batch, time, self.count, self.dim))?.transpose(1, 2)?.contiguous()
    }

    /// softmax(q kᵀ / √head_dim + mask) v, heads merged back: `(batch, time, width)`.
    /// `keys` are transposed, `(batch, heads, head_dim, len)`.
    fn attend(&self, q: &Tensor, keys: &Tensor, values: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let q = (q * (self.dim as f64).powf(-0.5))?;
        let mut scores = q.matmul(keys)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let attended = candle_nn::ops::softmax_last_dim(&scores)?.matmul(values)?;
        let (batch, _, time, _) = attended.dims4()?;
        attended.transpose(1, 2)?.reshape((batch, time, self.count * self.dim))
    }
}

/// Query, key and value projections as one matrix product (Whisper's keys have no bias).
struct FusedQkv(Linear);

impl FusedQkv {
    fn load(width: usize, vb: &VarBuilder) -> Result<Self> {
        let (q, k, v) = (vb.pp("q_proj"), vb.pp("k_proj"), vb.pp("v_proj"));
        let weight = Tensor::cat(
            &[q.get((width, width), "weight")?, k.get((width, width), "weight")?, v.get((width, width), "weight")?],
            0,
        )?;
        let no_bias = Tensor::zeros(width, vb.dtype(), vb.device())?;
        let bias = Tensor::cat(&[q.get(width, "bias")?, no_bias, v.get(width, "bias")?], 0)?;
        Ok(Self(Linear::new(weight, Some(bias))))
    }

    /// Queries `(batch, heads, time, head_dim)`, keys transposed `(batch, heads, head_dim,
    /// time)` and values `(batch, heads, time, head_dim)`, each contiguous.
    fn project(&self, x: &Tensor, heads: Heads) -> Result<(Tensor, Tensor, Tensor)> {
        let (batch, time, _) = x.dims3()?;
        let qkv = self.0.forward(x)?.reshape((batch, time, 3, heads.count, heads.dim))?.permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let keys = qkv.get(1)?.transpose(2, 3)?.contiguous()?;
        let values = qkv.get(2)?.contiguous()?;
        Ok((q, keys, values))
    }
}

/// The feed-forward part of a block: layer norm, fc1, GELU, fc2.
struct Mlp {
    ln: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn load(width: usize, vb: &VarBuilder) -> Result<Self> {
        Ok(Self {
            ln: layer_norm(width, vb.pp("final_layer_norm"))?,
            fc1: candle_nn::linear(width, 4 * width, vb.pp("fc1"))?,
            fc2: candle_nn::linear(4 * width, width, vb.pp("fc2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(&self.ln.forward(x)?)?.gelu()?)
    }
}

struct EncoderLayer {
    self_ln: LayerNorm,
    self_qkv: FusedQkv,
    self_out: Linear,
    mlp: Mlp,
}

impl EncoderLayer {
    fn load(width: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            self_ln: layer_norm(width, vb.pp("self_attn_layer_norm"))?,
            self_qkv: FusedQkv::load(width, &vb.pp("self_attn"))?,
            self_out: candle_nn::linear(width, width, vb.pp("self_attn.out_proj"))?,
            mlp: Mlp::load(width, &vb)?,
        })
    }

    fn forward(&self, x: &Tensor, heads: Heads) -> Result<Tensor> {
        let (q, keys, values) = self.self_qkv.project(&self.self_ln.forward(x)?, heads)?;
        let x = (x + self.self_out.forward(&heads.attend(&q, &keys, &values, None)?)?)?;
        &x + self.mlp.forward(&x)?
    }
}

struct Encoder {
    conv1: Conv1d,
    conv2: Conv1d,
    positions: Tensor,
    layers: Vec<EncoderLayer>,
    ln: LayerNorm,
    heads: Heads,
}

impl Encoder {
    fn load(vb: VarBuilder, config: &Config, heads: Heads) -> Result<Self> {
        let width = config.d_model;
        let conv = |name: &str, inputs: usize, stride: usize| -> Result<Conv1d> {
            let vb = vb.pp(name);
            let config = Conv1dConfig { padding: 1, stride, ..Default::default() };
            Ok(Conv1d::new(vb.get((width, inputs, 3), "weight")?, Some(vb.get(width, "bias")?), config))
        };
        let layers = load_layers(&vb, config.encoder_layers, |vb| EncoderLayer::load(width, vb))?;
        Ok(Self {
            conv1: conv("conv1", config.num_mel_bins, 1)?,
            conv2: conv("conv2", width, 2)?,
            positions: sinusoids(config.max_source_positions, width, vb.device())?.to_dtype(vb.dtype())?,
            layers,
            ln: layer_norm(width, vb.pp("layer_norm"))?,
            heads,
        })
    }

    fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let x = self.conv2.forward(&self.conv1.forward(mel)?.gelu()?)?.gelu()?.transpose(1, 2)?;
        let mut x = x.broadcast_add(&self.positions.narrow(0, 0, x.dim(1)?)?)?;
        for layer in &self.layers {
            x = layer.forward(&x, self.heads)?;
        }
        self.ln.forward(&x)
    }
}

struct DecoderLayer {
    self_ln: LayerNorm,
    self_qkv: FusedQkv,
    self_out: Linear,
    cross_ln: LayerNorm,
    cross_q: Linear,
    cross_k: Linear,
    cross_v: Linear,
    cross_out: Linear,
    mlp: Mlp,
}

impl DecoderLayer {
    fn load(width: usize, vb: VarBuilder) -> Result<Self> {
        let cross = vb.pp("encoder_attn");
        Ok(Self {
            self_ln: layer_norm(width, vb.pp("self_attn_layer_norm"))?,
            self_qkv: FusedQkv::load(width, &vb.pp("self_attn"))?,
            self_out: candle_nn::linear(width, width, vb.pp("self_attn.out_proj"))?,
            cross_ln: layer_norm(width, vb.pp("encoder_attn_layer_norm"))?,
            cross_q: candle_nn::linear(width, width, cross.pp("q_proj"))?,
            cross_k: candle_nn::linear_no_bias(width, width, cross.pp("k_proj"))?,
            cross_v: candle_nn::linear(width, width, cross.pp("v_proj"))?,
            cross_out: candle_nn::linear(width, width, cross.pp("out_proj"))?,
            mlp: Mlp::load(width, &vb)?,
        })
    }

    /// The audio features' keys (transposed) and values for this layer's cross-attention.
    fn cross_keys_values(&self, features: &Tensor, heads: Heads) -> Result<(Tensor, Tensor)> {
        let keys = heads.split(&self.cross_k.forward(features)?)?.transpose(2, 3)?.contiguous()?;
        Ok((keys, heads.split(&self.cross_v.forward(features)?)?))
    }
}

struct Decoder {
    embed: Embedding,
    positions: Tensor,
    layers: Vec<DecoderLayer>,
    ln: LayerNorm,
    heads: Heads,
}

impl Decoder {
    fn load(vb: VarBuilder, config: &Config, heads: Heads) -> Result<Self> {
        let width = config.d_model;
        let layers = load_layers(&vb, config.decoder_layers, |vb| DecoderLayer::load(width, vb))?;
        Ok(Self {
            embed: candle_nn::embedding(config.vocab_size, width, vb.pp("embed_tokens"))?,
            positions: vb.get((config.max_target_positions, width), "embed_positions.weight")?,
            layers,
            ln: layer_norm(width, vb.pp("layer_norm"))?,
            heads,
        })
    }
}

/// `count` blocks, each from `layers.<i>` under `vb`.
fn load_layers<T>(vb: &VarBuilder, count: usize, load: impl Fn(VarBuilder) -> Result<T>) -> Result<Vec<T>> {
    (0..count).map(|i| load(vb.pp(format!("layers.{i}")))).collect()
}

fn layer_norm(width: usize, vb: VarBuilder) -> Result<LayerNorm> {
    Ok(LayerNorm::new(vb.get(width, "weight")?, vb.get(width, "bias")?, LAYER_NORM_EPS))
}

/// Whisper's fixed positional encoding of the audio: sines then cosines of geometrically spaced
/// frequencies, `(length, channels)`.
fn sinusoids(length: usize, channels: usize, device: &Device) -> Result<Tensor> {
    let half = channels / 2;
    let step = 10_000f32.ln() / (half.max(2) - 1) as f32;
    let mut values = vec![0f32; length * channels];
    for (t, row) in values.chunks_exact_mut(channels).enumerate() {
        for i in 0..half {
            let angle = t as f32 * (-(i as f32) * step).exp();
            row[i] = angle.sin();
            row[half + i] = angle.cos();
        }
    }
    Tensor::from_vec(values, (length, channels), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_causal_mask_lets_each_new_position_see_the_past_and_itself() {
        let mask = causal_mask(2, 3, DType::F32, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        let seen = |row: &Vec<f32>| row.iter().map(|v| v.is_finite()).collect::<Vec<_>>();
        assert_eq!(seen(&mask[0]), [true, true, true, true, false]);
        assert_eq!(seen(&mask[1]), [true; 5]);
    }

    #[test]
    fn sinusoids_start_at_sin_zero_cos_one() {
        let s = sinusoids(3, 4, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(s[0], [0.0, 0.0, 1.0, 1.0]);
        assert!((s[1][0] - 1f32.sin()).abs() < 1e-6);
    }
}
