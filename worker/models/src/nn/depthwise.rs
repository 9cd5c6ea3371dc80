//! A depthwise convolution for the CPU, with bias and activation fused in.
//!
//! candle runs a grouped convolution as one small convolution per group, which for depthwise
//! layers (one group per channel) costs more in bookkeeping than in arithmetic and gets slower
//! with more threads. Here each (image, channel) plane is one task: the kernel's taps slide along
//! contiguous rows, which the compiler vectorises at stride 1 — with AVX2 and fused multiply-adds
//! where the CPU has them (checked at run time), SSE2 otherwise.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::{Activation, Pad, nchw_f32};

/// The fused depthwise convolution `act(conv(x, w) + b)` on an NCHW f32 tensor.
#[derive(Debug, Clone)]
pub struct DepthwiseConv {
    /// `channels * kernel * kernel` taps, row-major per channel.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    pub kernel: usize,
    pub stride: usize,
    pub pad: Pad,
    pub activation: Activation,
}

/// Output floats not yet written.
type Uninit = [MaybeUninit<f32>];

/// One output plane's geometry.
#[derive(Clone, Copy)]
struct Plane {
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
}

impl DepthwiseConv {
    fn channels(&self) -> usize {
        self.bias.len()
    }

    /// Convolves one channel plane into `out`, writing every element; `scratch` is reused between
    /// planes.
    fn plane(&self, channel: usize, input: &[f32], geometry: Plane, out: &mut Uninit, scratch: &mut Scratch) {
        #[cfg(target_arch = "x86_64")]
        if super::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked on the line above).
            return unsafe { self.plane_avx2_fma(channel, input, geometry, out, scratch) };
        }
        self.plane_with::<false>(channel, input, geometry, out, scratch);
    }

    /// [`Self::plane`] compiled for AVX2 with fused multiply-adds.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn plane_avx2_fma(&self, channel: usize, input: &[f32], geometry: Plane, out: &mut Uninit, scratch: &mut Scratch) {
        self.plane_with::<true>(channel, input, geometry, out, scratch);
    }

    /// The plane's arithmetic; `FMA`: accumulate with fused multiply-adds (only where the CPU
    /// has them: without, `mul_add` is a library call). Strides 1 and 2 copy the plane once into
    /// a zero-bordered `scratch` (stride 2: each row's even columns, then its odd ones), so that
    /// eight outputs at a time sum their taps from contiguous loads; other strides take the
    /// general path.
    #[inline(always)]
    fn plane_with<const FMA: bool>(
        &self,
        channel: usize,
        input: &[f32],
        geometry: Plane,
        out: &mut Uninit,
        scratch: &mut Scratch,
    ) {
        let Plane { in_h, in_w, out_h, out_w } = geometry;
        let (k, s) = (self.kernel, self.stride);
        if !(s == 1 || s == 2) || k * k > MAX_TAPS || out_h == 0 || out_w == 0 || in_h == 0 || in_w == 0 {
            return self.plane_general::<FMA>(channel, input, geometry, out);
        }
        // The padded plane as far as the outputs read it, rows widened to whole groups of eight
        // outputs (the extra ones read zeros and are not kept).
        let wide = out_w.next_multiple_of(8);
        let (ph, pw) = ((out_h - 1) * s + k, (wide - 1) * s + k);
        let (top, left) = (self.pad.top, self.pad.left);
        let scratch = scratch.padded([ph, pw, top, left, in_h, in_w, s]);
        for y in 0..in_h.min(ph.saturating_sub(top)) {
            let width = in_w.min(pw.saturating_sub(left));
            let row = &mut scratch[(y + top) * pw..(y + top + 1) * pw];
            let source = &input[y * in_w..y * in_w + width];
            if s == 1 {
                row[left..left + width].copy_from_slice(source);
            } else {
                // Column c goes to c / 2 among the evens or to half + c / 2 among the odds: one
                // pass per parity, so the stores are contiguous.
                let half = pw.div_ceil(2);
                for parity in 0..2 {
                    let skip = (parity + 2 - left % 2) % 2;
                    let to = parity * half + (left + skip) / 2;
                    for (slot, v) in row[to..].iter_mut().zip(source.iter().skip(skip).step_by(2)) {
                        *slot = *v;
                    }
                }
            }
        }
        let weights = &self.weights[channel * k * k..(channel + 1) * k * k];
        let half = pw.div_ceil(2);
        // Each tap with where its column lies in a scratch row relative to the output group's
        // first column (`ox + offset(kx)`), rows included.
        let offset = |kx: usize| if s == 1 { kx } else { (kx % 2) * half + kx / 2 };
        let mut taps = [(0f32, 0usize); MAX_TAPS];
        for (i, tap) in taps.iter_mut().enumerate().take(k * k) {
            *tap = (weights[i], (i / k) * pw + offset(i % k));
        }
        let taps = &taps[..k * k];
        // How far past a group's start its last tap reads.
        let reach = taps.iter().map(|t| t.1).max().unwrap_or(0) + 8;
        // Groups of eight outputs, row by row, taken CHAINS at a time: their sums are independent,
        // so the fused multiply-adds overlap instead of each waiting for the one before.
        let per_row = wide / 8;
        let groups = out_h * per_row;
        let place = |g: usize| (g / per_row, (g % per_row) * 8);
        for first in (0..groups).step_by(CHAINS) {
            let n = (groups - first).min(CHAINS);
            // Each group's first tap in `scratch`; spare chains repeat the first group.
            let mut starts = [0usize; CHAINS];
            for (i, start) in starts.iter_mut().enumerate() {
                let (oy, x0) = place(first + if i < n { i } else { 0 });
                *start = oy * s * pw + x0;
            }
            let sums = sum_groups::<FMA>(scratch, &starts, taps, reach, self.bias[channel]);
            for (i, sum) in sums.iter().enumerate().take(n) {
                let (oy, x0) = place(first + i);
                let kept = (out_w - x0).min(8);
                for (o, v) in out[oy * out_w + x0..oy * out_w + x0 + kept].iter_mut().zip(sum) {
                    o.write(*v);
                }
            }
        }
        // SAFETY: the groups cover every row and, eight at a time with the last group's `kept`
        // cut to the row's end, every column of the plane: each element was written above.
        let out = unsafe { assume_written(&mut out[..out_h * out_w]) };
        self.activation.apply_slice(out);
    }

    /// Any stride: each tap slides along the rows it reads, padding skipped.
    #[inline(always)]
    fn plane_general<const FMA: bool>(&self, channel: usize, input: &[f32], geometry: Plane, out: &mut Uninit) {
        let Plane { in_h, in_w, out_h, out_w } = geometry;
        let (k, s) = (self.kernel, self.stride);
        let taps = &self.weights[channel * k * k..(channel + 1) * k * k];
        for o in out.iter_mut() {
            o.write(self.bias[channel]);
        }
        // SAFETY: every element was written on the lines above.
        let out = unsafe { assume_written(out) };
        for (oy, row) in out.chunks_exact_mut(out_w).enumerate().take(out_h) {
            for ky in 0..k {
                let Some(iy) = (oy * s + ky).checked_sub(self.pad.top).filter(|&y| y < in_h) else { continue };
                let in_row = &input[iy * in_w..(iy + 1) * in_w];
                for kx in 0..k {
                    let tap = taps[ky * k + kx];
                    // Outputs whose input column `ox * s + kx - left` lies inside the row.
                    let first = self.pad.left.saturating_sub(kx).div_ceil(s);
                    let Some(last_in) = (in_w - 1 + self.pad.left).checked_sub(kx) else { continue };
                    let end = (last_in / s + 1).min(out_w);
                    if first >= end {
                        continue;
                    }
                    let start_in = first * s + kx - self.pad.left;
                    for (o, i) in row[first..end].iter_mut().zip(in_row[start_in..].iter().step_by(s)) {
                        *o = if FMA { tap.mul_add(*i, *o) } else { *o + tap * i };
                    }
                }
            }
            self.activation.apply_slice(row);
        }
    }
}

