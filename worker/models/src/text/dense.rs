//! The encoder's linear layers, `x W + b` then a GELU or a residual add: one pass of our AVX-512
//! kernel where the CPU has AVX-512, candle's product and a pass over its rows elsewhere.
//!
//! The `gemm` crate behind candle's `matmul` runs its AVX2 kernel even where the CPU has AVX-512
//! (its AVX-512 kernels need a nightly compiler) and packs the weight again on every call: `perf`
//! of pipeline C (1,000 sentences through all-MiniLM-L6-v2) put 71% of the samples there. Here
//! the weight is packed once, at load, into panels of 48 output columns; a micro-tile is 8 rows
//! by 48 columns held in 24 registers, reading each row's inputs as they lie; the bias, the
//! residual and the GELU are applied to the sums before they are stored.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, InplaceOp1, InplaceOp2, Layout, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::math::gelu;
use crate::nn::{contiguous_f32, contiguous_f32_mut, has_avx512, with_f32};

/// Rows (tokens) in a micro-tile.
const ROWS: usize = 8;
/// Columns in one 512-bit vector.
const LANES: usize = 16;
/// Vectors of columns in a micro-tile.
const VECTORS: usize = 3;
/// Output columns in one packed panel (a full micro-tile's width).
const COLUMNS: usize = VECTORS * LANES;
/// How many inputs ahead a tile asks for its weights (the panel streams from L2; design.md says
/// what asking ahead measured).
const PREFETCH: usize = 8;
/// The most rows one task computes: its inputs and one panel stay in a core's L2 cache.
const BLOCK_ROWS: usize = 64;

/// A linear layer, `x W + b`.
pub(super) struct Dense {
    product: Product,
}

/// How a [`Dense`] layer computes its product.
enum Product {
    /// Our AVX-512 kernel's packed weight (and bias).
    Packed(Packed),
    /// For candle's `x W`: the weight transposed, `(in, out)`.
    Transposed { weight: Tensor, bias: Vec<f32> },
}

impl Dense {
    /// Loads the layer under `vb` (`weight` of `(outputs, inputs)`, `bias` of `outputs`).
    ///
    /// # Errors
    /// A missing or misshapen tensor.
    pub(super) fn load(vb: VarBuilder, inputs: usize, outputs: usize) -> candle_core::Result<Self> {
        Self::side_by_side(&[vb], inputs, outputs)
    }

    /// The layers under `vbs`, each `inputs → outputs`, side by side: one product gives all
    /// their outputs, in order.
    ///
    /// # Errors
    /// As [`Dense::load`].
    pub(super) fn side_by_side(vbs: &[VarBuilder], inputs: usize, outputs: usize) -> candle_core::Result<Self> {
        let mut weights = Vec::with_capacity(vbs.len());
        let mut bias = Vec::with_capacity(vbs.len() * outputs);
        for vb in vbs {
            weights.push(vb.get((outputs, inputs), "weight")?);
            bias.extend(vb.get(outputs, "bias")?.to_vec1::<f32>()?);
        }
        Self::new(&weights, bias, has_avx512())
    }

    /// The layer of `parts` (weights of `(outputs, inputs)` side by side) and their `bias`, for
    /// our kernel where `packed` says (the CPU must have AVX-512F), else for candle's product.
    fn new(parts: &[Tensor], bias: Vec<f32>, packed: bool) -> candle_core::Result<Self> {
        let product = if packed {
            Product::Packed(Packed::new(parts, bias)?)
        } else {
            Product::Transposed { weight: Tensor::cat(parts, 0)?.t()?.contiguous()?, bias }
        };
        Ok(Self { product })
    }

