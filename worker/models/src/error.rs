//! Errors of loading and running models.

use weir_core::BuildError;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor the architecture needs is missing or has another shape.
    #[error("weights `{uri}`: {message}")]
    Weights { uri: String, message: String },
    /// A companion file (tokenizer, config, labels) is unusable.
    #[error("{field} `{uri}`: {message}")]
    Asset { field: &'static str, uri: String, message: String },
    /// The requested device is not available in this build or on this machine.
    #[error("device: {0}")]
    Device(String),
    /// A tensor operation failed while running the model.
    #[error("model: {0}")]
    Run(#[from] candle_core::Error),
}

impl From<ModelError> for BuildError {
    fn from(error: ModelError) -> Self {
        let field = match &error {
            ModelError::Weights { .. } => "model.uri",
            ModelError::Asset { field, .. } => field,
            ModelError::Device(_) => "model.device",
            ModelError::Run(_) => "model",
        };
        BuildError::new(field, error.to_string())
    }
}
