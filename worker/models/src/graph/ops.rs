//! The TensorFlow ops a graph model may use, each decoded once from its node (attributes and
//! constant operands resolved, filters laid out for candle) and run on candle tensors.

use candle_core::{DType, Device, Tensor};

use super::fuse;
use super::spec::NodeSpec;
use crate::nn::bias::BiasActivation;
use crate::nn::im2col::FlatFilters;
use crate::nn::pointwise::PointwiseConv;
use crate::nn::winograd::WinogradFilters;
use crate::nn::{Activation, Pad};

/// The op types [`Kernel::decode`] knows, for error messages.
pub const SUPPORTED: &str = "Identity, Transpose, Reshape, Pad, PadV2, Conv2D, Add, AddV2, BiasAdd, Sub, Mul, \
     LeakyRelu, Relu, Sigmoid, MaxPool, ConcatV2, ResizeBilinear, SplitV, SparseToDense";

/// A node's operation, ready to run.
#[derive(Debug)]
pub enum Kernel {
    Identity,
    Transpose(Vec<usize>),
    Reshape(Vec<i64>),
    Pad { pads: Vec<(usize, usize)>, value: f32 },
    Conv2d(Box<Conv>),
    Binary(Binary),
    LeakyRelu(f64),
    Relu,
    Sigmoid,
    MaxPool { size: usize, stride: usize, nhwc: bool },
    Concat { count: usize, axis: i64 },
    ResizeBilinear { height: usize, width: usize },
    Split { sizes: Vec<i64>, axis: i64 },
    SparseToDense,
}

/// Largest padding, and largest resized side, a graph may ask for: far above any real model's,
/// low enough that a malformed file fails its load instead of exhausting memory.
const MAX_SIDE: usize = 1 << 16;

/// Largest padding on one side of one axis (real models pad by a few pixels).
const MAX_PAD: usize = 1024;

/// A convolution with what [`super::fuse`] took into it: padding, bias and activation.
#[derive(Debug)]
pub struct Conv {
    /// OIHW, on the model's device.
    filter: Tensor,
    /// The CPU's im2col form of `filter`.
    dense_cpu: Option<FlatFilters>,
    /// Our 1x1 kernel (bias and activation included), for an unpadded 1x1 stride-1 layer on a
    /// CPU with AVX-512.
    pointwise_cpu: Option<PointwiseConv>,
    /// Winograd's form of a 3x3 stride-1 layer's filters, on the CPU, with its bias and
    /// activation (zero and none where the layer has neither).
    winograd_cpu: Option<(WinogradFilters, BiasActivation)>,
    stride: usize,
    /// TF's `SAME` padding (computed from the input size); otherwise `pad`.
    same: bool,
    pad: Pad,
    nhwc: bool,
    /// `(1, c_out, 1, 1)` bias and activation, for devices other than the CPU.
    bias: Option<Tensor>,
    activation: Activation,
    /// Bias and activation in one pass, in place, on the CPU.
    bias_cpu: Option<BiasActivation>,
}

impl Conv {
    fn run(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        channels_first(x, self.nhwc, |x| {
            let (_, _, h, w) = x.dims4()?;
            let kernel = self.filter.dim(2)?;
            let pad = if self.same { Pad::tf_same(h, w, kernel, self.stride) } else { self.pad };
            if let Some(op) = self.pointwise_cpu.as_ref().filter(|_| pad.is_zero()) {
                return x.contiguous()?.apply_op1_no_bwd(op);
            }
            if let Some((filters, epilogue)) = &self.winograd_cpu {
                return filters.conv(x, pad, epilogue);
            }
            let y = match &self.dense_cpu {
                Some(dense) => dense.conv(x, self.stride, pad)?,
                None => pad.apply(x)?.conv2d(&self.filter, 0, self.stride, 1, 1)?,
            };
            match (&self.bias_cpu, &self.bias) {
                (Some(op), _) => {
                    // `y` is this convolution's own fresh output.
                    let y = y.contiguous()?;
                    y.inplace_op1(op)?;
                    Ok(y)
                }
                (None, Some(bias)) => self.activation.apply(&y.broadcast_add(bias)?),
                (None, None) => self.activation.apply(&y),
            }
        })
    }
}

