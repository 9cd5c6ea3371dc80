//! Speech recognition: Whisper's log-mel input and greedy decoding.

pub mod mel;
pub mod model;
pub mod whisper;

pub use whisper::{Options, Segment, Transcriber, Transcript, config_from_shapes};