    /// `x W + b` for the rows of `x` (`(rows, inputs)`), then `ending`.
    ///
    /// # Errors
    /// When `x` is not f32 `(rows, inputs)` or the residual not of the output's shape.
    pub(super) fn forward(&self, x: &Tensor, ending: Ending) -> candle_core::Result<Tensor> {
        let gelu = matches!(ending, Ending::BiasGelu);
        match &self.product {
            Product::Packed(packed) => {
                let op = PackedProduct { packed, gelu };
                match ending {
                    Ending::BiasResidual(residual) => x.apply_op2_no_bwd(residual, &op),
                    Ending::Bias | Ending::BiasGelu => x.apply_op1_no_bwd(&op),
                }
            }
            Product::Transposed { weight, bias } => {
                // A fresh tensor: the endings write it in place.
                let y = x.matmul(weight)?;
                if y.elem_count() == 0 {
                    // candle refuses in-place ops on empty tensors; there is nothing to end.
                    return Ok(y);
                }
                let op = RowEnding { bias, gelu };
                match ending {
                    Ending::BiasResidual(residual) => y.inplace_op2(residual, &op)?,
                    Ending::Bias | Ending::BiasGelu => y.inplace_op1(&op)?,
                }
                Ok(y)
            }
        }
    }
}

/// What follows a product.
#[derive(Clone, Copy)]
pub(super) enum Ending<'t> {
    Bias,
    BiasGelu,
    /// The bias, then this tensor (of the product's shape) added.
    BiasResidual(&'t Tensor),
}

/// A weight packed for the AVX-512 kernel, with its bias.
struct Packed {
    inputs: usize,
    outputs: usize,
    /// `[panel][input][COLUMNS]`: the columns past `outputs` in the last panel are zero.
    panels: Vec<f32>,
    /// One per output, zero-padded to whole panels.
    bias: Vec<f32>,
}

impl Packed {
    /// Packs `parts` (weights of `(outputs, inputs)`, their outputs one after another) and their
    /// `bias` (one per output), reading each weight where it lies.
    ///
    /// # Errors
    /// When a part is not a matrix of the first one's inputs (at least one), or `bias` has
    /// another length than the outputs.
    fn new(parts: &[Tensor], mut bias: Vec<f32>) -> candle_core::Result<Self> {
        let inputs = match parts.first() {
            Some(first) => first.dims2()?.1,
            None => candle_core::bail!("a dense layer needs a weight"),
        };
        let mut outputs = 0;
        for part in parts {
            match part.dims2()? {
                (rows, columns) if columns == inputs && inputs > 0 => outputs += rows,
                dims => candle_core::bail!("a dense layer's weights of {dims:?} beside ones of {inputs} inputs"),
            }
        }
        if bias.len() != outputs {
            candle_core::bail!("{} biases for {outputs} outputs", bias.len());
        }
        let panel_count = outputs.div_ceil(COLUMNS);
        let mut panels = vec![0f32; panel_count * inputs * COLUMNS];
        let mut first_output = 0;
        for part in parts {
            with_f32("dense weight", part, |rows| {
                for (row, weights) in rows.chunks_exact(inputs).enumerate() {
                    let output = first_output + row;
                    let panel = &mut panels[(output / COLUMNS) * inputs * COLUMNS..];
                    for (input, &w) in weights.iter().enumerate() {
                        panel[input * COLUMNS + output % COLUMNS] = w;
                    }
                }
            })?;
            first_output += part.dim(0)?;
        }
        bias.resize(panel_count * COLUMNS, 0.0);
        Ok(Self { inputs, outputs, panels, bias })
    }
}

/// The product of a [`Packed`] weight as a candle op: `x W + b`, then the GELU where `gelu` says,
/// or a residual added (as a [`CustomOp2`]).
struct PackedProduct<'a> {
    packed: &'a Packed,
    gelu: bool,
}