/// An element-wise op of two tensors, broadcast as NumPy does.
#[derive(Debug, Clone, Copy)]
pub enum Binary {
    Add,
    Sub,
    Mul,
}

/// The operands of a node while its kernel is decoded: `Some` for a constant.
pub type Operands<'a> = [Option<&'a Tensor>];

impl Kernel {
    /// The kernel of `node`, whose inputs are `operands`.
    ///
    /// # Errors
    /// What is unsupported or malformed: an unknown op, an attribute value not handled (naming
    /// it), an operand that must be constant and is not, a missing operand.
    pub fn decode(node: &NodeSpec, operands: &Operands<'_>, device: &Device) -> Result<Self, String> {
        let arity = |n: usize| {
            if operands.len() == n {
                Ok(())
            } else {
                Err(format!("takes {n} inputs, the graph gives {}", operands.len()))
            }
        };
        Ok(match node.op.as_str() {
            "Identity" => {
                arity(1)?;
                Kernel::Identity
            }
            "Transpose" => {
                arity(2)?;
                let perm = constant_ints(operands, 1, "perm")?;
                Kernel::Transpose(perm.iter().map(|&p| to_usize(p, "perm")).collect::<Result<_, _>>()?)
            }
            "Reshape" => {
                arity(2)?;
                Kernel::Reshape(constant_ints(operands, 1, "shape")?)
            }
            "Pad" | "PadV2" => {
                arity(if node.op == "Pad" { 2 } else { 3 })?;
                let flat = constant_ints(operands, 1, "paddings")?;
                let pads: Vec<(usize, usize)> = flat
                    .chunks_exact(2)
                    .map(|p| Ok((to_usize(p[0], "paddings")?, to_usize(p[1], "paddings")?)))
                    .collect::<Result<_, String>>()?;
                if pads.iter().any(|&(a, b)| a.max(b) > MAX_PAD) {
                    return Err(format!("paddings {flat:?} exceed {MAX_PAD} on a side"));
                }
                let value = if node.op == "PadV2" { constant_float(operands, 2, "constant_values")? } else { 0.0 };
                Kernel::Pad { pads, value }
            }
            "Conv2D" => {
                if !(2..=3).contains(&operands.len()) {
                    return Err(format!("takes 2 or 3 inputs, the graph gives {}", operands.len()));
                }
                decode_conv(node, operands, device)?
            }
            "Add" | "AddV2" | "BiasAdd" => {
                arity(2)?;
                if node.op == "BiasAdd" && node.text("data_format").is_some_and(|f| f != "NHWC") {
                    return Err("BiasAdd with data_format other than NHWC is not supported".into());
                }
                Kernel::Binary(Binary::Add)
            }
            "Sub" => {
                arity(2)?;
                Kernel::Binary(Binary::Sub)
            }
            "Mul" => {
                arity(2)?;
                Kernel::Binary(Binary::Mul)
            }
            "LeakyRelu" => {
                arity(1)?;
                Kernel::LeakyRelu(node.float("alpha").unwrap_or(0.2))
            }
            "Relu" => {
                arity(1)?;
                Kernel::Relu
            }
            "Sigmoid" => {
                arity(1)?;
                Kernel::Sigmoid
            }
            "MaxPool" => {
                arity(1)?;
                if node.text("padding") != Some("VALID") {
                    return Err(format!("MaxPool padding {:?} is not supported (VALID is)", node.text("padding")));
                }
                let nhwc = nhwc(node)?;
                let size = square(node, "ksize", nhwc)?;
                Kernel::MaxPool { size, stride: square(node, "strides", nhwc)?, nhwc }
            }
            "ConcatV2" => {
                let count = operands.len().checked_sub(1).filter(|n| *n > 0).ok_or("takes an axis and inputs")?;
                let axis = constant_ints(operands, count, "axis")?;
                Kernel::Concat { count, axis: single(&axis, "axis")? }
            }
            "ResizeBilinear" => {
                arity(2)?;
                if node.flag("align_corners") == Some(true) || node.flag("half_pixel_centers") != Some(true) {
                    return Err(
                        "ResizeBilinear is supported with half_pixel_centers=true and align_corners=false".into()
                    );
                }
                match constant_ints(operands, 1, "size")?.as_slice() {
                    &[h, w] => Kernel::ResizeBilinear { height: to_usize(h, "size")?, width: to_usize(w, "size")? },
                    other => return Err(format!("size {other:?} is not [height, width]")),
                }
            }
            "SplitV" => {
                arity(3)?;
                let axis = constant_ints(operands, 2, "split_dim")?;
                Kernel::Split { sizes: constant_ints(operands, 1, "size_splits")?, axis: single(&axis, "split_dim")? }
            }
            "SparseToDense" => {
                arity(4)?;
                if operands.iter().any(Option::is_none) {
                    return Err("SparseToDense is supported on constant inputs only".into());
                }
                Kernel::SparseToDense
            }
            other => return Err(format!("op `{other}` is not supported (supported: {SUPPORTED})")),
        })
    }

