//! A 1x1 convolution for CPUs with AVX-512: one matrix product per image read straight from
//! NCHW, filters packed once at load, bias and activation applied in registers.
//!
//! The products behind candle's 1x1 path run on AVX2 even where the CPU has AVX-512 (the `gemm`
//! crate's AVX-512 kernels need a nightly compiler), pack their right-hand side on every call and
//! leave the bias and activation to a second pass over the output. Here a micro-tile is 8 output
//! channels by up to 48 pixels held in 24 registers; the pixels are loaded from the input's
//! channel rows as they lie (masked at a row's end, so any size works), and the filters from
//! panels laid out at load in the order the tile reads them.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{Activation, has_avx512, nchw_f32};

/// Output channels in one packed panel (the rows of a micro-tile).
const ROWS: usize = 8;
/// Pixels in one 512-bit vector.
const LANES: usize = 16;
/// Vectors of pixels in a full micro-tile.
const VECTORS: usize = 3;
/// Pixels in a full micro-tile.
const COLUMNS: usize = VECTORS * LANES;

/// The fused `act(w × x + b)` of a 1x1, stride-1, unpadded convolution on an NCHW f32 tensor.
#[derive(Debug, Clone)]
pub struct PointwiseConv {
    in_channels: usize,
    out_channels: usize,
    /// `[panel][in_channel][ROWS]`: the rows past `out_channels` in the last panel are zero.
    panels: Vec<f32>,
    /// One per output channel, zero-padded to whole panels.
    bias: Vec<f32>,
    activation: Activation,
}

impl PointwiseConv {
    /// Packs `weight` (`(out, in, 1, 1)` or `(out, in)`, f32) with its `bias` (one per output
    /// channel); `None` when this CPU has no AVX-512 (callers keep their general path).
    ///
    /// # Errors
    /// When `weight` is not a 2-D matrix (after dropping 1x1 kernel dimensions) or `bias` has
    /// another length than its rows.
    pub fn new(weight: &Tensor, bias: &[f32], activation: Activation) -> candle_core::Result<Option<Self>> {
        if !has_avx512() {
            return Ok(None);
        }
        Self::pack(weight, bias, activation).map(Some)
    }

    fn pack(weight: &Tensor, bias: &[f32], activation: Activation) -> candle_core::Result<Self> {
        let (out_channels, in_channels) = match weight.dims() {
            &[o, i] | &[o, i, 1, 1] => (o, i),
            dims => candle_core::bail!("a 1x1 convolution takes (out, in, 1, 1) filters, got {dims:?}"),
        };
        if in_channels == 0 {
            candle_core::bail!("a 1x1 convolution needs at least one input channel");
        }
        if bias.len() != out_channels {
            candle_core::bail!("{} biases for {out_channels} output channels", bias.len());
        }
        let rows: Vec<f32> = weight.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1()?;
        let panel_count = out_channels.div_ceil(ROWS);
        let mut panels = vec![0f32; panel_count * in_channels * ROWS];
        for (o, filter) in rows.chunks_exact(in_channels).enumerate() {
            let panel = &mut panels[(o / ROWS) * in_channels * ROWS..];
            for (i, &tap) in filter.iter().enumerate() {
                panel[i * ROWS + o % ROWS] = tap;
            }
        }
        let mut padded_bias = bias.to_vec();
        padded_bias.resize(panel_count * ROWS, 0.0);
        Ok(Self { in_channels, out_channels, panels, bias: padded_bias, activation })
    }

    fn panel_count(&self) -> usize {
        self.out_channels.div_ceil(ROWS)
    }

    /// Writes every element of output rows `[first_panel × ROWS, …)` of one image: `out` is
    /// those rows, whole (`pixels` each), and `input` the image's `in_channels` rows.
    fn image_rows(&self, input: &[f32], pixels: usize, first_panel: usize, out: &mut [MaybeUninit<f32>]) {
        let panels = out.len().div_ceil(ROWS * pixels);
        debug_assert!(input.len() == self.in_channels * pixels && first_panel + panels <= self.panel_count());
        for column in (0..pixels).step_by(COLUMNS) {
            let width = COLUMNS.min(pixels - column);
            for panel in first_panel..first_panel + panels {
                let rows = ROWS.min(self.out_channels - panel * ROWS);
                let tile = Tile {
                    filters: &self.panels[panel * self.in_channels * ROWS..][..self.in_channels * ROWS],
                    bias: &self.bias[panel * ROWS..][..ROWS],
                    input: &input[column..],
                    pixels,
                    width,
                    rows,
                };
                let out_at = (panel - first_panel) * ROWS * pixels + column;
                // SAFETY: the dispatch in `new` found AVX-512F on this CPU; `tile` checks its
                // own extents against the slices it reads and writes.
                unsafe { tile.run(self.activation, &mut out[out_at..]) };
            }
        }
    }
}

