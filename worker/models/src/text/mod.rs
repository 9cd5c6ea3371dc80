//! Text models: BERT-family sentence embeddings.

pub mod bert;
mod dense;
pub mod encoder;
mod math;

pub use bert::SentenceEmbedder;