/// `out` as the floats it holds.
///
/// # Safety
/// Every element of `out` must have been written.
unsafe fn assume_written(out: &mut Uninit) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the caller wrote every element.
    unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// A thread's zero-bordered copy of the plane it convolves, kept between planes.
#[derive(Default)]
struct Scratch {
    data: Vec<f32>,
    /// The layout `data` was zeroed for: padded height and width, top and left padding, input
    /// height and width, stride.
    layout: Option<[usize; 7]>,
}

impl Scratch {
    /// The buffer for a plane of `layout` (its first two entries give the size). Planes of one
    /// layout write the same elements, so the border another plane left zero is zero still: the
    /// buffer is zeroed only when the layout changes (zeroing it per plane was 4% of
    /// EfficientNet-Lite0's samples).
    fn padded(&mut self, layout: [usize; 7]) -> &mut [f32] {
        if self.layout != Some(layout) {
            self.data.clear();
            self.data.resize(layout[0] * layout[1], 0.0);
            self.layout = Some(layout);
        }
        &mut self.data
    }
}

/// How many groups of eight outputs [`DepthwiseConv::plane_with`] sums at once: enough
/// independent fused multiply-adds to cover their latency on two FMA units (4 cycles each).
const CHAINS: usize = 8;

/// The most taps (kernel × kernel) the scratch path takes; larger kernels take the general path.
const MAX_TAPS: usize = 49;