impl PackedProduct<'_> {
    /// The f32 rows of `x`, as the op reads them.
    fn rows<'s>(&self, storage: &'s CpuStorage, layout: &Layout) -> candle_core::Result<(&'s [f32], usize)> {
        match *layout.dims() {
            [rows, inputs] if inputs == self.packed.inputs => Ok((contiguous_f32("dense", storage, layout)?, rows)),
            ref dims => candle_core::bail!("a dense layer of {} inputs got {dims:?}", self.packed.inputs),
        }
    }

    /// The `(rows, outputs)` output, computed in blocks of rows on the compute pool.
    fn run(&self, x: &[f32], rows: usize, residual: Option<&[f32]>) -> (CpuStorage, Shape) {
        let Packed { inputs, outputs, .. } = *self.packed;
        let shape = Shape::from((rows, outputs));
        if rows * outputs == 0 {
            return (CpuStorage::F32(Vec::new()), shape);
        }
        // Left uninitialised: every element is written by exactly one tile.
        let mut out = Vec::with_capacity(rows * outputs);
        // Enough tasks for every thread when there are few rows.
        let block = rows.div_ceil(3 * rayon::current_num_threads()).next_multiple_of(ROWS).clamp(ROWS, BLOCK_ROWS);
        let spare = &mut out.spare_capacity_mut()[..rows * outputs];
        spare.par_chunks_mut(block * outputs).enumerate().for_each(|(index, out_block)| {
            let (first, count) = (index * block, out_block.len() / outputs);
            let x_block = &x[first * inputs..(first + count) * inputs];
            let residual_block = residual.map(|r| &r[first * outputs..(first + count) * outputs]);
            self.block(x_block, count, residual_block, out_block);
        });
        // SAFETY: the blocks cover all `rows × outputs` elements, and `block` writes every
        // element of its rows (each panel's columns of each tile's rows).
        unsafe { out.set_len(rows * outputs) };
        (CpuStorage::F32(out), shape)
    }

    /// Writes every element of `out`, the `rows` output rows of `x`'s `rows` input rows.
    fn block(&self, x: &[f32], rows: usize, residual: Option<&[f32]>, out: &mut [MaybeUninit<f32>]) {
        let Packed { inputs, outputs, ref panels, ref bias } = *self.packed;
        for (panel, weights) in panels.chunks_exact(inputs * COLUMNS).enumerate() {
            let column = panel * COLUMNS;
            for first in (0..rows).step_by(ROWS) {
                let at = first * outputs + column;
                let tile = Tile {
                    x: &x[first * inputs..],
                    inputs,
                    rows: ROWS.min(rows - first),
                    weights,
                    bias: &bias[column..][..COLUMNS],
                    residual: residual.map(|r| &r[at..]),
                    outputs,
                    width: COLUMNS.min(outputs - column),
                    gelu: self.gelu,
                };
                // SAFETY: `Packed` exists only where the CPU has AVX-512F (`Dense::side_by_side`);
                // `tile` checks its own extents against the slices it reads and writes.
                unsafe { tile.run(&mut out[at..]) };
            }
        }
    }
}

impl CustomOp1 for PackedProduct<'_> {
    fn name(&self) -> &'static str {
        "dense"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, rows) = self.rows(storage, layout)?;
        Ok(self.run(x, rows, None))
    }
}

impl CustomOp2 for PackedProduct<'_> {
    fn name(&self) -> &'static str {
        "dense-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, rows) = self.rows(s1, l1)?;
        if l2.dims() != [rows, self.packed.outputs] {
            candle_core::bail!("a dense layer's residual of {:?} for {rows} rows of {}", l2.dims(), self.packed.outputs)
        }
        let residual = contiguous_f32("dense residual", s2, l2)?;
        Ok(self.run(x, rows, Some(residual)))
    }
}

/// One micro-tile: `rows` rows by `width` columns of the output.
struct Tile<'a> {
    /// The tile's input rows from its first on (`inputs` apart).
    x: &'a [f32],
    inputs: usize,
    rows: usize,
    /// The panel's `[input][COLUMNS]` weights.
    weights: &'a [f32],
    /// The panel's `COLUMNS` biases.
    bias: &'a [f32],
    /// The residual from the tile's first element on (rows `outputs` apart).
    residual: Option<&'a [f32]>,
    outputs: usize,
    width: usize,
    gelu: bool,
}

