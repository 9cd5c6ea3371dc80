//! Dense 3x3 stride-1 convolutions on the CPU by Winograd's minimal filtering F(4x4, 3x3):
//! 36 multiplications per 4x4 block of outputs, per filter and input channel, instead of 144.
//!
//! The filters are transformed once, at load, into 36 matrices `U[p]` of `(c_out, c_in)`, one per
//! position `p` of a 6x6 tile (Lavin and Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2015). A forward pass transforms every overlapping 6x6 input tile of every channel
//! (`V = Bᵀ d B`), runs 36 independent matrix products `M[p] = U[p] × V[p]` over all tiles of a
//! chunk of images (one product per task, spread over the compute threads), and turns each 6x6
//! block of `M` back into a 4x4 block of outputs (`Aᵀ M A`) with the layer's bias and activation
//! applied on the way out. The transforms run a whole row of tiles at once, lane by lane, so that
//! they vectorise (AVX2 where the CPU has it, checked at run time).
//!
//! Rounding differs from a direct convolution's: the transforms scale by up to 8 and 1/24, so
//! results agree to about 1e-6 of the layer's largest partial sums (tested against im2col).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::bias::BiasActivation;
use super::{Activation, Pad, nchw_f32};

/// Outputs per side of a tile.
const OUT: usize = 4;
/// Inputs per side of a tile: `OUT + 3 - 1`.
const SPAN: usize = 6;
/// Values per transformed tile.
const POSITIONS: usize = SPAN * SPAN;
/// Bytes of transformed inputs and products one chunk of a batch may hold; larger batches go
/// through in chunks of whole images.
const CHUNK_BYTES: usize = 32 << 20;

/// 3x3 filters `(c_out, c_in, 3, 3)` transformed for F(4x4, 3x3).
#[derive(Debug, Clone)]
pub struct WinogradFilters {
    /// `[36][c_out][c_in]`: position `p` of every filter's transformed 6x6 tile.
    transformed: Vec<f32>,
    in_channels: usize,
    out_channels: usize,
}

impl WinogradFilters {
    /// Transforms `filters` (`U = G g Gᵀ`, computed in f64).
    ///
    /// # Errors
    /// When `filters` is not a 4-D f32 tensor of 3x3 kernels.
    pub fn new(filters: &Tensor) -> candle_core::Result<Self> {
        let (out_channels, in_channels, kh, kw) = filters.dims4()?;
        if (kh, kw) != (3, 3) {
            candle_core::bail!("Winograd F(4x4, 3x3) takes 3x3 kernels, got {kh}x{kw}")
        }
        let taps = filters.flatten_all()?.to_vec1::<f32>()?;
        let mut transformed = vec![0f32; POSITIONS * out_channels * in_channels];
        for (pair, g) in taps.chunks_exact(9).enumerate() {
            let (o, i) = (pair / in_channels, pair % in_channels);
            // G g: each kernel column to six values, then each of those six rows likewise.
            let columns: [[f64; SPAN]; 3] = std::array::from_fn(|x| filter_lanes([g[x], g[3 + x], g[6 + x]]));
            let rows: [[f64; SPAN]; SPAN] =
                std::array::from_fn(|row| filter_lanes_f64([columns[0][row], columns[1][row], columns[2][row]]));
            for (p, value) in rows.as_flattened().iter().enumerate() {
                transformed[(p * out_channels + o) * in_channels + i] = *value as f32;
            }
        }
        Ok(Self { transformed, in_channels, out_channels })
    }

    /// Convolves an NCHW f32 batch on the CPU, zero `pad` around each image, stride 1, and applies
    /// `epilogue` (bias and activation) to the result.
    ///
    /// # Errors
    /// A shape mismatch (another channel count, or `epilogue` for another number of filters), or
    /// an input that is not f32 on the CPU.
    pub fn conv(&self, x: &Tensor, pad: Pad, epilogue: &BiasActivation) -> candle_core::Result<Tensor> {
        self.conv_in_chunks(x, pad, epilogue, CHUNK_BYTES)
    }

    fn conv_in_chunks(
        &self,
        x: &Tensor,
        pad: Pad,
        epilogue: &BiasActivation,
        chunk_bytes: usize,
    ) -> candle_core::Result<Tensor> {
        if epilogue.bias.len() != self.out_channels {
            candle_core::bail!("{} filters, {} biases", self.out_channels, epilogue.bias.len())
        }
        x.contiguous()?.apply_op1_no_bwd(&WinogradConv { filters: self, pad, epilogue, chunk_bytes })
    }
}

