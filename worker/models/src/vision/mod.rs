//! Image models: EfficientNet-Lite0 and the ResNet family behind one [`VisionModel`], and the
//! MTCNN face detector.

pub mod efficientnet;
pub mod mtcnn;
pub mod nanodet;
pub mod pil_resize;
pub mod preprocess;
pub mod resnet;

use candle_core::{Device, Tensor};
use weir_crds::{ModelArch, ModelSpec};

use crate::nn::Linear;
use crate::weights::Weights;
use crate::{ModelError, device};
pub use efficientnet::EfficientNetLite0;
pub use preprocess::{IMAGENET, InputSpec};
pub use resnet::ResNet;

/// The most bytes the widest activation of one CPU forward pass may take. glibc hands out larger
/// blocks (over 32 MiB) as fresh mappings, whose pages then fault in and are zeroed on every
/// layer: EfficientNet-Lite0 took 14 ms/image in passes of 16 images (77 MB at its widest) and
/// 9 ms in passes of 6 (29 MB) on two cores.
const CPU_PASS_BYTES: usize = 24 << 20;

enum Network {
    EfficientNet(Box<EfficientNetLite0>),
    ResNet(Box<ResNet>),
}

/// A loaded image model on its device.
pub struct VisionModel {
    network: Network,
    input: InputSpec,
    device: Device,
}

impl VisionModel {
    /// Loads `spec`'s architecture from `weights` onto the device it asks for.
    ///
    /// # Errors
    /// [`ModelError`]: an unavailable device, or a missing or misshapen tensor.
    pub fn load(spec: &ModelSpec, weights: &Weights) -> Result<Self, ModelError> {
        let device = device::select(spec.device)?;
        let (network, input) = match spec.arch {
            ModelArch::EfficientNetLite0 => {
                (Network::EfficientNet(Box::new(EfficientNetLite0::load(weights, &device)?)), efficientnet::INPUT)
            }
            ModelArch::Resnet18
            | ModelArch::Resnet34
            | ModelArch::Resnet50
            | ModelArch::Resnet101
            | ModelArch::Resnet152 => (Network::ResNet(Box::new(ResNet::load(spec.arch, weights, &device)?)), IMAGENET),
            other @ (ModelArch::Bert | ModelArch::Whisper | ModelArch::Mtcnn | ModelArch::NanoDet) => {
                return Err(ModelError::Asset {
                    field: "model.arch",
                    uri: weights.uri().to_string(),
                    message: format!(
                        "{} is not an image classifier; image.embed and image.classify need one",
                        other.name()
                    ),
                });
            }
        };
        Ok(Self { network, input, device })
    }

    /// What each image is prepared into.
    pub fn input(&self) -> &InputSpec {
        &self.input
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Length of the pooled feature vector.
    pub fn feature_size(&self) -> usize {
        match &self.network {
            Network::EfficientNet(_) => efficientnet::FEATURES,
            Network::ResNet(net) => net.feature_size(),
        }
    }

    fn classifier(&self) -> &Linear {
        match &self.network {
            Network::EfficientNet(net) => net.classifier(),
            Network::ResNet(net) => net.classifier(),
        }
    }

    /// Number of classes the classifier head scores.
    pub fn classes(&self) -> usize {
        self.classifier().classes()
    }

    /// Stacks prepared images (each [`InputSpec::elements`] long) into an NCHW batch on the
    /// model's device.
    pub fn batch(&self, images: &[&[f32]]) -> candle_core::Result<Tensor> {
        let size = self.input.size as usize;
        let flat: Vec<f32> = images.iter().flat_map(|i| i.iter().copied()).collect();
        Tensor::from_vec(flat, (images.len(), 3, size, size), &self.device)
    }

    /// Pooled features `(N, feature_size)`. On the CPU a large batch runs as several passes,
    /// each small enough for [`CPU_PASS_BYTES`].
    pub fn features(&self, batch: &Tensor) -> candle_core::Result<Tensor> {
        let images = batch.dim(0)?;
        let per_pass = self.images_per_pass();
        if !self.device.is_cpu() || images <= per_pass {
            return self.pass(batch);
        }
        let passes = (0..images)
            .step_by(per_pass)
            .map(|first| self.pass(&batch.narrow(0, first, per_pass.min(images - first))?))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::cat(&passes, 0)
    }

    fn pass(&self, batch: &Tensor) -> candle_core::Result<Tensor> {
        match &self.network {
            Network::EfficientNet(net) => net.features(batch),
            Network::ResNet(net) => net.features(batch),
        }
    }

    /// How many images one CPU pass takes: its widest activation within [`CPU_PASS_BYTES`].
    fn images_per_pass(&self) -> usize {
        let half = (self.input.size as usize).div_ceil(2);
        // The widest layer's channels at half the input's side: EfficientNet-Lite0's second
        // stage expands to 96 there; a ResNet's stem gives 64, and its first stage 256 (4x) at
        // a quarter (the same size).
        let channels = match &self.network {
            Network::EfficientNet(_) => 96,
            Network::ResNet(_) => 64,
        };
        let bytes = channels * half * half * std::mem::size_of::<f32>();
        (CPU_PASS_BYTES / bytes.max(1)).max(1)
    }

    /// Class scores before the softmax `(N, classes)` from pooled features.
    pub fn logits(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        self.classifier().forward(features)
    }

    /// Class probabilities `(N, classes)` from pooled features.
    pub fn probabilities(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::softmax_last_dim(&self.logits(features)?)
    }
}