impl Tile<'_> {
    /// Writes the tile into `out` (its first row's first column first, rows `outputs` apart); it
    /// reads nothing there, so `out` may be uninitialised.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[cfg(target_arch = "x86_64")]
    unsafe fn run(&self, out: &mut [MaybeUninit<f32>]) {
        // Every load and store below stays inside these bounds (masked lanes touch no memory).
        assert!((1..=ROWS).contains(&self.rows) && (1..=COLUMNS).contains(&self.width));
        assert!(self.weights.len() == self.inputs * COLUMNS && self.bias.len() == COLUMNS);
        assert!(self.x.len() >= self.rows * self.inputs);
        let extent = (self.rows - 1) * self.outputs + self.width;
        assert!(out.len() >= extent && self.residual.is_none_or(|r| r.len() >= extent));
        // SAFETY: AVX-512F per this function's contract; extents asserted above.
        unsafe {
            match self.width.div_ceil(LANES) {
                1 => self.run_vectors::<1>(out),
                2 => self.run_vectors::<2>(out),
                _ => self.run_vectors::<3>(out),
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn run(&self, _: &mut [MaybeUninit<f32>]) {
        unreachable!("Packed is built only where the CPU has AVX-512")
    }

    /// The tile with `V` vectors of columns, the last one masked to `width`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn run_vectors<const V: usize>(&self, out: &mut [MaybeUninit<f32>]) {
        use std::arch::x86_64::*;
        let tail = self.width - (V - 1) * LANES;
        let mask =
            |v: usize| -> __mmask16 { if v + 1 < V { 0xFFFF } else { (1u32 << tail).wrapping_sub(1) as __mmask16 } };
        // Rows past `rows` read the last row again; their sums are not stored.
        let x = self.x.as_ptr();
        let row_at: [*const f32; ROWS] = std::array::from_fn(|r| x.wrapping_add(r.min(self.rows - 1) * self.inputs));
        let mut acc = [[_mm512_setzero_ps(); V]; ROWS];
        for (input, weights) in self.weights.chunks_exact(COLUMNS).enumerate() {
            for v in 0..V {
                // A hint only: an address past the panel is not read.
                _mm_prefetch::<_MM_HINT_T0>(weights.as_ptr().wrapping_add(PREFETCH * COLUMNS + v * LANES).cast());
            }
            let mut w = [_mm512_setzero_ps(); V];
            for (v, lane) in w.iter_mut().enumerate() {
                // SAFETY: `weights` holds COLUMNS ≥ (v + 1) × LANES values.
                *lane = unsafe { _mm512_loadu_ps(weights.as_ptr().add(v * LANES)) };
            }
            for (sums, row) in acc.iter_mut().zip(&row_at) {
                // SAFETY: each row pointer is one of the first `rows` rows of `x`, which holds
                // `inputs` values each (asserted by `run`).
                let value = _mm512_set1_ps(unsafe { *row.add(input) });
                for (sum, &lane) in sums.iter_mut().zip(&w) {
                    *sum = _mm512_fmadd_ps(value, lane, *sum);
                }
            }
        }
        let out = out.as_mut_ptr().cast::<f32>();
        // Constant trip counts throughout, so that the sums stay in registers.
        for (r, sums) in acc.iter().enumerate() {
            if r >= self.rows {
                break;
            }
            for (v, &sum) in sums.iter().enumerate() {
                // SAFETY: `bias` holds COLUMNS values.
                let mut y = _mm512_add_ps(sum, unsafe { _mm512_loadu_ps(self.bias.as_ptr().add(v * LANES)) });
                let at = r * self.outputs + v * LANES;
                if let Some(residual) = self.residual {
                    // SAFETY: lanes past `width` are masked off; the others lie inside the
                    // residual (asserted by `run`).
                    y = _mm512_add_ps(y, unsafe { _mm512_maskz_loadu_ps(mask(v), residual.as_ptr().wrapping_add(at)) });
                }
                if self.gelu {
                    let mut lane = [0f32; LANES];
                    // SAFETY: `lane` holds LANES values.
                    unsafe { _mm512_storeu_ps(lane.as_mut_ptr(), y) };
                    for value in &mut lane {
                        *value = gelu(*value);
                    }
                    // SAFETY: as above.
                    y = unsafe { _mm512_loadu_ps(lane.as_ptr()) };
                }
                // SAFETY: as for the residual (`out`'s extent asserted by `run`).
                unsafe { _mm512_mask_storeu_ps(out.wrapping_add(at), mask(v), y) };
            }
        }
    }
}

/// `act(y + b [+ residual])` on each row `y`, in place: the residual where the op is given one
/// (as an [`InplaceOp2`]), `act` the exact GELU where `gelu` says, else nothing.
struct RowEnding<'a> {
    bias: &'a [f32],
    gelu: bool,
}