/// `G g` for one kernel column or row (`G` is 6x3), in f64.
fn filter_lanes(g: [f32; 3]) -> [f64; SPAN] {
    filter_lanes_f64(g.map(f64::from))
}

fn filter_lanes_f64([g0, g1, g2]: [f64; 3]) -> [f64; SPAN] {
    [
        g0 / 4.0,
        -(g0 + g1 + g2) / 6.0,
        -(g0 - g1 + g2) / 6.0,
        g0 / 24.0 + g1 / 12.0 + g2 / 6.0,
        g0 / 24.0 - g1 / 12.0 + g2 / 6.0,
        g2,
    ]
}

/// `Bᵀ d` lane by lane: six rows of `n` lanes (`d[k]`) to six rows in `t` (`[6][n]`).
#[inline(always)]
fn input_lanes(d: [&[f32]; SPAN], t: &mut [f32], n: usize) {
    let [d0, d1, d2, d3, d4, d5] = d.map(|row| &row[..n]);
    let (t0, rest) = t[..SPAN * n].split_at_mut(n);
    let (t1, rest) = rest.split_at_mut(n);
    let (t2, rest) = rest.split_at_mut(n);
    let (t3, rest) = rest.split_at_mut(n);
    let (t4, t5) = rest.split_at_mut(n);
    for l in 0..n {
        let (a, b, c, d, e, f) = (d0[l], d1[l], d2[l], d3[l], d4[l], d5[l]);
        t0[l] = 4.0 * a - 5.0 * c + e;
        t1[l] = -4.0 * (b + c) + d + e;
        t2[l] = 4.0 * (b - c) - d + e;
        t3[l] = 2.0 * (d - b) - c + e;
        t4[l] = 2.0 * (b - d) - c + e;
        t5[l] = 4.0 * b - 5.0 * d + f;
    }
}

/// `Aᵀ m` lane by lane: six rows of `n` lanes (`m[k]`) to four rows in `y` (`[4][n]`).
#[inline(always)]
fn output_lanes(m: [&[f32]; SPAN], y: &mut [f32], n: usize) {
    let [m0, m1, m2, m3, m4, m5] = m.map(|row| &row[..n]);
    let (y0, rest) = y[..OUT * n].split_at_mut(n);
    let (y1, rest) = rest.split_at_mut(n);
    let (y2, y3) = rest.split_at_mut(n);
    for l in 0..n {
        let (sum12, diff12) = (m1[l] + m2[l], m1[l] - m2[l]);
        let (sum34, diff34) = (m3[l] + m4[l], m3[l] - m4[l]);
        y0[l] = m0[l] + sum12 + sum34;
        y1[l] = diff12 + 2.0 * diff34;
        y2[l] = sum12 + 4.0 * sum34;
        y3[l] = diff12 + 8.0 * diff34 + m5[l];
    }
}

/// Where the tiles of one image lie.
#[derive(Debug, Clone, Copy)]
struct Grid {
    h: usize,
    w: usize,
    pad: Pad,
    out_h: usize,
    out_w: usize,
    tiles_y: usize,
    tiles_x: usize,
}

/// Buffers one task reuses from plane to plane.
#[derive(Default)]
struct Scratch {
    /// One padded input row.
    line: Vec<f32>,
    /// The row's six phases: `phases[k][t]` is the line's column `4t + k`.
    phases: Vec<f32>,
    /// Row-transformed input rows, `[rows][6][tiles_x]`; or, on the way out, `[6][4][tiles_x]`.
    rows: Vec<f32>,
    /// One transformed row of tiles, or one row of outputs `[4][tiles_x]`.
    lanes: Vec<f32>,
}

impl Grid {
    fn tiles(&self) -> usize {
        self.tiles_y * self.tiles_x
    }