    /// Applies the kernel to `args` (the node's inputs, constants included).
    ///
    /// # Errors
    /// A shape or dtype mismatch, as candle reports it.
    pub fn run(&self, args: &[Tensor]) -> candle_core::Result<Vec<Tensor>> {
        let x = &args[0];
        let one = match self {
            Kernel::Identity => x.clone(),
            Kernel::Transpose(perm) => x.permute(perm.clone())?,
            Kernel::Reshape(shape) => x.reshape(resolve_shape(shape, x.elem_count())?)?,
            Kernel::Pad { pads, value } => pad(x, pads, *value)?,
            Kernel::Conv2d(conv) => conv.run(x)?,
            Kernel::Binary(op) => {
                let y = &args[1];
                match op {
                    Binary::Add => x.broadcast_add(y)?,
                    Binary::Sub => x.broadcast_sub(y)?,
                    Binary::Mul => x.broadcast_mul(y)?,
                }
            }
            Kernel::LeakyRelu(alpha) => {
                let scaled = x.affine(*alpha, 0.0)?;
                if *alpha <= 1.0 { x.maximum(&scaled)? } else { x.minimum(&scaled)? }
            }
            Kernel::Relu => x.relu()?,
            Kernel::Sigmoid => candle_nn::ops::sigmoid(x)?,
            Kernel::MaxPool { size, stride, nhwc } => {
                channels_first(x, *nhwc, |x| x.contiguous()?.max_pool2d_with_stride(*size, *stride))?
            }
            Kernel::Concat { count, axis } => {
                let axis = axis_index(*axis, x.rank())?;
                Tensor::cat(&args[..*count], axis)?
            }
            Kernel::ResizeBilinear { height, width } => {
                channels_first(x, true, |x| x.contiguous()?.upsample_bilinear2d(*height, *width, false))?
            }
            Kernel::Split { sizes, axis } => return split(x, sizes, *axis),
            Kernel::SparseToDense => sparse_to_dense(args)?,
        };
        Ok(vec![one])
    }
}

