//! Weir's model steps on candle: sentence embeddings, image embeddings and classification, face
//! detection and speech recognition.
//!
//! # Layout
//! - [`assets`]: the bytes a model step is built from (weights, tokenizer, config, labels).
//! - [`device`]: where a model runs (CPU, or CUDA with the `cuda` feature).
//! - [`weights`]: safetensors loading with errors that name the tensor and its expected shape.
//! - [`convert`]: PyTorch checkpoints (zip or legacy pickle), CTranslate2 and TF.js models to
//!   safetensors.
//! - [`graph`]: TF.js graph models (stored by `convert` beside their weights) run on candle.
//! - [`nn`]: layers with inference-time folding (batch norm into convolutions) and a CPU
//!   depthwise convolution kernel.
//! - [`vision`]: EfficientNet-Lite0 and the ResNet family, their input preprocessing, and MTCNN.
//! - [`text`]: BERT-family sentence embeddings.
//! - [`speech`]: Whisper and its log-mel input.
//! - [`steps`]: the runnable `text.embed`, `image.embed`, `image.classify`, `image.detect` and
//!   `audio.transcribe` steps.
//!
//! Models are loaded once when a step is built and shared by the step's concurrent tasks;
//! a missing or mismatched weight fails the build, never a row.

pub mod assets;
pub mod convert;
pub mod device;
pub mod error;
pub mod graph;
pub mod nn;
pub mod speech;
pub mod steps;
pub mod text;
pub mod vision;
pub mod weights;

pub use assets::ModelAssets;
pub use error::ModelError;