    /// Transforms one channel plane of one image into `block` (`[36][tiles]`), its tiles starting
    /// at column `first` of each of the 36 rows.
    fn transform_input(&self, plane: &[f32], block: &mut [f32], first: usize, tiles: usize, scratch: &mut Scratch) {
        #[cfg(target_arch = "x86_64")]
        if super::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked on the line above).
            return unsafe { self.transform_input_avx2(plane, block, first, tiles, scratch) };
        }
        self.transform_input_with(plane, block, first, tiles, scratch);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn transform_input_avx2(
        &self,
        plane: &[f32],
        block: &mut [f32],
        first: usize,
        tiles: usize,
        scratch: &mut Scratch,
    ) {
        self.transform_input_with(plane, block, first, tiles, scratch);
    }

    #[inline(always)]
    fn transform_input_with(&self, plane: &[f32], block: &mut [f32], first: usize, tiles: usize, s: &mut Scratch) {
        let Grid { h, w, pad, tiles_y, tiles_x: n, .. } = *self;
        let (width, rows) = (OUT * n + 2, OUT * tiles_y + 2);
        s.line.resize(width, 0.0);
        s.phases.resize(SPAN * n, 0.0);
        s.rows.resize(rows * SPAN * n, 0.0);
        s.lanes.resize(SPAN * n, 0.0);
        // Each padded row, transformed along x: six values per tile.
        for (r, out) in s.rows.chunks_exact_mut(SPAN * n).enumerate() {
            let Some(y) = r.checked_sub(pad.top).filter(|&y| y < h) else {
                out.fill(0.0);
                continue;
            };
            s.line.fill(0.0);
            let count = w.min(width.saturating_sub(pad.left));
            if count > 0 {
                s.line[pad.left..pad.left + count].copy_from_slice(&plane[y * w..y * w + count]);
            }
            for (k, phase) in s.phases.chunks_exact_mut(n).enumerate() {
                for (t, slot) in phase.iter_mut().enumerate() {
                    *slot = s.line[OUT * t + k];
                }
            }
            input_lanes(std::array::from_fn(|k| &s.phases[k * n..(k + 1) * n]), out, n);
        }
        // Then each row of tiles along y: six rows of the above give the tiles' 36 values.
        for ty in 0..tiles_y {
            let band = &s.rows[OUT * ty * SPAN * n..(OUT * ty + SPAN) * SPAN * n];
            for j in 0..SPAN {
                input_lanes(
                    std::array::from_fn(|k| &band[(k * SPAN + j) * n..(k * SPAN + j + 1) * n]),
                    &mut s.lanes,
                    n,
                );
                for (i, lane) in s.lanes.chunks_exact(n).enumerate() {
                    let at = (i * SPAN + j) * tiles + first + ty * n;
                    block[at..at + n].copy_from_slice(lane);
                }
            }
        }
    }

    /// Turns one (image, filter) plane's products into its outputs, with bias and activation.
    fn transform_output(&self, m: &[f32], which: OutputPlane, plane: &mut [f32], scratch: &mut Scratch) {
        #[cfg(target_arch = "x86_64")]
        if super::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked on the line above).
            return unsafe { self.transform_output_avx2(m, which, plane, scratch) };
        }
        self.transform_output_with(m, which, plane, scratch);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn transform_output_avx2(&self, m: &[f32], which: OutputPlane, plane: &mut [f32], scratch: &mut Scratch) {
        self.transform_output_with(m, which, plane, scratch);
    }

    #[inline(always)]
    fn transform_output_with(&self, m: &[f32], which: OutputPlane, plane: &mut [f32], s: &mut Scratch) {
        let OutputPlane { filter, filters, first, tiles, bias, activation } = which;
        let Grid { out_h, out_w, tiles_y, tiles_x: n, .. } = *self;
        s.rows.resize(SPAN * OUT * n, 0.0);
        s.lanes.resize(OUT * n, 0.0);
        for ty in 0..tiles_y {
            let start = first + ty * n;
            // Along y: for each column j of the 6x6 blocks, four rows of outputs.
            for (j, columns) in s.rows.chunks_exact_mut(OUT * n).enumerate() {
                let row = |i: usize| {
                    let at = ((i * SPAN + j) * filters + filter) * tiles + start;
                    &m[at..at + n]
                };
                output_lanes(std::array::from_fn(row), columns, n);
            }
            // Along x, one output row at a time, then bias, activation and the columns in order.
            for a in 0..OUT.min(out_h - OUT * ty) {
                let row = |j: usize| &s.rows[(j * OUT + a) * n..(j * OUT + a + 1) * n];
                output_lanes(std::array::from_fn(row), &mut s.lanes, n);
                s.lanes.iter_mut().for_each(|v| *v += bias);
                activation.apply_slice(&mut s.lanes);
                let y = OUT * ty + a;
                for (x, slot) in plane[y * out_w..(y + 1) * out_w].iter_mut().enumerate() {
                    *slot = s.lanes[(x % OUT) * n + x / OUT];
                }
            }
        }
    }
}