fn decode_conv(node: &NodeSpec, operands: &Operands<'_>, device: &Device) -> Result<Kernel, String> {
    let same = match node.text("padding") {
        Some("VALID") => false,
        Some("SAME") => true,
        other => return Err(format!("Conv2D padding {other:?} is not supported (VALID and SAME are)")),
    };
    if node.ints("dilations").is_some_and(|d| d.iter().any(|&d| d != 1)) {
        return Err("Conv2D with dilations other than 1 is not supported".into());
    }
    let nhwc = nhwc(node)?;
    let stride = square(node, "strides", nhwc)?;
    let filter = operands[1].ok_or("the filter (input 1) must be a constant")?;
    let &[kh, kw, _, out] = filter.dims() else { return Err(format!("filter shape {:?} is not HWIO", filter.dims())) };
    if kh != kw {
        return Err(format!("a {kh}x{kw} filter is not square"));
    }
    let failed = |e: candle_core::Error| e.to_string();
    // TensorFlow's HWIO to candle's OIHW.
    let filter = filter.permute((3, 2, 0, 1)).and_then(|f| f.contiguous()).and_then(|f| f.to_device(device));
    let filter = filter.map_err(failed)?;
    let dense_cpu = if device.is_cpu() { Some(FlatFilters::new(&filter).map_err(failed)?) } else { None };
    let pad = match node.ints(fuse::PADS).as_deref() {
        Some(&[top, bottom, left, right]) => Pad {
            top: to_usize(top, fuse::PADS)?,
            bottom: to_usize(bottom, fuse::PADS)?,
            left: to_usize(left, fuse::PADS)?,
            right: to_usize(right, fuse::PADS)?,
        },
        Some(other) => return Err(format!("`{}` {other:?} is not [top, bottom, left, right]", fuse::PADS)),
        None => Pad::symmetric(0),
    };
    let activation = match node.float(fuse::ACTIVATION_ALPHA) {
        Some(0.0) => Activation::Relu,
        Some(alpha) => Activation::LeakyRelu(alpha as f32),
        None => Activation::None,
    };
    let bias = match operands.get(2) {
        None => None,
        Some(bias) => {
            let bias = bias.ok_or("the bias (input 2) must be a constant")?;
            if bias.dims() != [out] {
                return Err(format!("bias shape {:?} is not [{out}]", bias.dims()));
            }
            Some(bias.to_dtype(DType::F32).map_err(failed)?)
        }
    };
    let bias_cpu = match (&bias, device.is_cpu()) {
        (Some(bias), true) => Some(BiasActivation { bias: bias.to_vec1().map_err(failed)?, activation }),
        (None, true) if activation != Activation::None => Some(BiasActivation { bias: vec![0.0; out], activation }),
        _ => None,
    };
    // The kernels below apply bias and activation themselves, zero and none where there are none.
    let ending = || bias_cpu.clone().unwrap_or_else(|| BiasActivation { bias: vec![0.0; out], activation });
    let (pointwise_cpu, winograd_cpu) = match (device.is_cpu(), kh, stride) {
        (true, 1, 1) => (PointwiseConv::new(&filter, &ending().bias, activation).map_err(failed)?, None),
        (true, 3, 1) => (None, Some((WinogradFilters::new(&filter).map_err(failed)?, ending()))),
        _ => (None, None),
    };
    let bias = bias.map(|b| b.reshape((1, out, 1, 1)).and_then(|b| b.to_device(device))).transpose().map_err(failed)?;
    Ok(Kernel::Conv2d(Box::new(Conv {
        filter,
        dense_cpu,
        pointwise_cpu,
        winograd_cpu,
        stride,
        same,
        pad,
        nhwc,
        bias,
        activation,
        bias_cpu,
    })))
}

/// Whether a node's `data_format` is NHWC (TensorFlow's default) rather than NCHW.
fn nhwc(node: &NodeSpec) -> Result<bool, String> {
    match node.text("data_format") {
        None | Some("NHWC") => Ok(true),
        Some("NCHW") => Ok(false),
        Some(other) => Err(format!("data_format `{other}` is not supported")),
    }
}

/// The one spatial value of a 4-entry attribute (`strides`, `ksize`) that must be the same for
/// height and width, and 1 for batch and channels.
fn square(node: &NodeSpec, key: &str, nhwc: bool) -> Result<usize, String> {
    let values = node.ints(key).ok_or(format!("no `{key}`"))?;
    let (h, w, others) = match values.as_slice() {
        &[n, h, w, c] if nhwc => (h, w, [n, c]),
        &[n, c, h, w] => (h, w, [n, c]),
        other => return Err(format!("`{key}` {other:?} has not 4 entries")),
    };
    if h != w || others != [1, 1] {
        return Err(format!("`{key}` {values:?} is not the same for height and width (and 1 elsewhere)"));
    }
    to_usize(h, key)
}

