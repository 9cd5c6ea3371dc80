//! Convolutions with their batch norm folded in at load time, as inference wants them.
//!
//! `bn(conv(x))` with fixed statistics is `conv(x) * s + (beta - mean * s)` where
//! `s = gamma / sqrt(var + eps)`: scaling the kernel by `s` per output channel and adding one
//! bias removes the norm from every forward pass.

use candle_core::{D, Device, Tensor};

use super::bias::BiasActivation;
use super::depthwise::DepthwiseConv;
use super::im2col::FlatFilters;
use super::pointwise::PointwiseConv;
use super::winograd::WinogradFilters;
use super::{Activation, Pad};
use crate::ModelError;
use crate::weights::Weights;

/// How a layer pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// TensorFlow `SAME` (depends on the input size).
    TfSame,
    /// A fixed amount on every side.
    Symmetric(usize),
}

impl Padding {
    fn for_input(self, h: usize, w: usize, kernel: usize, stride: usize) -> Pad {
        match self {
            Padding::TfSame => Pad::tf_same(h, w, kernel, stride),
            Padding::Symmetric(p) => Pad::symmetric(p),
        }
    }
}

/// The shape of a convolution as the architecture declares it.
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding,
    /// `true` for one filter per input channel (`groups = in_channels = out_channels`).
    pub depthwise: bool,
}

/// Names of a convolution's weights and of the batch norm after it.
#[derive(Debug, Clone, Copy)]
pub struct ConvNames<'a> {
    pub conv: &'a str,
    pub bn: &'a str,
    pub bn_eps: f64,
}

/// A convolution + batch norm (folded) + activation.
pub struct ConvBn {
    shape: ConvShape,
    /// `(out, in / groups, k, k)`, already scaled by the norm.
    weight: Tensor,
    /// `(1, out, 1, 1)`.
    bias: Tensor,
    activation: Activation,
    /// The fused CPU kernel for depthwise layers.
    depthwise_cpu: Option<DepthwiseConv>,
    /// The fused CPU bias and activation for the other layers.
    bias_cpu: Option<BiasActivation>,
    /// The CPU's im2col convolution for the other dense layers.
    dense_cpu: Option<FlatFilters>,
    /// The CPU's Winograd convolution for dense 3x3 stride-1 layers.
    winograd_cpu: Option<WinogradFilters>,
    /// The fused AVX-512 kernel for 1x1 stride-1 layers, where the CPU has AVX-512.
    pointwise_cpu: Option<PointwiseConv>,
}

impl ConvBn {
    /// Loads and folds `names` from `weights`, checking every shape against `shape`.
    ///
    /// # Errors
    /// [`ModelError::Weights`] naming a missing or misshapen tensor.
    pub fn load(
        weights: &Weights,
        names: ConvNames<'_>,
        shape: ConvShape,
        activation: Activation,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let ConvShape { in_channels, out_channels, kernel, .. } = shape;
        let per_group = if shape.depthwise { 1 } else { in_channels };
        let kernel_shape = [out_channels, per_group, kernel, kernel];
        let conv = weights.get(&format!("{}.weight", names.conv), &kernel_shape)?;
        let norm = |part: &str| weights.get(&format!("{}.{part}", names.bn), &[out_channels]);
        let (gamma, beta, mean, var) = (norm("weight")?, norm("bias")?, norm("running_mean")?, norm("running_var")?);
        let scale = (gamma / (var + names.bn_eps)?.sqrt()?)?;
        let weight = conv.broadcast_mul(&scale.reshape((out_channels, 1, 1, 1))?)?;
        let bias = (beta - (mean * &scale)?)?;
        let depthwise_cpu = match (shape.depthwise, device) {
            (true, Device::Cpu) => Some(DepthwiseConv {
                weights: weight.flatten_all()?.to_vec1()?,
                bias: bias.to_vec1()?,
                kernel,
                stride: shape.stride,
                pad: Pad::symmetric(0),
                activation,
            }),
            _ => None,
        };
        let bias_cpu = match device {
            Device::Cpu => Some(BiasActivation { bias: bias.to_vec1()?, activation }),
            _ => None,
        };
        let winograd_cpu = match (shape.depthwise, kernel, shape.stride, device) {
            (false, 3, 1, Device::Cpu) => Some(WinogradFilters::new(&weight)?),
            _ => None,
        };
        let pointwise_cpu = match (shape.depthwise, kernel, shape.stride, device) {
            (false, 1, 1, Device::Cpu) => PointwiseConv::new(&weight, &bias.to_vec1()?, activation)?,
            _ => None,
        };
        let dense_cpu = match (shape.depthwise, device) {
            (false, Device::Cpu) if winograd_cpu.is_none() => Some(FlatFilters::new(&weight)?),
            _ => None,
        };
        Ok(Self {
            shape,
            weight: weight.to_device(device)?,
            bias: bias.reshape((1, out_channels, 1, 1))?.to_device(device)?,
            activation,
            depthwise_cpu,
            bias_cpu,
            dense_cpu,
            winograd_cpu,
            pointwise_cpu,
        })
    }