/// Rows of about this many values per task.
const ROW_CHUNK: usize = 1 << 14;

impl RowEnding<'_> {
    fn rows<'s>(&self, storage: &'s mut CpuStorage, layout: &Layout) -> candle_core::Result<&'s mut [f32]> {
        if layout.dims().last() != Some(&self.bias.len()) {
            candle_core::bail!("row-ending of {} biases on {:?}", self.bias.len(), layout.dims())
        }
        contiguous_f32_mut("row-ending", storage, layout)
    }

    fn chunk(&self) -> usize {
        (ROW_CHUNK / self.bias.len().max(1)).max(1) * self.bias.len().max(1)
    }

    fn apply(&self, rows: &mut [f32], residual: Option<&[f32]>) {
        #[cfg(target_arch = "x86_64")]
        if crate::nn::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked on the line above).
            return unsafe { self.apply_avx2(rows, residual) };
        }
        self.apply_with(rows, residual);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn apply_avx2(&self, rows: &mut [f32], residual: Option<&[f32]>) {
        self.apply_with(rows, residual);
    }

    #[inline(always)]
    fn apply_with(&self, rows: &mut [f32], residual: Option<&[f32]>) {
        for (index, row) in rows.chunks_exact_mut(self.bias.len()).enumerate() {
            // `for` loops, not `for_each`: a closure's fold is compiled apart from the AVX2
            // caller (without its target features), as `perf annotate` showed.
            // One loop per case, so that no loop computes a GELU it then discards.
            match (residual.map(|residual| &residual[index * self.bias.len()..][..self.bias.len()]), self.gelu) {
                (Some(residual), false) => {
                    for ((v, b), r) in row.iter_mut().zip(self.bias).zip(residual) {
                        *v += b + r;
                    }
                }
                (Some(residual), true) => {
                    for ((v, b), r) in row.iter_mut().zip(self.bias).zip(residual) {
                        *v = gelu(*v + b + r);
                    }
                }
                (None, false) => {
                    for (v, b) in row.iter_mut().zip(self.bias) {
                        *v += b;
                    }
                }
                (None, true) => {
                    for (v, b) in row.iter_mut().zip(self.bias) {
                        *v = gelu(*v + b);
                    }
                }
            }
        }
    }
}

impl InplaceOp1 for RowEnding<'_> {
    fn name(&self) -> &'static str {
        "row-ending"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let chunk = self.chunk();
        self.rows(storage, layout)?.par_chunks_mut(chunk).for_each(|rows| self.apply(rows, None));
        Ok(())
    }
}

