//! Text models: BERT-family sentence embeddings.

pub mod bert;
pub mod encoder;

pub use bert::SentenceEmbedder;