/// The values of an integer (or any) tensor as i64s, flattened.
pub fn tensor_ints(tensor: &Tensor) -> candle_core::Result<Vec<i64>> {
    tensor.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()
}

fn constant_ints(operands: &Operands<'_>, index: usize, what: &str) -> Result<Vec<i64>, String> {
    let tensor = operands.get(index).copied().flatten().ok_or(format!("input {index} ({what}) must be a constant"))?;
    tensor_ints(tensor).map_err(|e| format!("input {index} ({what}): {e}"))
}

fn constant_float(operands: &Operands<'_>, index: usize, what: &str) -> Result<f32, String> {
    let tensor = operands.get(index).copied().flatten().ok_or(format!("input {index} ({what}) must be a constant"))?;
    let values = tensor.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>());
    match values.map_err(|e| format!("input {index} ({what}): {e}"))?.as_slice() {
        &[value] => Ok(value),
        other => Err(format!("input {index} ({what}) holds {} values, not one", other.len())),
    }
}

fn single(values: &[i64], what: &str) -> Result<i64, String> {
    match values {
        &[value] => Ok(value),
        other => Err(format!("{what} {other:?} is not one value")),
    }
}

/// `value` as a size of at most [`MAX_SIDE`].
fn to_usize(value: i64, what: &str) -> Result<usize, String> {
    usize::try_from(value)
        .ok()
        .filter(|v| *v <= MAX_SIDE)
        .ok_or(format!("{what} holds {value}, not a size up to {MAX_SIDE}"))
}

/// `axis` (negative counts from the end) as an index into `rank` dimensions.
fn axis_index(axis: i64, rank: usize) -> candle_core::Result<usize> {
    let index = if axis < 0 { axis + rank as i64 } else { axis };
    usize::try_from(index)
        .ok()
        .filter(|i| *i < rank)
        .ok_or_else(|| candle_core::Error::Msg(format!("axis {axis} is outside a tensor of rank {rank}")).bt())
}

/// `shape` with its one `-1` (if any) worked out for `elements`.
fn resolve_shape(shape: &[i64], elements: usize) -> candle_core::Result<Vec<usize>> {
    let known: i64 = shape.iter().filter(|d| **d >= 0).product();
    let fail = || candle_core::Error::Msg(format!("cannot reshape {elements} elements to {shape:?}")).bt();
    let inferred = match shape.iter().filter(|d| **d == -1).count() {
        0 => None,
        1 if known > 0 && elements as i64 % known == 0 => Some(elements as i64 / known),
        _ => return Err(fail()),
    };
    let dims: Vec<usize> = shape
        .iter()
        .map(|&d| usize::try_from(if d == -1 { inferred.unwrap_or(d) } else { d }))
        .collect::<Result<_, _>>()
        .map_err(|_| fail())?;
    if dims.iter().product::<usize>() != elements {
        return Err(fail());
    }
    Ok(dims)
}

