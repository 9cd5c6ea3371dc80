//! Inference layers: folded convolutions, fused CPU depthwise, pointwise and Winograd kernels, the classifier head.

pub mod bias;
pub mod conv;
pub mod depthwise;
pub mod im2col;
pub mod pointwise;
pub mod pool;
pub mod winograd;

pub use conv::{ConvBn, ConvNames, ConvShape, Linear, Padding, global_average};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, D, Layout, Tensor};

/// Scales each row of `(N, D)` vectors to unit length (a zero row stays zero).
pub fn unit_length(vectors: &Tensor) -> candle_core::Result<Tensor> {
    let norms = vectors.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    vectors.broadcast_div(&norms)
}

/// Whether this CPU runs AVX2 with fused multiply-adds (our kernels' fast path; detected once,
/// then read from a cache).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Whether this CPU runs AVX-512F (the 1x1 kernel's path; detected once, then read from a cache).
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The f32 elements of a contiguous tensor, as a CPU kernel `op` reads them.
///
/// # Errors
/// When the tensor is not f32 or not contiguous.
pub(crate) fn contiguous_f32<'a>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else { candle_core::bail!("{op} takes f32, got {:?}", storage.dtype()) };
    let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("{op} needs a contiguous input") };
    Ok(&data[start..end])
}

/// Calls `read` with the elements of `tensor`, row-major in f32, borrowing them where the tensor is
/// a contiguous f32 one on the CPU already (a large weight is then not copied while it is packed).
///
/// # Errors
/// When the tensor is not on the CPU or cannot be made f32.
pub(crate) fn with_f32<R>(op: &str, tensor: &Tensor, read: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    // Both are the same tensor again (no copy) when it is f32 and contiguous already.
    let tensor = tensor.to_dtype(candle_core::DType::F32)?.contiguous()?;
    let (storage, layout) = tensor.storage_and_layout();
    let candle_core::Storage::Cpu(storage) = &*storage else { candle_core::bail!("{op} reads tensors on the CPU") };
    Ok(read(contiguous_f32(op, storage, layout)?))
}

/// [`contiguous_f32`] for a kernel that writes the tensor in place.
///
/// # Errors
/// As [`contiguous_f32`].
pub(crate) fn contiguous_f32_mut<'a>(
    op: &str,
    storage: &'a mut CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a mut [f32]> {
    let dtype = storage.dtype();
    let CpuStorage::F32(data) = storage else { candle_core::bail!("{op} takes f32, got {dtype:?}") };
    let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("{op} needs a contiguous input") };
    Ok(&mut data[start..end])
}

/// The f32 elements and `[n, c, h, w]` of a contiguous NCHW tensor, as a CPU kernel `op` needs
/// it (with `channels` channels, where it says).
///
/// # Errors
/// When the tensor is not f32, not contiguous, not 4-D or has another channel count.
pub(crate) fn nchw_f32<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
    channels: Option<usize>,
) -> candle_core::Result<(&'a [f32], [usize; 4])> {
    let dims = nchw_dims(op, layout, channels)?;
    Ok((contiguous_f32(op, storage, layout)?, dims))
}

/// [`nchw_f32`] for a kernel that writes the tensor in place.
///
/// # Errors
/// As [`nchw_f32`].
pub(crate) fn nchw_f32_mut<'a>(
    op: &str,
    storage: &'a mut CpuStorage,
    layout: &Layout,
    channels: Option<usize>,
) -> candle_core::Result<(&'a mut [f32], [usize; 4])> {
    let dims = nchw_dims(op, layout, channels)?;
    Ok((contiguous_f32_mut(op, storage, layout)?, dims))
}

/// An NCHW tensor's dimensions, checked against `channels` where given.
fn nchw_dims(op: &str, layout: &Layout, channels: Option<usize>) -> candle_core::Result<[usize; 4]> {
    let &[n, c, h, w] = layout.dims() else { candle_core::bail!("{op} takes NCHW, got {:?}", layout.dims()) };
    if let Some(channels) = channels.filter(|&channels| channels != c) {
        candle_core::bail!("{op} has {channels} channels, input has {c}")
    }
    Ok([n, c, h, w])
}

/// Zero padding on each side of a feature map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pad {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

impl Pad {
    /// The same padding on every side (PyTorch's `padding=p`).
    pub fn symmetric(p: usize) -> Self {
        Self { top: p, bottom: p, left: p, right: p }
    }

    /// TensorFlow's `SAME` padding for an `h`x`w` input: the output is `ceil(size / stride)` and
    /// any odd padding goes after (bottom, right). EfficientNet weights ported from TF need it.
    pub fn tf_same(h: usize, w: usize, kernel: usize, stride: usize) -> Self {
        let total = |size: usize| ((size.div_ceil(stride) - 1) * stride + kernel).saturating_sub(size);
        let (ph, pw) = (total(h), total(w));
        Self { top: ph / 2, bottom: ph - ph / 2, left: pw / 2, right: pw - pw / 2 }
    }

    /// Output height and width of a `kernel`/`stride` convolution over a padded `h`x`w` input.
    pub fn output_size(&self, h: usize, w: usize, kernel: usize, stride: usize) -> (usize, usize) {
        let out =
            |size: usize, before: usize, after: usize| (size + before + after).saturating_sub(kernel) / stride + 1;
        (out(h, self.top, self.bottom), out(w, self.left, self.right))
    }

    pub(crate) fn is_zero(&self) -> bool {
        *self == Self::symmetric(0)
    }

    pub(crate) fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.is_zero() {
            return Ok(x.clone());
        }
        x.pad_with_zeros(2, self.top, self.bottom)?.pad_with_zeros(3, self.left, self.right)
    }
}

/// The non-linearity after a layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    None,
    Relu,
    Relu6,
    /// `max(x, alpha × x)`, for `alpha` in `[0, 1]`.
    LeakyRelu(f32),
}

impl Activation {
    pub fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::None => Ok(x.clone()),
            Activation::Relu => x.relu(),
            Activation::Relu6 => x.clamp(0f32, 6f32),
            Activation::LeakyRelu(alpha) => x.maximum(&x.affine(f64::from(alpha), 0.0)?),
        }
    }

    #[inline(always)]
    pub fn apply_slice(self, values: &mut [f32]) {
        match self {
            Activation::None => {}
            Activation::Relu => values.iter_mut().for_each(|v| *v = v.max(0.)),
            Activation::Relu6 => values.iter_mut().for_each(|v| *v = v.clamp(0., 6.)),
            Activation::LeakyRelu(alpha) => values.iter_mut().for_each(|v| *v = v.max(*v * alpha)),
        }
    }
}
