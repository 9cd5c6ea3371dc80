//! Text models: BERT-family sentence embeddings.

pub mod bert;

pub use bert::SentenceEmbedder;