/// The sums of CHAINS groups of eight outputs: `bias + Σ tap × scratch[start + shift..][..8]` over
/// `taps` ((tap, shift) pairs), for each group's `start`; `reach` is the largest shift plus eight.
#[inline(always)]
fn sum_groups<const FMA: bool>(
    scratch: &[f32],
    starts: &[usize; CHAINS],
    taps: &[(f32, usize)],
    reach: usize,
    bias: f32,
) -> [[f32; 8]; CHAINS] {
    let furthest = starts.iter().max().copied().unwrap_or(0) + reach;
    #[cfg(target_arch = "x86_64")]
    if FMA && furthest <= scratch.len() {
        use std::arch::x86_64::{__m256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_storeu_ps};
        // SAFETY: `FMA` is true only on the path entered after checking AVX2 and FMA
        // (`DepthwiseConv::plane`); every load reads eight f32s at `start + shift`, which ends at
        // or before `furthest`, checked above to lie within `scratch`.
        unsafe {
            let base = scratch.as_ptr();
            let mut acc: [__m256; CHAINS] = [_mm256_set1_ps(bias); CHAINS];
            for &(tap, shift) in taps {
                let tap = _mm256_set1_ps(tap);
                let at = base.add(shift);
                for (sum, start) in acc.iter_mut().zip(starts) {
                    *sum = _mm256_fmadd_ps(tap, _mm256_loadu_ps(at.add(*start)), *sum);
                }
            }
            let mut sums = [[0f32; 8]; CHAINS];
            for (out, sum) in sums.iter_mut().zip(acc) {
                _mm256_storeu_ps(out.as_mut_ptr(), sum);
            }
            return sums;
        }
    }
    let mut sums = [[bias; 8]; CHAINS];
    for &(tap, shift) in taps {
        for (sum, start) in sums.iter_mut().zip(starts) {
            let at = start + shift;
            let src: &[f32; 8] = scratch.get(at..at + 8).and_then(|w| w.try_into().ok()).unwrap_or(&[0.0; 8]);
            multiply_add::<FMA>(sum, tap, src);
        }
    }
    sums
}

/// `acc += tap × src`, lane by lane: one 256-bit fused multiply-add where `FMA` says the CPU has
/// AVX2 and FMA (LLVM otherwise splits the eight lanes into two 128-bit halves).
#[inline(always)]
fn multiply_add<const FMA: bool>(acc: &mut [f32; 8], tap: f32, src: &[f32; 8]) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        use std::arch::x86_64::{_mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_storeu_ps};
        // SAFETY: `FMA` is true only on the path entered after checking AVX2 and FMA
        // (`DepthwiseConv::plane`); both pointers address eight f32s of arrays borrowed here.
        unsafe {
            let sum =
                _mm256_fmadd_ps(_mm256_set1_ps(tap), _mm256_loadu_ps(src.as_ptr()), _mm256_loadu_ps(acc.as_ptr()));
            _mm256_storeu_ps(acc.as_mut_ptr(), sum);
        }
        return;
    }
    for (a, s) in acc.iter_mut().zip(src) {
        *a += tap * s;
    }
}

impl CustomOp1 for DepthwiseConv {
    fn name(&self) -> &'static str {
        "depthwise-conv2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (input, [n, c, in_h, in_w]) = nchw_f32(self.name(), storage, layout, Some(self.channels()))?;
        let (out_h, out_w) = self.pad.output_size(in_h, in_w, self.kernel, self.stride);
        let geometry = Plane { in_h, in_w, out_h, out_w };
        // Left uninitialised: each plane writes every element of its part (zeroing the output
        // first was 2.3% of EfficientNet-Lite0's samples).
        let len = n * c * out_h * out_w;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        out.spare_capacity_mut()[..len].par_chunks_mut((out_h * out_w).max(1)).enumerate().for_each_init(
            Scratch::default,
            |scratch, (p, plane_out)| {
                let plane_in = &input[p * in_h * in_w..(p + 1) * in_h * in_w];
                self.plane(p % c, plane_in, geometry, plane_out, scratch);
            },
        );
        // SAFETY: the planes partition the first `len` elements, and `plane` writes every element
        // of its part.
        unsafe { out.set_len(len) };
        Ok((CpuStorage::F32(out), Shape::from((n, c, out_h, out_w))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// The fused kernel equals candle's grouped convolution on explicitly padded input, for the
    /// kernel sizes, strides and asymmetric paddings EfficientNet uses.
    #[test]
    fn matches_grouped_convolution() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for (k, s, size) in [
            (3, 1, 9),
            (3, 2, 10),
            (5, 2, 11),
            (5, 1, 7),
            (3, 2, 1),
            (3, 1, 20),
            (5, 2, 37),
            (3, 2, 64),
            (5, 1, 30),
            (3, 3, 13),
        ] {
            let c = 3;
            let x = Tensor::randn(0f32, 1., (2, c, size, size), &dev)?;
            let w = Tensor::randn(0f32, 1., (c, 1, k, k), &dev)?;
            let b = Tensor::randn(0f32, 1., c, &dev)?;
            let pad = Pad::tf_same(size, size, k, s);
            let op = DepthwiseConv {
                weights: w.flatten_all()?.to_vec1()?,
                bias: b.to_vec1()?,
                kernel: k,
                stride: s,
                pad,
                activation: Activation::None,
            };
            let fused = x.apply_op1_no_bwd(&op)?;
            let padded = x.pad_with_zeros(2, pad.top, pad.bottom)?.pad_with_zeros(3, pad.left, pad.right)?;
            let reference = padded.conv2d(&w, 0, s, 1, c)?.broadcast_add(&b.reshape((1, c, 1, 1))?)?;
            assert_eq!(fused.dims(), reference.dims(), "k{k} s{s} size {size}");
            let diff = (fused - reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-4, "k{k} s{s} size {size}: differs by {diff}");
        }
        Ok(())
    }
}
