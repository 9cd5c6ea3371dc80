//! Weir's native steps: image decode, resize, crop, draw, encode and to-tensor; filter, select, rename,
//! explode; text normalise, chunk and tokenize; document text extraction; vector comparison.
//!
//! # Layout
//! - [`image`]: the Arrow representation of images and one module per image step.
//! - [`relational`]: steps that reshape rows and columns.
//! - [`text`]: text normalisation, chunking and tokenization.
//! - [`document`]: text extraction from PDF, HTML, Markdown and plain text, one row per page.
//! - [`vector`]: cosine similarity, dot product and Euclidean distance of vector columns.
//! - [`column_types`]: the Arrow types behind the column types manifest validation declares.
//!
//! Each step module has a `build(config) -> Result<Arc<dyn Step>, BuildError>` taking the step's
//! config struct from `weir-crds`.

pub mod column_types;
pub mod document;
pub mod image;
pub mod relational;
pub mod text;
pub mod vector;

pub use weir_core::BuildError;
