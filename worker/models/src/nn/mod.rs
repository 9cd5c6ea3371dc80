//! Inference layers: folded convolutions, a fused CPU depthwise kernel, the classifier head.

pub mod bias;
pub mod conv;
pub mod depthwise;

pub use conv::{Activation, ConvBn, ConvNames, ConvShape, Linear, Pad, Padding, global_average};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, D, Layout, Tensor};

/// Scales each row of `(N, D)` vectors to unit length (a zero row stays zero).
pub fn unit_length(vectors: &Tensor) -> candle_core::Result<Tensor> {
    let norms = vectors.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    vectors.broadcast_div(&norms)
}

/// The f32 elements and `[n, c, h, w]` of a contiguous NCHW tensor, as a CPU kernel `op` needs
/// it with `channels` channels.
///
/// # Errors
/// When the tensor is not f32, not contiguous, not 4-D or has another channel count.
pub(crate) fn nchw_f32<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
    channels: usize,
) -> candle_core::Result<(&'a [f32], [usize; 4])> {
    let CpuStorage::F32(data) = storage else { candle_core::bail!("{op} takes f32, got {:?}", storage.dtype()) };
    let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("{op} needs a contiguous input") };
    let &[n, c, h, w] = layout.dims() else { candle_core::bail!("{op} takes NCHW, got {:?}", layout.dims()) };
    if c != channels {
        candle_core::bail!("{op} has {channels} channels, input has {c}")
    }
    Ok((&data[start..end], [n, c, h, w]))
}
