//! MTCNN's three networks (P-Net, R-Net, O-Net), with facenet-pytorch's tensor names.

use candle_core::{Device, Tensor};

use crate::ModelError;
use crate::nn::bias::{BiasActivation, BiasPrelu};
use crate::nn::conv::Linear;
use crate::nn::im2col::FlatFilters;
use crate::nn::winograd::WinogradFilters;
use crate::nn::{Activation, Pad};
use crate::weights::Weights;

/// The fewest input channels a 3x3 layer runs Winograd's convolution with.
const WINOGRAD_MIN_INPUTS: usize = 16;

/// A plain valid (unpadded) stride-1 convolution with bias.
struct Conv {
    weight: Tensor,
    bias: Tensor,
    /// The CPU's im2col convolution.
    dense_cpu: Option<FlatFilters>,
    /// The CPU's Winograd convolution of a 3x3 layer, with an ending that adds nothing (the
    /// layer's bias comes with its PReLU).
    winograd_cpu: Option<(WinogradFilters, BiasActivation)>,
}

impl Conv {
    fn load(w: &Weights, name: &str, shape: [usize; 4], device: &Device) -> Result<Self, ModelError> {
        let weight = w.get(&format!("{name}.weight"), &shape)?.to_device(device)?;
        let bias = w.get(&format!("{name}.bias"), &[shape[0]])?.to_device(device)?.reshape((1, shape[0], 1, 1))?;
        let dense_cpu = if device.is_cpu() { Some(FlatFilters::new(&weight)?) } else { None };
        let winograd_cpu = match shape {
            [out, inputs, 3, 3] if device.is_cpu() && inputs >= WINOGRAD_MIN_INPUTS => Some((
                WinogradFilters::new(&weight)?,
                BiasActivation { bias: vec![0.0; out], activation: Activation::None },
            )),
            _ => None,
        };
        Ok(Self { weight, bias, dense_cpu, winograd_cpu })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = match &self.dense_cpu {
            Some(dense) => dense.conv(x, 1, Pad::symmetric(0))?,
            None => x.conv2d(&self.weight, 0, 1, 1, 1)?,
        };
        y.broadcast_add(&self.bias)
    }
}

/// A PReLU: `max(x, 0) + alpha * min(x, 0)` with one `alpha` per channel.
struct Prelu {
    alpha: Tensor,
}

impl Prelu {
    /// `image`: the input is `(N, C, H, W)`, else `(N, C)`.
    fn load(w: &Weights, name: &str, channels: usize, image: bool, device: &Device) -> Result<Self, ModelError> {
        let alpha = w.get(&format!("{name}.weight"), &[channels])?.to_device(device)?;
        let alpha = if image { alpha.reshape((1, channels, 1, 1))? } else { alpha.reshape((1, channels))? };
        Ok(Self { alpha })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.relu()? - x.neg()?.relu()?.broadcast_mul(&self.alpha)?
    }
}

/// A convolution and the PReLU after it.
struct ConvPrelu {
    conv: Conv,
    prelu: Prelu,
    /// Bias and PReLU in one in-place pass over the convolution's output, on the CPU.
    ending_cpu: Option<BiasPrelu>,
}

impl ConvPrelu {
    /// Loads `<net>.conv<n>` and `<net>.prelu<n>`.
    fn load(w: &Weights, net: &str, n: usize, shape: [usize; 4], device: &Device) -> Result<Self, ModelError> {
        let conv = Conv::load(w, &format!("{net}.conv{n}"), shape, device)?;
        let prelu = Prelu::load(w, &format!("{net}.prelu{n}"), shape[0], true, device)?;
        let ending_cpu = if device.is_cpu() {
            Some(BiasPrelu { bias: conv.bias.flatten_all()?.to_vec1()?, slopes: prelu.alpha.flatten_all()?.to_vec1()? })
        } else {
            None
        };
        Ok(Self { conv, prelu, ending_cpu })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match (&self.conv.winograd_cpu, &self.conv.dense_cpu, &self.ending_cpu) {
            (Some((filters, nothing)), _, Some(ending)) => {
                let y = filters.conv(x, Pad::symmetric(0), nothing)?;
                y.inplace_op1(ending)?;
                Ok(y)
            }
            (_, Some(dense), Some(ending)) => {
                // The convolution's own fresh output.
                let y = dense.conv(x, 1, Pad::symmetric(0))?.contiguous()?;
                y.inplace_op1(ending)?;
                Ok(y)
            }
            _ => self.prelu.forward(&self.conv.forward(x)?),
        }
    }
}

