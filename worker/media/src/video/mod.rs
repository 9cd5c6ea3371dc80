//! Video steps: `video.metadata` (headers only) and `video.frames` (streaming decode and sampling).
//!
//! Frames are images in weir-ops' image column layout, so the image steps (resize, crop, encode,
//! to-tensor) apply to them unchanged.

pub mod frames;
pub mod metadata;
pub mod sampler;
pub mod scale;