impl InplaceOp2 for RowEnding<'_> {
    fn name(&self) -> &'static str {
        "row-ending-residual"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let residual = contiguous_f32("row-ending residual", s2, l2)?;
        if l1.dims() != l2.dims() {
            candle_core::bail!("row-ending of {:?} with a residual of {:?}", l1.dims(), l2.dims())
        }
        let chunk = self.chunk();
        self.rows(s1, l1)?
            .par_chunks_mut(chunk)
            .zip(residual.par_chunks(chunk))
            .for_each(|(rows, residual)| self.apply(rows, Some(residual)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use std::collections::HashMap;

    use super::*;

    /// A layer of random weights (for our kernel where `packed` says), the reference product
    /// `x W + b` (candle's), and `x`.
    fn layer(rows: usize, inputs: usize, outputs: usize, packed: bool) -> candle_core::Result<(Dense, Tensor, Tensor)> {
        let dev = Device::Cpu;
        let weight = Tensor::randn(0f32, 1., (outputs, inputs), &dev)?;
        let bias = Tensor::randn(0f32, 1., outputs, &dev)?;
        let x = Tensor::randn(0f32, 1., (rows, inputs), &dev)?;
        let reference = x.matmul(&weight.t()?)?.broadcast_add(&bias)?;
        Ok((Dense::new(&[weight], bias.to_vec1()?, packed)?, reference, x))
    }

    /// Both products where the CPU has AVX-512, else candle's alone.
    fn products() -> Vec<bool> {
        if has_avx512() {
            vec![true, false]
        } else {
            eprintln!("no AVX-512 on this CPU: our kernel is not used here (candle's product is)");
            vec![false]
        }
    }

    fn largest_difference(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
        assert_eq!(a.dims(), b.dims());
        if a.elem_count() == 0 {
            return Ok(0.0);
        }
        (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
    }

    /// Each ending on sizes that end in every kind of partial tile: rows short of a tile and of
    /// a block, columns short of a vector and of a panel, one input, long inputs, and no rows or
    /// no outputs at all.
    #[test]
    fn a_dense_layer_gives_candles_product_with_its_ending() -> candle_core::Result<()> {
        let sizes = [
            (1, 1, 1),
            (7, 3, 5),
            (8, 40, 48),
            (9, 17, 100),
            (70, 384, 1152),
            (131, 1536, 384),
            (200, 64, 33),
            (0, 8, 16),
            (5, 8, 0),
        ];
        for ((rows, inputs, outputs), packed) in
            sizes.into_iter().flat_map(|s| products().into_iter().map(move |p| (s, p)))
        {
            let (dense, reference, x) = layer(rows, inputs, outputs, packed)?;
            let scale = (inputs as f32).sqrt() * 1e-5;
            let residual = Tensor::randn(0f32, 1., (rows, outputs), &Device::Cpu)?;
            for (ending, want) in [
                (Ending::Bias, reference.clone()),
                (Ending::BiasGelu, reference.gelu_erf()?),
                (Ending::BiasResidual(&residual), (&reference + &residual)?),
            ] {
                let diff = largest_difference(&dense.forward(&x, ending)?, &want)?;
                assert!(diff <= scale, "{rows}x{inputs} -> {outputs} (packed: {packed}): differs by {diff}");
            }
        }
        Ok(())
    }

    /// Layers side by side give their outputs in order, as one layer each would.
    #[test]
    fn layers_side_by_side_give_each_layers_outputs_in_order() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let (rows, inputs, outputs) = (19, 24, 40);
        let mut tensors = HashMap::new();
        for name in ["a", "b", "c"] {
            tensors.insert(format!("{name}.weight"), Tensor::randn(0f32, 1., (outputs, inputs), &dev)?);
            tensors.insert(format!("{name}.bias"), Tensor::randn(0f32, 1., outputs, &dev)?);
        }
        let vb = VarBuilder::from_tensors(tensors, candle_core::DType::F32, &dev);
        let x = Tensor::randn(0f32, 1., (rows, inputs), &dev)?;
        let joined =
            Dense::side_by_side(&[vb.pp("a"), vb.pp("b"), vb.pp("c")], inputs, outputs)?.forward(&x, Ending::Bias)?;
        for (index, name) in ["a", "b", "c"].into_iter().enumerate() {
            let alone = Dense::load(vb.pp(name), inputs, outputs)?.forward(&x, Ending::Bias)?;
            assert_eq!(largest_difference(&joined.narrow(1, index * outputs, outputs)?, &alone)?, 0.0);
        }
        Ok(())
    }

    /// An input of another width, or a residual of another shape, is refused.
    #[test]
    fn misshapen_inputs_are_refused() -> candle_core::Result<()> {
        for packed in products() {
            let (dense, _, x) = layer(4, 6, 10, packed)?;
            let wide = Tensor::zeros((4, 7), candle_core::DType::F32, &Device::Cpu)?;
            assert!(dense.forward(&wide, Ending::Bias).is_err());
            let residual = Tensor::zeros((4, 9), candle_core::DType::F32, &Device::Cpu)?;
            assert!(dense.forward(&x, Ending::BiasResidual(&residual)).is_err());
        }
        Ok(())
    }
}
