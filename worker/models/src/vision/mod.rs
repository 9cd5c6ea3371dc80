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

    /// Pooled features `(N, feature_size)`.
    pub fn features(&self, batch: &Tensor) -> candle_core::Result<Tensor> {
        match &self.network {
            Network::EfficientNet(net) => net.features(batch),
            Network::ResNet(net) => net.features(batch),
        }
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