/// Runs `f` on `x` laid out NCHW (a view, when `x` is an NHWC view of an NCHW tensor) and gives
/// its result back in `x`'s layout.
fn channels_first(
    x: &Tensor,
    nhwc: bool,
    f: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Tensor> {
    if nhwc { f(&x.permute((0, 3, 1, 2))?)?.permute((0, 2, 3, 1)) } else { f(x) }
}

/// `x` with `pads[axis]` (before, after) elements of `value` on each axis.
fn pad(x: &Tensor, pads: &[(usize, usize)], value: f32) -> candle_core::Result<Tensor> {
    if pads.len() != x.rank() {
        candle_core::bail!("{} paddings for a tensor of rank {}", pads.len(), x.rank())
    }
    let mut out = x.clone();
    for (axis, &(before, after)) in pads.iter().enumerate() {
        if before == 0 && after == 0 {
            continue;
        }
        out = if value == 0.0 {
            out.pad_with_zeros(axis, before, after)?
        } else {
            let fill = |n: usize| {
                let mut dims = out.dims().to_vec();
                dims[axis] = n;
                Tensor::full(value, dims, out.device())?.to_dtype(out.dtype())
            };
            Tensor::cat(&[fill(before)?, out.clone(), fill(after)?], axis)?
        };
    }
    Ok(out)
}

/// `x` cut along `axis` into pieces of `sizes` (one may be `-1`: the rest).
fn split(x: &Tensor, sizes: &[i64], axis: i64) -> candle_core::Result<Vec<Tensor>> {
    let axis = axis_index(axis, x.rank())?;
    let length = x.dim(axis)?;
    let fail = || candle_core::Error::Msg(format!("cannot split {length} into {sizes:?}")).bt();
    let known: usize = sizes.iter().filter_map(|s| usize::try_from(*s).ok()).sum();
    let rest = length.checked_sub(known).ok_or_else(fail)?;
    let sizes: Vec<usize> = sizes.iter().map(|&s| usize::try_from(s).unwrap_or(rest)).collect();
    if sizes.iter().sum::<usize>() != length {
        return Err(fail());
    }
    let mut start = 0;
    let mut pieces = Vec::with_capacity(sizes.len());
    for size in sizes {
        pieces.push(x.narrow(axis, start, size)?);
        start += size;
    }
    Ok(pieces)
}

/// TensorFlow's `SparseToDense(indices, output_shape, values, default)` on constants.
fn sparse_to_dense(args: &[Tensor]) -> candle_core::Result<Tensor> {
    let ints = tensor_ints;
    let floats = |t: &Tensor| t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>();
    let shape: Vec<usize> = ints(&args[1])?.into_iter().map(|d| usize::try_from(d).unwrap_or(usize::MAX)).collect();
    let elements = shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d)).filter(|n| *n <= 1 << 24);
    let Some(elements) = elements else { candle_core::bail!("SparseToDense output shape {shape:?} is too large") };
    let default = floats(&args[3])?.first().copied().unwrap_or(0.0);
    let mut out = vec![default; elements];
    let indices = ints(&args[0])?;
    let values = floats(&args[2])?;
    let rank = shape.len().max(1);
    for (n, index) in indices.chunks(rank).enumerate() {
        let mut flat = 0usize;
        for (d, &i) in index.iter().enumerate() {
            let i = usize::try_from(i).ok().filter(|i| *i < shape.get(d).copied().unwrap_or(0));
            let Some(i) = i else { candle_core::bail!("SparseToDense index {index:?} is outside {shape:?}") };
            flat = flat * shape[d] + i;
        }
        out[flat] = if values.len() == 1 { values[0] } else { values.get(n).copied().unwrap_or(default) };
    }
    Tensor::from_vec(out, shape, &Device::Cpu)?.to_dtype(args[2].dtype())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::graph::Attr;

    fn node(op: &str, attrs: &[(&str, Attr)]) -> NodeSpec {
        let attrs: BTreeMap<String, Attr> = attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        NodeSpec { name: "n".into(), op: op.into(), inputs: Vec::new(), attrs }
    }

    fn ints(values: &[i64], shape: &[usize]) -> Tensor {
        Tensor::from_vec(values.to_vec(), shape, &Device::Cpu).expect("tensor")
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().and_then(|t| t.to_dtype(DType::F32)).and_then(|t| t.to_vec1()).expect("values")
    }

    #[test]
    fn a_same_padded_strided_nhwc_convolution_matches_the_sum_by_hand() {
        // A 4x4 single-channel image of 1..16, a 3x3 filter of ones, stride 2, SAME: TF pads 0
        // before and 1 after, so output (0,0) sums rows 0-1 x columns 0-1.
        let x = Tensor::arange(1f32, 17., &Device::Cpu).and_then(|t| t.reshape((1, 4, 4, 1))).expect("x");
        let filter = Tensor::ones((3, 3, 1, 1), DType::F32, &Device::Cpu).expect("filter");
        let conv = node("Conv2D", &[("padding", Attr::Text("SAME".into())), ("strides", Attr::Ints(vec![1, 2, 2, 1]))]);
        let kernel = Kernel::decode(&conv, &[None, Some(&filter)], &Device::Cpu).expect("decode");
        let out = kernel.run(&[x, filter.clone()]).expect("run");
        assert_eq!(out[0].dims(), [1, 2, 2, 1]);
        // (0,0): 1+2+3+5+6+7+9+10+11; (0,1): 3+4+7+8+11+12; (1,0): 9+10+11+13+14+15; (1,1): 11+12+15+16.
        assert_eq!(values(&out[0]), [54.0, 45.0, 72.0, 54.0]);
        let dilated =
            node("Conv2D", &[("padding", Attr::Text("VALID".into())), ("dilations", Attr::Ints(vec![1, 2, 2, 1]))]);
        let refused = Kernel::decode(&dilated, &[None, Some(&filter)], &Device::Cpu).unwrap_err();
        assert!(refused.contains("dilations"), "{refused}");
    }

    #[test]
    fn pads_splits_and_sparse_constants_compute_what_tensorflow_does() {
        let x = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu).expect("x");
        let paddings = ints(&[0, 0, 1, 0], &[2, 2]);
        let value = Tensor::new(-1f32, &Device::Cpu).expect("value");
        let pad =
            Kernel::decode(&node("PadV2", &[]), &[None, Some(&paddings), Some(&value)], &Device::Cpu).expect("pad");
        assert_eq!(
            values(&pad.run(&[x.clone(), paddings.clone(), value]).expect("run")[0]),
            [-1., 1., 2., -1., 3., 4.]
        );
        let huge = ints(&[0, 0, 0, 5000], &[2, 2]);
        assert!(Kernel::decode(&node("Pad", &[]), &[None, Some(&huge)], &Device::Cpu).is_err());

        let sizes = ints(&[1, -1], &[2]);
        let axis = ints(&[-1], &[]);
        let split =
            Kernel::decode(&node("SplitV", &[]), &[None, Some(&sizes), Some(&axis)], &Device::Cpu).expect("split");
        let pieces = split.run(&[x.clone(), sizes, axis]).expect("run");
        assert_eq!((values(&pieces[0]), values(&pieces[1])), (vec![1., 3.], vec![2., 4.]));

        // indices [[0, 1], [2, 0]] of a 3x2 output get 7 and 9; the rest the default 5.
        let args = [ints(&[0, 1, 2, 0], &[2, 2]), ints(&[3, 2], &[2]), ints(&[7, 9], &[2]), ints(&[5], &[])];
        let sparse =
            Kernel::decode(&node("SparseToDense", &[]), &args.iter().map(Some).collect::<Vec<_>>(), &Device::Cpu)
                .expect("decode");
        let dense = sparse.run(&args).expect("run");
        assert_eq!(dense[0].dtype(), DType::I64);
        assert_eq!(values(&dense[0]), [5., 7., 5., 5., 9., 5.]);
        let outside = [ints(&[3, 0], &[1, 2]), ints(&[3, 2], &[2]), ints(&[7], &[1]), ints(&[0], &[])];
        assert!(sparse.run(&outside).is_err());
    }

    #[test]
    fn reshapes_infer_one_dimension_and_refuse_a_wrong_count() {
        assert_eq!(resolve_shape(&[1, 80, -1], 80 * 169).expect("shape"), [1, 80, 169]);
        assert!(resolve_shape(&[1, 80, -1], 81).is_err());
        assert!(resolve_shape(&[-1, -1], 4).is_err());
        assert!(resolve_shape(&[2, 3], 5).is_err());
        let unknown = Kernel::decode(&node("Conv3D", &[]), &[], &Device::Cpu).unwrap_err();
        assert!(unknown.starts_with("op `Conv3D` is not supported"), "{unknown}");
    }
}
