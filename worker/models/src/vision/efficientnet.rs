//! EfficientNet-Lite0: EfficientNet-B0's layout without squeeze-excitation, with ReLU6 and a
//! fixed stem and head, as published for mobile inference. Tensor names follow the
//! `efficientnet_pytorch` layout (`_conv_stem`, `_blocks.N._depthwise_conv`, `_fc`); the weights
//! were ported from TensorFlow, so convolutions pad TF-`SAME` and norms use eps 1e-3.

use candle_core::{Device, Tensor};

use crate::ModelError;
use crate::nn::bias::ResidualAdd;
use crate::nn::{Activation, ConvBn, ConvNames, ConvShape, Linear, Padding, global_average};
use crate::weights::Weights;

const BN_EPS: f64 = 1e-3;
const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;

/// One stage: repeats, kernel, first stride, expansion ratio, output channels.
struct Stage {
    repeats: usize,
    kernel: usize,
    stride: usize,
    expand: usize,
    out: usize,
}

const STAGES: [Stage; 7] = [
    Stage { repeats: 1, kernel: 3, stride: 1, expand: 1, out: 16 },
    Stage { repeats: 2, kernel: 3, stride: 2, expand: 6, out: 24 },
    Stage { repeats: 2, kernel: 5, stride: 2, expand: 6, out: 40 },
    Stage { repeats: 3, kernel: 3, stride: 2, expand: 6, out: 80 },
    Stage { repeats: 3, kernel: 5, stride: 1, expand: 6, out: 112 },
    Stage { repeats: 4, kernel: 5, stride: 2, expand: 6, out: 192 },
    Stage { repeats: 1, kernel: 3, stride: 1, expand: 6, out: 320 },
];

/// An inverted residual block: expand (1x1), depthwise, project (1x1), skip when shapes allow.
struct MobileBlock {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

impl MobileBlock {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let expanded = match &self.expand {
            Some(expand) => expand.forward(x)?,
            None => x.clone(),
        };
        let y = self.project.forward(&self.depthwise.forward(&expanded)?)?;
        if !self.residual {
            return Ok(y);
        }
        if y.device().is_cpu() {
            // `y` is the projection's own fresh output.
            let y = y.contiguous()?;
            y.inplace_op2(&x.contiguous()?, &ResidualAdd { relu: false })?;
            return Ok(y);
        }
        y + x
    }
}

/// EfficientNet-Lite0 with its classifier.
pub struct EfficientNetLite0 {
    stem: ConvBn,
    blocks: Vec<MobileBlock>,
    head: ConvBn,
    classifier: Linear,
}

impl EfficientNetLite0 {
    /// Loads the network from `weights`.
    ///
    /// # Errors
    /// [`ModelError::Weights`] naming the first missing or misshapen tensor.
    pub fn load(weights: &Weights, device: &Device) -> Result<Self, ModelError> {
        let conv = |name: &str, bn: &str, shape: ConvShape, act| {
            ConvBn::load(weights, ConvNames { conv: name, bn, bn_eps: BN_EPS }, shape, act, device)
        };
        let dense = |in_channels, out_channels, kernel, stride| ConvShape {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding: Padding::TfSame,
            depthwise: false,
        };
        let stem = conv("_conv_stem", "_bn0", dense(3, STEM_CHANNELS, 3, 2), Activation::Relu6)?;
        let mut blocks = Vec::new();
        let mut channels = STEM_CHANNELS;
        for stage in &STAGES {
            for repeat in 0..stage.repeats {
                let prefix = format!("_blocks.{}", blocks.len());
                let stride = if repeat == 0 { stage.stride } else { 1 };
                let hidden = channels * stage.expand;
                let expand = match stage.expand {
                    1 => None,
                    _ => Some(conv(
                        &format!("{prefix}._expand_conv"),
                        &format!("{prefix}._bn0"),
                        dense(channels, hidden, 1, 1),
                        Activation::Relu6,
                    )?),
                };
                let depthwise = conv(
                    &format!("{prefix}._depthwise_conv"),
                    &format!("{prefix}._bn1"),
                    ConvShape { depthwise: true, ..dense(hidden, hidden, stage.kernel, stride) },
                    Activation::Relu6,
                )?;
                let project = conv(
                    &format!("{prefix}._project_conv"),
                    &format!("{prefix}._bn2"),
                    dense(hidden, stage.out, 1, 1),
                    Activation::None,
                )?;
                blocks.push(MobileBlock { expand, depthwise, project, residual: stride == 1 && channels == stage.out });
                channels = stage.out;
            }
        }
        let head = conv("_conv_head", "_bn1", dense(channels, HEAD_CHANNELS, 1, 1), Activation::Relu6)?;
        let classifier = Linear::load(weights, "_fc", HEAD_CHANNELS, device)?;
        Ok(Self { stem, blocks, head, classifier })
    }

    /// Pooled features `(N, 1280)` of an NCHW batch.
    pub fn features(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = self.stem.forward(x)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        global_average(&self.head.forward(&x)?)
    }

    pub fn classifier(&self) -> &Linear {
        &self.classifier
    }
}

/// Length of the pooled features.
pub const FEATURES: usize = HEAD_CHANNELS;

/// The input these weights expect: 224x224, with TensorFlow's `(x - 127) / 128` scaling
/// written as mean and std over 0..1 values.
pub const INPUT: crate::vision::InputSpec =
    crate::vision::InputSpec { size: 224, resize_to: 256, mean: [127.0 / 255.0; 3], std: [128.0 / 255.0; 3] };
