//! ResNet's stem pooling on the CPU: 3x3 max pooling at stride 2 with one pixel of padding, in
//! parallel over planes.
//!
//! candle pads with two copies of the whole stem output and then pools on one thread; here each
//! (image, channel) plane is one task and the padding is the taps that fall outside, skipped
//! (PyTorch pads max pooling with -inf, so they never win).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::nchw_f32;

/// `MaxPool2d(kernel_size=3, stride=2, padding=1)` on an NCHW f32 tensor.
#[derive(Debug, Clone, Copy)]
pub struct StemPool;

const KERNEL: usize = 3;
const STRIDE: usize = 2;
const PAD: usize = 1;

impl StemPool {
    /// Output side for an input side: `(size + 2 - 3) / 2 + 1`.
    fn output_size(size: usize) -> usize {
        (size + 2 * PAD).saturating_sub(KERNEL) / STRIDE + 1
    }

    fn plane(input: &[f32], (h, w): (usize, usize), out: &mut [f32], out_w: usize) {
        for (oy, row) in out.chunks_exact_mut(out_w).enumerate() {
            let rows = (oy * STRIDE).saturating_sub(PAD)..(oy * STRIDE + KERNEL - PAD).min(h);
            for (ox, slot) in row.iter_mut().enumerate() {
                let columns = (ox * STRIDE).saturating_sub(PAD)..(ox * STRIDE + KERNEL - PAD).min(w);
                let mut best = f32::NEG_INFINITY;
                for y in rows.clone() {
                    for &v in &input[y * w + columns.start..y * w + columns.end] {
                        best = best.max(v);
                    }
                }
                *slot = best;
            }
        }
    }
}

impl CustomOp1 for StemPool {
    fn name(&self) -> &'static str {
        "max-pool-3x3-s2"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (input, [n, c, h, w]) = nchw_f32("max pooling", storage, layout, None)?;
        if h == 0 || w == 0 {
            candle_core::bail!("max pooling of an empty {h}x{w} plane")
        }
        let (out_h, out_w) = (Self::output_size(h), Self::output_size(w));
        let mut output = vec![0f32; n * c * out_h * out_w];
        output
            .par_chunks_mut(out_h * out_w)
            .zip(input.par_chunks(h * w))
            .for_each(|(out, plane)| Self::plane(plane, (h, w), out, out_w));
        Ok((CpuStorage::F32(output), Shape::from((n, c, out_h, out_w))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// Equal to candle's pooling over explicitly padded input (the input is non-negative, as after
    /// the stem's ReLU, so zero padding and -inf padding agree), for even and odd sides.
    #[test]
    fn matches_padded_max_pooling() -> candle_core::Result<()> {
        for (h, w) in [(112, 112), (7, 9), (1, 1), (2, 3)] {
            let x = Tensor::rand(0f32, 1., (2, 3, h, w), &Device::Cpu)?;
            let ours = x.apply_op1_no_bwd(&StemPool)?;
            let reference = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?.max_pool2d_with_stride(3, 2)?;
            assert_eq!(ours.dims(), reference.dims(), "{h}x{w}");
            let diff = (ours - reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert_eq!(diff, 0.0, "{h}x{w}");
        }
        Ok(())
    }
}