    /// Applies the layer to an NCHW batch.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let ConvShape { kernel, stride, out_channels, .. } = self.shape;
        let pad = self.shape.padding.for_input(h, w, kernel, stride);
        if let Some(op) = &self.depthwise_cpu {
            let op = DepthwiseConv { pad, ..op.clone() };
            return x.contiguous()?.apply_op1_no_bwd(&op);
        }
        if let Some(op) = self.pointwise_cpu.as_ref().filter(|_| pad.is_zero()) {
            return x.contiguous()?.apply_op1_no_bwd(op);
        }
        if let (Some(filters), Some(epilogue)) = (&self.winograd_cpu, &self.bias_cpu) {
            return filters.conv(x, pad, epilogue);
        }
        let y = if kernel == 1 && stride == 1 && pad.is_zero() {
            // A 1x1 convolution is one matrix product per image.
            let weight = self.weight.reshape((out_channels, c))?;
            weight.broadcast_matmul(&x.reshape((n, c, h * w))?)?.reshape((n, out_channels, h, w))?
        } else if let Some(dense) = &self.dense_cpu {
            dense.conv(x, stride, pad)?
        } else {
            let groups = if self.shape.depthwise { c } else { 1 };
            pad.apply(x)?.conv2d(&self.weight, 0, stride, 1, groups)?
        };
        match &self.bias_cpu {
            Some(op) => {
                // `y` is this layer's own fresh output: add and activate where it lies.
                let y = y.contiguous()?;
                y.inplace_op1(op)?;
                Ok(y)
            }
            None => self.activation.apply(&y.broadcast_add(&self.bias)?),
        }
    }
}

/// A fully connected classifier head.
pub struct Linear {
    /// `(classes, features)`.
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// Loads `<name>.weight` and `<name>.bias` with `features` inputs; the number of classes is
    /// whatever the weights say (a fine-tuned head is fine).
    ///
    /// # Errors
    /// [`ModelError::Weights`] naming a missing or misshapen tensor.
    pub fn load(weights: &Weights, name: &str, features: usize, device: &Device) -> Result<Self, ModelError> {
        let weight_name = format!("{name}.weight");
        let classes = match weights.shape_of(&weight_name) {
            Some(&[classes, _]) => classes,
            _ => 1000,
        };
        let weight = weights.get(&weight_name, &[classes, features])?.to_device(device)?;
        let bias = weights.get(&format!("{name}.bias"), &[classes])?.to_device(device)?;
        Ok(Self { weight, bias })
    }

    /// `(N, features)` to `(N, classes)`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)
    }

    pub fn classes(&self) -> usize {
        self.weight.dim(0).unwrap_or(0)
    }
}

/// Global average pooling: `(N, C, H, W)` to `(N, C)`.
pub fn global_average(x: &Tensor) -> candle_core::Result<Tensor> {
    x.flatten_from(2)?.mean(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf_same_padding_puts_the_odd_pixel_after() {
        assert_eq!(Pad::tf_same(224, 224, 3, 2), Pad { top: 0, bottom: 1, left: 0, right: 1 });
        assert_eq!(Pad::tf_same(56, 56, 5, 2), Pad { top: 1, bottom: 2, left: 1, right: 2 });
        assert_eq!(Pad::tf_same(14, 14, 5, 1), Pad::symmetric(2));
        assert_eq!(Pad::tf_same(224, 224, 3, 2).output_size(224, 224, 3, 2), (112, 112));
    }
}
