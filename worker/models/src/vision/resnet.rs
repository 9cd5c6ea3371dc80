//! The ResNet family (18, 34, 50, 101, 152) in torchvision's layout (`conv1`, `bn1`,
//! `layer1.0.conv1`, `downsample.0`, `fc`), with ResNet v1.5's stride on the 3x3 convolution of
//! bottleneck blocks.

use candle_core::{Device, Tensor};
use weir_crds::ModelArch;

use crate::ModelError;
use crate::nn::bias::ResidualAdd;
use crate::nn::pool::StemPool;
use crate::nn::{Activation, ConvBn, ConvNames, ConvShape, Linear, Padding, global_average};
use crate::weights::Weights;

const BN_EPS: f64 = 1e-5;

/// Basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 with 4x expansion) blocks, and blocks per stage.
#[derive(Debug, Clone, Copy)]
struct Depth {
    bottleneck: bool,
    blocks: [usize; 4],
}

fn depth(arch: ModelArch) -> Option<Depth> {
    let (bottleneck, blocks) = match arch {
        ModelArch::Resnet18 => (false, [2, 2, 2, 2]),
        ModelArch::Resnet34 => (false, [3, 4, 6, 3]),
        ModelArch::Resnet50 => (true, [3, 4, 6, 3]),
        ModelArch::Resnet101 => (true, [3, 4, 23, 3]),
        ModelArch::Resnet152 => (true, [3, 8, 36, 3]),
        _ => return None,
    };
    Some(Depth { bottleneck, blocks })
}

struct Residual {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl Residual {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = x.clone();
        for conv in &self.convs {
            y = conv.forward(&y)?;
        }
        let shortcut = match &self.downsample {
            Some(down) => down.forward(x)?,
            None => x.clone(),
        };
        if y.device().is_cpu() {
            // `y` is the last convolution's own fresh output.
            let y = y.contiguous()?;
            y.inplace_op2(&shortcut.contiguous()?, &ResidualAdd { relu: true })?;
            return Ok(y);
        }
        (y + shortcut)?.relu()
    }
}

/// A ResNet with its classifier.
pub struct ResNet {
    stem: ConvBn,
    blocks: Vec<Residual>,
    classifier: Linear,
    features: usize,
}

fn shape(in_channels: usize, out_channels: usize, kernel: usize, stride: usize) -> ConvShape {
    ConvShape { in_channels, out_channels, kernel, stride, padding: Padding::Symmetric(kernel / 2), depthwise: false }
}

impl ResNet {
    /// Loads `arch` from `weights`.
    ///
    /// # Errors
    /// [`ModelError::Weights`] naming the first missing or misshapen tensor.
    pub fn load(arch: ModelArch, weights: &Weights, device: &Device) -> Result<Self, ModelError> {
        let Some(Depth { bottleneck, blocks: counts }) = depth(arch) else {
            return Err(ModelError::Asset {
                field: "model.arch",
                uri: weights.uri().to_string(),
                message: format!("{} is not a ResNet", arch.name()),
            });
        };
        let conv = |conv: &str, bn: &str, shape, act| {
            ConvBn::load(weights, ConvNames { conv, bn, bn_eps: BN_EPS }, shape, act, device)
        };
        let stem = conv("conv1", "bn1", shape(3, 64, 7, 2), Activation::Relu)?;
        let expansion = if bottleneck { 4 } else { 1 };
        let mut channels = 64;
        let mut blocks = Vec::new();
        for (stage, &count) in counts.iter().enumerate() {
            let width = 64 << stage;
            for index in 0..count {
                let prefix = format!("layer{}.{index}", stage + 1);
                let stride = if index == 0 && stage > 0 { 2 } else { 1 };
                let out = width * expansion;
                let name = |part: &str| format!("{prefix}.{part}");
                let convs = if bottleneck {
                    vec![
                        conv(&name("conv1"), &name("bn1"), shape(channels, width, 1, 1), Activation::Relu)?,
                        conv(&name("conv2"), &name("bn2"), shape(width, width, 3, stride), Activation::Relu)?,
                        conv(&name("conv3"), &name("bn3"), shape(width, out, 1, 1), Activation::None)?,
                    ]
                } else {
                    vec![
                        conv(&name("conv1"), &name("bn1"), shape(channels, width, 3, stride), Activation::Relu)?,
                        conv(&name("conv2"), &name("bn2"), shape(width, width, 3, 1), Activation::None)?,
                    ]
                };
                let downsample = if stride != 1 || channels != out {
                    Some(conv(
                        &name("downsample.0"),
                        &name("downsample.1"),
                        shape(channels, out, 1, stride),
                        Activation::None,
                    )?)
                } else {
                    None
                };
                blocks.push(Residual { convs, downsample });
                channels = out;
            }
        }
        let classifier = Linear::load(weights, "fc", channels, device)?;
        Ok(Self { stem, blocks, classifier, features: channels })
    }

    /// Pooled features `(N, 512)` or `(N, 2048)` of an NCHW batch.
    pub fn features(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.stem.forward(x)?;
        let mut x = if x.device().is_cpu() {
            x.contiguous()?.apply_op1_no_bwd(&StemPool)?
        } else {
            // Max pooling after a ReLU: zero padding is the same as padding with -inf.
            x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?.max_pool2d_with_stride(3, 2)?
        };
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        global_average(&x)
    }

    pub fn classifier(&self) -> &Linear {
        &self.classifier
    }

    pub fn feature_size(&self) -> usize {
        self.features
    }
}
