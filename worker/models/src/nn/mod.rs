//! Inference layers: folded convolutions, a fused CPU depthwise kernel, the classifier head.

pub mod bias;
pub mod conv;
pub mod depthwise;

pub use conv::{Activation, ConvBn, ConvNames, ConvShape, Linear, Pad, Padding, global_average};