/// One output plane: which filter's products (`m` is `[36][filters][tiles]`, this image's tiles
/// from column `first`), and the bias and activation applied on the way out.
#[derive(Debug, Clone, Copy)]
struct OutputPlane {
    filter: usize,
    filters: usize,
    first: usize,
    tiles: usize,
    bias: f32,
    activation: Activation,
}

/// The convolution as a candle op on one contiguous NCHW tensor.
struct WinogradConv<'a> {
    filters: &'a WinogradFilters,
    pad: Pad,
    epilogue: &'a BiasActivation,
    chunk_bytes: usize,
}

impl CustomOp1 for WinogradConv<'_> {
    fn name(&self) -> &'static str {
        "winograd-conv3x3"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let WinogradFilters { transformed, in_channels: c, out_channels: oc } = self.filters;
        let (input, [n, _, h, w]) = nchw_f32("Winograd convolution", storage, layout, Some(*c))?;
        let (c, oc, pad) = (*c, *oc, self.pad);
        let out_h = (h + pad.top + pad.bottom).saturating_sub(2);
        let out_w = (w + pad.left + pad.right).saturating_sub(2);
        let mut output = vec![0f32; n * oc * out_h * out_w];
        let grid = Grid { h, w, pad, out_h, out_w, tiles_y: out_h.div_ceil(OUT), tiles_x: out_w.div_ceil(OUT) };
        let per_image = grid.tiles();
        if output.is_empty() || c == 0 {
            let shape = Shape::from((n, oc, out_h, out_w));
            return Ok((CpuStorage::F32(output), shape));
        }
        let image_bytes = std::mem::size_of::<f32>() * POSITIONS * (c + oc) * per_image;
        let chunk_images = (self.chunk_bytes / image_bytes).clamp(1, n);
        // This thread's buffers from its last call: fresh ones would be zeroed by the kernel page
        // by page on every layer. Taken, not borrowed, so a nested call (rayon may run one while
        // this one waits) starts with empty ones.
        let (mut v, mut m) = BUFFERS.take();
        let activation = self.epilogue.activation;
        for (chunk, out_chunk) in output.chunks_mut(chunk_images * oc * out_h * out_w).enumerate() {
            let first_image = chunk * chunk_images;
            let images = out_chunk.len() / (oc * out_h * out_w);
            let tiles = images * per_image;
            v.resize(c * POSITIONS * tiles, 0.0);
            m.resize(POSITIONS * oc * tiles, 0.0);
            // V: `[c_in][36][tiles]`, one channel per task.
            v.par_chunks_mut(POSITIONS * tiles).enumerate().for_each_init(Scratch::default, |s, (channel, block)| {
                for image in 0..images {
                    let plane = &input[((first_image + image) * c + channel) * h * w..][..h * w];
                    grid.transform_input(plane, block, image * per_image, tiles, s);
                }
            });
            // M[p] = U[p] × V[p]: `[36][c_out][tiles]`, one product per task.
            m.par_chunks_mut(oc * tiles).enumerate().for_each(|(p, product)| {
                let u = &transformed[p * oc * c..(p + 1) * oc * c];
                let rhs = &v[p * tiles..];
                debug_assert!(rhs.len() > (c - 1) * POSITIONS * tiles + tiles - 1);
                // SAFETY: `product` is `oc` rows of `tiles` (row stride `tiles`); `u` is `oc` rows
                // of `c` (row stride `c`); `rhs` holds `c` rows of `tiles` at row stride
                // `36 × tiles`, the last ending at `(c - 1) × 36 × tiles + tiles` ≤ its length
                // (`v` is `c × 36 × tiles` and `rhs` starts at `p × tiles`, `p < 36`). Every
                // access the product makes lies in these slices, and `product` is not aliased.
                unsafe {
                    gemm::gemm(
                        oc,
                        tiles,
                        c,
                        product.as_mut_ptr(),
                        1,
                        tiles as isize,
                        false,
                        u.as_ptr(),
                        1,
                        c as isize,
                        rhs.as_ptr(),
                        1,
                        (POSITIONS * tiles) as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            });
            // The outputs, one (image, filter) plane per task.
            let m = &m;
            out_chunk.par_chunks_mut(out_h * out_w).enumerate().for_each_init(Scratch::default, |s, (index, plane)| {
                let (image, filter) = (index / oc, index % oc);
                let bias = self.epilogue.bias[filter];
                let which = OutputPlane { filter, filters: oc, first: image * per_image, tiles, bias, activation };
                grid.transform_output(m, which, plane, s);
            });
        }
        BUFFERS.set((v, m));
        Ok((CpuStorage::F32(output), Shape::from((n, oc, out_h, out_w))))
    }
}