/// Max pooling with PyTorch's `ceil_mode=True`: a partial window at the right and bottom edges
/// still yields an output (the input is padded with the lowest float there).
fn max_pool_ceil(x: &Tensor, kernel: usize, stride: usize) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let out = |len: usize| (len.saturating_sub(kernel)).div_ceil(stride) + 1;
    let (ph, pw) = ((out(h) - 1) * stride + kernel - h, (out(w) - 1) * stride + kernel - w);
    let mut x = x.clone();
    if pw > 0 {
        x = Tensor::cat(&[&x, &Tensor::full(f32::MIN, (n, c, h, pw), x.device())?], 3)?;
    }
    if ph > 0 {
        x = Tensor::cat(&[&x, &Tensor::full(f32::MIN, (n, c, ph, w + pw), x.device())?], 2)?;
    }
    x.max_pool2d_with_stride(kernel, stride)
}

/// The face probability (softmax over the two classes, second one) along dimension 1.
fn face_probability(logits: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::ops::softmax(logits, 1)?.narrow(1, 1, 1)?.squeeze(1)
}

/// The proposal network: fully convolutional, run on every pyramid level.
pub struct PNet {
    layers: [ConvPrelu; 3],
    classify: Conv,
    regress: Conv,
}

impl PNet {
    pub fn load(w: &Weights, device: &Device) -> Result<Self, ModelError> {
        Ok(Self {
            layers: [
                ConvPrelu::load(w, "pnet", 1, [10, 3, 3, 3], device)?,
                ConvPrelu::load(w, "pnet", 2, [16, 10, 3, 3], device)?,
                ConvPrelu::load(w, "pnet", 3, [32, 16, 3, 3], device)?,
            ],
            classify: Conv::load(w, "pnet.conv4_1", [2, 32, 1, 1], device)?,
            regress: Conv::load(w, "pnet.conv4_2", [4, 32, 1, 1], device)?,
        })
    }

    /// `(1, 3, H, W)` normalised pixels to the face probability map `(H', W')` and the box
    /// offsets `(4, H', W')`, one cell per 12x12 window at stride 2.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let x = max_pool_ceil(&self.layers[0].forward(x)?, 2, 2)?;
        let x = self.layers[2].forward(&self.layers[1].forward(&x)?)?;
        let probability = face_probability(&self.classify.forward(&x)?)?.squeeze(0)?;
        Ok((probability, self.regress.forward(&x)?.squeeze(0)?))
    }
}

/// A convolution, its PReLU, and the `(kernel, stride)` max pooling after it, if any.
struct ConvStage {
    layer: ConvPrelu,
    pool: Option<(usize, usize)>,
}

impl ConvStage {
    /// Loads `<net>.conv<n>` and `<net>.prelu<n>`.
    fn load(
        w: &Weights,
        net: &str,
        n: usize,
        shape: [usize; 4],
        pool: Option<(usize, usize)>,
        device: &Device,
    ) -> Result<Self, ModelError> {
        Ok(Self { layer: ConvPrelu::load(w, net, n, shape, device)?, pool })
    }
}

/// A refinement network (R-Net on 24x24 crops, O-Net on 48x48): convolutions, then dense layers.
pub struct RefineNet {
    convs: Vec<ConvStage>,
    dense: Linear,
    dense_prelu: Prelu,
    classify: Linear,
    regress: Linear,
}

