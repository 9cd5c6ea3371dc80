//! Dense convolutions on the CPU as one matrix product per image: the input's patches laid out as
//! columns (im2col), multiplied by the filters as rows.
//!
//! candle's own CPU convolution re-flattens the filters at every call, converts the input to NHWC
//! on one thread, and gathers each tile's patches element by element: on NanoDet that bookkeeping
//! took about three times the matrix products' time. Here the filters are flattened once, at load
//! ([`FlatFilters`]), and each patch row is built from contiguous row copies (stride 1) in
//! parallel; the product's `(c_out, out_h × out_w)` result is already the NCHW output.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::Pad;

/// Filters `(c_out, c_in, k, k)` flattened to the `(c_out, c_in × k × k)` matrix the product takes.
#[derive(Debug, Clone)]
pub struct FlatFilters {
    matrix: Tensor,
    in_channels: usize,
    kernel: usize,
}

impl FlatFilters {
    /// # Errors
    /// When `filters` is not 4-D with square kernels.
    pub fn new(filters: &Tensor) -> candle_core::Result<Self> {
        let (out_channels, in_channels, kh, kw) = filters.dims4()?;
        if kh != kw {
            candle_core::bail!("a {kh}x{kw} kernel is not square")
        }
        let matrix = filters.contiguous()?.reshape((out_channels, in_channels * kh * kw))?;
        Ok(Self { matrix, in_channels, kernel: kh })
    }

    /// Convolves an NCHW f32 batch on the CPU: `pad` around each image, then `stride`.
    ///
    /// # Errors
    /// A shape mismatch (another channel count), or an input not on the CPU.
    pub fn conv(&self, x: &Tensor, stride: usize, pad: Pad) -> candle_core::Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if c != self.in_channels {
            candle_core::bail!("convolution of {} channels, input has {c}", self.in_channels)
        }
        let (out_h, out_w) = pad.output_size(h, w, self.kernel, stride);
        let patches = Patches { kernel: self.kernel, stride, pad, out_h, out_w };
        let x = x.contiguous()?;
        // One image at a time: the patch matrix of a whole batch would be k² times its input.
        let mut images = (0..n)
            .map(|i| {
                let columns = x.narrow(0, i, 1)?.apply_op1_no_bwd(&patches)?;
                self.matrix.matmul(&columns)?.reshape((1, self.matrix.dim(0)?, out_h, out_w))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        if images.len() == 1 { Ok(images.remove(0)) } else { Tensor::cat(&images, 0) }
    }
}

/// im2col of one `(1, c, h, w)` image: a `(c × k × k, out_h × out_w)` matrix whose row
/// `(channel, ky, kx)` holds, for each output position, the input pixel that tap reads (0 in the
/// padding).
#[derive(Debug, Clone, Copy)]
struct Patches {
    kernel: usize,
    stride: usize,
    pad: Pad,
    out_h: usize,
    out_w: usize,
}

impl Patches {
    /// Fills one row of the matrix from its channel's plane.
    fn row(&self, plane: &[f32], (h, w): (usize, usize), (ky, kx): (usize, usize), row: &mut [f32]) {
        let Patches { stride: s, pad, out_w, .. } = *self;
        // The output columns whose input column `ox * s + kx - left` lies inside the image.
        let first = pad.left.saturating_sub(kx).div_ceil(s).min(out_w);
        let end = (w - 1 + pad.left).checked_sub(kx).map_or(0, |last| last / s + 1).min(out_w);
        for (oy, out) in row.chunks_exact_mut(out_w).enumerate() {
            let iy = (oy * s + ky).checked_sub(pad.top).filter(|&y| y < h);
            let Some(iy) = iy.filter(|_| first < end) else {
                out.fill(0.0);
                continue;
            };
            out[..first].fill(0.0);
            out[end..].fill(0.0);
            let start = first * s + kx - pad.left;
            let source = &plane[iy * w + start..(iy + 1) * w];
            if s == 1 {
                out[first..end].copy_from_slice(&source[..end - first]);
            } else {
                for (o, v) in out[first..end].iter_mut().zip(source.iter().step_by(s)) {
                    *o = *v;
                }
            }
        }
    }
}

impl CustomOp1 for Patches {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let input = super::contiguous_f32(self.name(), storage, layout)?;
        let &[1, c, h, w] = layout.dims() else {
            candle_core::bail!("im2col takes one NCHW image, got {:?}", layout.dims())
        };
        let (k, positions) = (self.kernel, self.out_h * self.out_w);
        let mut columns = vec![0f32; c * k * k * positions];
        if h == 0 || w == 0 || positions == 0 {
            return Ok((CpuStorage::F32(columns), Shape::from((c * k * k, positions))));
        }
        columns.par_chunks_mut(positions).enumerate().for_each(|(r, row)| {
            let (channel, tap) = (r / (k * k), r % (k * k));
            self.row(&input[channel * h * w..(channel + 1) * h * w], (h, w), (tap / k, tap % k), row);
        });
        Ok((CpuStorage::F32(columns), Shape::from((c * k * k, positions))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Equal to candle's convolution on explicitly padded input, for the kernels, strides and
    /// paddings the models use (symmetric and TF's asymmetric SAME), batches of two.
    #[test]
    fn matches_candles_convolution() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for (k, s, size, pad) in [
            (3, 1, 9, Pad::symmetric(1)),
            (3, 2, 10, Pad::tf_same(10, 10, 3, 2)),
            (3, 2, 9, Pad::symmetric(1)),
            (1, 2, 7, Pad::symmetric(0)),
            (7, 2, 12, Pad::symmetric(3)),
            (3, 1, 5, Pad::symmetric(0)),
            (5, 1, 3, Pad::symmetric(2)),
        ] {
            let x = Tensor::randn(0f32, 1., (2, 3, size, size), &dev)?;
            let filters = Tensor::randn(0f32, 1., (4, 3, k, k), &dev)?;
            let ours = FlatFilters::new(&filters)?.conv(&x, s, pad)?;
            let reference = pad.apply(&x)?.conv2d(&filters, 0, s, 1, 1)?;
            assert_eq!(ours.dims(), reference.dims(), "k{k} s{s} size {size}");
            let diff = (ours - reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-4, "k{k} s{s} size {size} {pad:?}: differs by {diff}");
        }
        Ok(())
    }
}
