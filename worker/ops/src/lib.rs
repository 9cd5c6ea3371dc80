//! Weir's native steps: image decode, resize, crop, encode and to-tensor; filter, select, rename,
//! explode; text normalise and chunk.
//!
//! # Layout
//! - [`image`]: the Arrow representation of images and one module per image step.
//! - [`relational`]: steps that reshape rows and columns.
//! - [`text`]: text normalisation and chunking.
//!
//! Each step module has a `build(config) -> Result<Arc<dyn Step>, BuildError>` taking the step's
//! config struct from `weir-crds`.

pub mod image;
pub mod relational;
pub mod text;

/// A step config that cannot be turned into a runnable step.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BuildError {
    /// The config field at fault, e.g. `width`.
    pub field: String,
    pub message: String,
}

impl BuildError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self { field: field.to_string(), message: message.into() }
    }
}