impl RefineNet {
    pub fn load_rnet(w: &Weights, device: &Device) -> Result<Self, ModelError> {
        let convs = vec![
            ConvStage::load(w, "rnet", 1, [28, 3, 3, 3], Some((3, 2)), device)?,
            ConvStage::load(w, "rnet", 2, [48, 28, 3, 3], Some((3, 2)), device)?,
            ConvStage::load(w, "rnet", 3, [64, 48, 2, 2], None, device)?,
        ];
        Ok(Self {
            convs,
            dense: Linear::load(w, "rnet.dense4", 576, device)?,
            dense_prelu: Prelu::load(w, "rnet.prelu4", 128, false, device)?,
            classify: Linear::load(w, "rnet.dense5_1", 128, device)?,
            regress: Linear::load(w, "rnet.dense5_2", 128, device)?,
        })
    }

    pub fn load_onet(w: &Weights, device: &Device) -> Result<Self, ModelError> {
        let convs = vec![
            ConvStage::load(w, "onet", 1, [32, 3, 3, 3], Some((3, 2)), device)?,
            ConvStage::load(w, "onet", 2, [64, 32, 3, 3], Some((3, 2)), device)?,
            ConvStage::load(w, "onet", 3, [64, 64, 3, 3], Some((2, 2)), device)?,
            ConvStage::load(w, "onet", 4, [128, 64, 2, 2], None, device)?,
        ];
        Ok(Self {
            convs,
            dense: Linear::load(w, "onet.dense5", 1152, device)?,
            dense_prelu: Prelu::load(w, "onet.prelu5", 256, false, device)?,
            classify: Linear::load(w, "onet.dense6_1", 256, device)?,
            regress: Linear::load(w, "onet.dense6_2", 256, device)?,
        })
    }

    /// Crops `(N, 3, S, S)` to face probabilities `(N)` and box offsets `(N, 4)`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let mut x = x.clone();
        for stage in &self.convs {
            x = stage.layer.forward(&x)?;
            if let Some((kernel, stride)) = stage.pool {
                x = max_pool_ceil(&x, kernel, stride)?;
            }
        }
        // The original (Caffe) weights flatten width-major: (N, C, H, W) -> (N, W, H, C).
        let x = x.permute((0, 3, 2, 1))?.flatten_from(1)?;
        let x = self.dense_prelu.forward(&self.dense.forward(&x)?)?;
        let probability = face_probability(&self.classify.forward(&x)?)?;
        Ok((probability, self.regress.forward(&x)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_mode_pooling_keeps_the_partial_edge_window() -> candle_core::Result<()> {
        let x = Tensor::arange(0f32, 25.0, &Device::Cpu)?.reshape((1, 1, 5, 5))?;
        let pooled = max_pool_ceil(&x, 2, 2)?;
        assert_eq!(pooled.dims(), &[1, 1, 3, 3]);
        assert_eq!(pooled.flatten_all()?.to_vec1::<f32>()?, vec![6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0]);
        let pooled = max_pool_ceil(&x.narrow(2, 0, 4)?.narrow(3, 0, 4)?.contiguous()?, 3, 2)?;
        assert_eq!(pooled.dims(), &[1, 1, 2, 2]);
        Ok(())
    }

    /// The fused CPU ending equals candle's bias add then PReLU.
    #[test]
    fn the_fused_bias_and_prelu_match_candles() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 3, 4, 5), &dev)?;
        let (bias, slopes) = (vec![0.5f32, -0.25, 0.0], vec![0.25f32, 1.5, -0.5]);
        let prelu = Prelu { alpha: Tensor::new(slopes.as_slice(), &dev)?.reshape((1, 3, 1, 1))? };
        let reference =
            prelu.forward(&x.broadcast_add(&Tensor::new(bias.as_slice(), &dev)?.reshape((1, 3, 1, 1))?)?)?;
        let fused = x.copy()?;
        fused.inplace_op1(&BiasPrelu { bias, slopes })?;
        let diff = (fused - reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "differs by {diff}");
        Ok(())
    }

    #[test]
    fn prelu_scales_only_negatives() -> candle_core::Result<()> {
        let prelu = Prelu { alpha: Tensor::new(&[[0.5f32, 2.0]], &Device::Cpu)? };
        let out = prelu.forward(&Tensor::new(&[[-2.0f32, -1.0], [3.0, 4.0]], &Device::Cpu)?)?;
        assert_eq!(out.to_vec2::<f32>()?, vec![vec![-1.0, -2.0], vec![3.0, 4.0]]);
        Ok(())
    }
}