/// One micro-tile: `rows` output channels by `width` pixels from `column` on.
struct Tile<'a> {
    /// The panel's `[in_channel][ROWS]` taps.
    filters: &'a [f32],
    bias: &'a [f32],
    /// The image's input from the tile's first pixel on (channel rows `pixels` apart).
    input: &'a [f32],
    pixels: usize,
    width: usize,
    rows: usize,
}

impl Tile<'_> {
    /// Writes the tile into `out` (its first row's first pixel first, rows `pixels` apart); it
    /// reads nothing there, so `out` may be uninitialised.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[cfg(target_arch = "x86_64")]
    unsafe fn run(&self, activation: Activation, out: &mut [MaybeUninit<f32>]) {
        let channels = self.filters.len() / ROWS;
        // Every load and store below stays inside these bounds (masked lanes touch no memory).
        assert!(self.width <= COLUMNS && self.rows <= ROWS && self.bias.len() == ROWS);
        assert!(channels == 0 || self.input.len() >= (channels - 1) * self.pixels + self.width);
        assert!(self.rows == 0 || out.len() >= (self.rows - 1) * self.pixels + self.width);
        // SAFETY: AVX-512F per this function's contract; extents asserted above.
        unsafe {
            match self.width.div_ceil(LANES) {
                1 => self.run_vectors::<1>(activation, out),
                2 => self.run_vectors::<2>(activation, out),
                _ => self.run_vectors::<3>(activation, out),
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn run(&self, _: Activation, _: &mut [MaybeUninit<f32>]) {
        unreachable!("PointwiseConv::new returns None off x86-64")
    }

    /// The tile with `V` vectors of pixels, the last one masked to `width`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn run_vectors<const V: usize>(&self, activation: Activation, out: &mut [MaybeUninit<f32>]) {
        use std::arch::x86_64::*;
        let tail = self.width - (V - 1) * LANES;
        let mask =
            |v: usize| -> __mmask16 { if v + 1 < V { 0xFFFF } else { (1u32 << tail).wrapping_sub(1) as __mmask16 } };
        let channels = self.filters.len() / ROWS;
        let mut acc = [[_mm512_setzero_ps(); V]; ROWS];
        let input = self.input.as_ptr();
        for (channel, taps) in self.filters.chunks_exact(ROWS).enumerate().take(channels) {
            let row = input.wrapping_add(channel * self.pixels);
            // SAFETY: lanes past `width` are masked off; the others lie inside `input` (asserted
            // by `run`).
            let mut x = [_mm512_setzero_ps(); V];
            for (v, lane) in x.iter_mut().enumerate() {
                *lane = unsafe { _mm512_maskz_loadu_ps(mask(v), row.wrapping_add(v * LANES)) };
            }
            for (sums, &tap) in acc.iter_mut().zip(taps) {
                let w = _mm512_set1_ps(tap);
                for (sum, &lane) in sums.iter_mut().zip(&x) {
                    *sum = _mm512_fmadd_ps(w, lane, *sum);
                }
            }
        }
        let zero = _mm512_setzero_ps();
        let (slope, ceiling) = match activation {
            Activation::LeakyRelu(alpha) => (alpha, f32::INFINITY),
            Activation::Relu6 => (0.0, 6.0),
            Activation::Relu | Activation::None => (0.0, f32::INFINITY),
        };
        let (slope, ceiling) = (_mm512_set1_ps(slope), _mm512_set1_ps(ceiling));
        let out = out.as_mut_ptr().cast::<f32>();
        // Constant trip counts throughout, so that the sums stay in registers.
        for (r, sums) in acc.iter().enumerate() {
            if r >= self.rows {
                break;
            }
            let bias = _mm512_set1_ps(self.bias[r]);
            for (v, &sum) in sums.iter().enumerate() {
                let mut y = _mm512_add_ps(sum, bias);
                y = match activation {
                    Activation::None => y,
                    Activation::Relu | Activation::Relu6 => _mm512_min_ps(_mm512_max_ps(y, zero), ceiling),
                    Activation::LeakyRelu(_) => _mm512_max_ps(y, _mm512_mul_ps(y, slope)),
                };
                // SAFETY: as for the loads (`out`'s extent asserted by `run`).
                unsafe { _mm512_mask_storeu_ps(out.wrapping_add(r * self.pixels + v * LANES), mask(v), y) };
            }
        }
    }
}

impl CustomOp1 for PointwiseConv {
    fn name(&self) -> &'static str {
        "pointwise-conv2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (input, [n, _, h, w]) = nchw_f32(self.name(), storage, layout, Some(self.in_channels))?;
        let pixels = h * w;
        let image_out = self.out_channels * pixels;
        let shape = Shape::from((n, self.out_channels, h, w));
        if image_out == 0 {
            return Ok((CpuStorage::F32(Vec::new()), shape));
        }
        // Left uninitialised: zeroing it first (`calloc` on reused heap memory) cost 7% of
        // EfficientNet-Lite0's samples, and the tiles write every element.
        let mut out = Vec::with_capacity(n * image_out);
        // Enough tasks for every thread when the batch is small: an image's output channels are
        // split into groups of whole panels.
        let wanted = (3 * rayon::current_num_threads()).div_ceil(n.max(1));
        let groups = wanted.clamp(1, self.panel_count());
        let group_panels = self.panel_count().div_ceil(groups);
        let spare = &mut out.spare_capacity_mut()[..n * image_out];
        spare.par_chunks_mut(image_out).zip(input.par_chunks(self.in_channels * pixels)).for_each(
            |(image_out, image)| {
                image_out.par_chunks_mut(group_panels * ROWS * pixels).enumerate().for_each(|(group, rows)| {
                    self.image_rows(image, pixels, group * group_panels, rows);
                });
            },
        );
        // SAFETY: the images' row groups cover all `n × image_out` elements, and `image_rows`
        // writes every element of its rows (each pixel column of each panel's rows).
        unsafe { out.set_len(n * image_out) };
        Ok((CpuStorage::F32(out), shape))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// The kernel equals candle's product plus bias and activation, for sizes that end in every
    /// kind of partial tile and channel counts that leave part of a panel empty.
    #[test]
    fn matches_the_matrix_product() -> candle_core::Result<()> {
        if !has_avx512() {
            eprintln!("no AVX-512 on this CPU: the pointwise kernel is not used here");
            return Ok(());
        }
        let dev = Device::Cpu;
        for (n, c_in, c_out, size, activation) in [
            (1, 3, 8, 1, Activation::None),
            (2, 16, 24, 7, Activation::Relu6),
            (3, 24, 13, 14, Activation::Relu),
            (1, 40, 96, 12, Activation::LeakyRelu(0.1)),
            (2, 5, 17, 5, Activation::Relu6),
            (1, 320, 64, 4, Activation::None),
        ] {
            let x = Tensor::randn(0f32, 1., (n, c_in, size, size), &dev)?;
            let w = Tensor::randn(0f32, 1., (c_out, c_in, 1, 1), &dev)?;
            let b = Tensor::randn(0f32, 1., c_out, &dev)?;
            let op = PointwiseConv::pack(&w, &b.to_vec1()?, activation)?;
            let fused = x.apply_op1_no_bwd(&op)?;
            let product = w.reshape((c_out, c_in))?.broadcast_matmul(&x.reshape((n, c_in, size * size))?)?;
            let reference = activation
                .apply(&product.reshape((n, c_out, size, size))?.broadcast_add(&b.reshape((1, c_out, 1, 1))?)?)?;
            assert_eq!(fused.dims(), reference.dims());
            let diff = (fused - reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-4, "{n}x{c_in}x{size}x{size} -> {c_out}: differs by {diff}");
        }
        Ok(())
    }
}