thread_local! {
    /// Transformed inputs and products, kept between calls on a thread for as long as it lives:
    /// at most [`CHUNK_BYTES`], or one image's worth where a single image needs more.
    static BUFFERS: std::cell::Cell<(Vec<f32>, Vec<f32>)> = const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::super::im2col::FlatFilters;
    use super::*;

    /// The 1-D identity behind the kernel: `Aᵀ [(G g) ⊙ (Bᵀ d)]` is the correlation of `d` with `g`.
    #[test]
    fn one_tile_in_one_dimension_is_a_correlation() {
        let (d, g) = ([0.3f32, -1.2, 2.5, 0.7, -0.4, 1.9], [0.5f32, -0.25, 1.5]);
        let mut t = [0f32; SPAN];
        input_lanes(std::array::from_fn(|k| &d[k..k + 1]), &mut t, 1);
        let u = filter_lanes(g);
        let product: [f32; SPAN] = std::array::from_fn(|k| t[k] * u[k] as f32);
        let mut y = [0f32; OUT];
        output_lanes(std::array::from_fn(|k| &product[k..k + 1]), &mut y, 1);
        for (i, value) in y.into_iter().enumerate() {
            let direct: f32 = (0..3).map(|k| g[k] * d[i + k]).sum();
            assert!((value - direct).abs() < 1e-5, "output {i}: {value} against {direct}");
        }
    }

    /// Equal to the im2col convolution (bias and activation after) within float rounding, for the
    /// paddings the models use (ResNet's 1, MTCNN's none, TF's SAME), sizes that are and are not
    /// whole tiles, and a batch split into chunks.
    #[test]
    fn matches_the_im2col_convolution() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for (n, c, oc, h, w, pad, activation, chunk_bytes) in [
            (2, 3, 4, 8, 8, Pad::symmetric(1), Activation::None, CHUNK_BYTES),
            (3, 16, 8, 7, 7, Pad::symmetric(1), Activation::Relu, CHUNK_BYTES),
            (2, 5, 3, 13, 9, Pad::symmetric(0), Activation::None, CHUNK_BYTES),
            // MTCNN's P-Net at its smallest pyramid level: one output from a part of a tile.
            (1, 16, 32, 3, 3, Pad::symmetric(0), Activation::None, CHUNK_BYTES),
            (1, 8, 10, 1, 1, Pad::symmetric(1), Activation::Relu6, CHUNK_BYTES),
            (2, 4, 6, 11, 6, Pad::tf_same(11, 6, 3, 1), Activation::LeakyRelu(0.1), CHUNK_BYTES),
            (5, 6, 7, 10, 12, Pad::symmetric(1), Activation::Relu, 1),
            (4, 64, 32, 14, 14, Pad::symmetric(1), Activation::None, 200_000),
        ] {
            let x = Tensor::randn(0f32, 1., (n, c, h, w), &dev)?;
            let filters = Tensor::randn(0f32, 1., (oc, c, 3, 3), &dev)?;
            let bias: Vec<f32> = (0..oc).map(|o| o as f32 * 0.1 - 0.3).collect();
            let epilogue = BiasActivation { bias: bias.clone(), activation };
            let ours = WinogradFilters::new(&filters)?.conv_in_chunks(&x, pad, &epilogue, chunk_bytes)?;
            let direct = FlatFilters::new(&filters)?.conv(&x, 1, pad)?;
            let direct = activation.apply(&direct.broadcast_add(&Tensor::new(bias, &dev)?.reshape((1, oc, 1, 1))?)?)?;
            let case = format!("n{n} c{c} oc{oc} {h}x{w} {pad:?} {activation:?}");
            assert_eq!(ours.dims(), direct.dims(), "{case}");
            let scale = direct.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0);
            let diff = (ours - direct)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-5 * scale * (c as f32).sqrt(), "{case}: differs by {diff} (largest output {scale})");
        }
        Ok(())
    }

    #[test]
    fn refuses_other_kernel_sizes() -> candle_core::Result<()> {
        let filters = Tensor::zeros((2, 2, 5, 5), candle_core::DType::F32, &Device::Cpu)?;
        let error = WinogradFilters::new(&filters).expect_err("5x5 is refused").to_string();
        assert!(error.contains("3x3 kernels, got 5x5"), "{error}");
        Ok(())
    }
}
