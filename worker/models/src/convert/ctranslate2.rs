//! CTranslate2 `model.bin` files (as faster-whisper and its packagers ship Whisper) to
//! safetensors under the Hugging Face names candle's Whisper loads.
//!
//! The file, little-endian: `u32` format version (5 or 6), the spec name and a `u32` revision;
//! a `u32` variable count, then per variable its name, `u8` rank, `u32` dims, `u8` dtype, `u32`
//! byte count and the raw elements; then `u32` alias count and `(alias, target)` name pairs.
//! Strings are a `u16` byte count followed by the bytes and a NUL.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

/// The spec name CTranslate2 gives Whisper models.
const WHISPER_SPEC: &str = "WhisperSpec";

/// Every released Whisper size has 64-wide attention heads; candle derives the head count from it.
pub const WHISPER_HEAD_DIM: usize = 64;

/// Whether `bytes` start like a CTranslate2 model file.
pub fn is_ctranslate2(bytes: &[u8]) -> bool {
    let version = bytes.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let name_len = bytes.get(4..6).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])));
    match (version, name_len) {
        (Some(5..=6), Some(len)) => bytes.get(6..6 + len).is_some_and(|name| name.ends_with(b"Spec\0")),
        _ => false,
    }
}

/// One variable as stored: dims, dtype code and raw little-endian bytes.
struct Variable<'a> {
    dims: Vec<usize>,
    dtype: u8,
    data: &'a [u8],
}

/// CTranslate2's data type codes.
mod code {
    pub const F32: u8 = 0;
    pub const I8: u8 = 1;
    pub const I16: u8 = 2;
    pub const I32: u8 = 3;
    pub const F16: u8 = 4;
    pub const BF16: u8 = 5;
}

/// The Whisper tensors of a CTranslate2 model file, renamed for candle's Whisper
/// (`model.encoder.layers.0.self_attn.q_proj.weight`...). Fused projections are split,
/// int8/int16 weights are dequantized to f32, f16/bf16/f32 are kept as they are.
///
/// # Errors
/// A message saying what is malformed or unsupported: a truncated file, another spec than
/// Whisper, a head width other than 64, or a key projection with a bias.
pub fn read_whisper(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    let (spec, variables) = parse(bytes)?;
    if spec != WHISPER_SPEC {
        return Err(format!("is a CTranslate2 `{spec}` model; only `{WHISPER_SPEC}` can be converted"));
    }
    let mut out = Vec::with_capacity(variables.len() + 64);
    for (name, variable) in &variables {
        if variable.dims.is_empty() || name.ends_with("weight_scale") {
            continue; // Scalars are settings (activation, head count...); scales are applied below.
        }
        let tensor = to_tensor(name, variable, &variables)?;
        for (renamed, part) in whisper_names(name, tensor)? {
            out.push((renamed, part));
        }
    }
    check_heads(&variables, &out)?;
    Ok(out)
}

/// Splits the file into its spec name and variables (aliases resolved to their targets).
fn parse(bytes: &[u8]) -> Result<(String, HashMap<String, Variable<'_>>), String> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u32()?;
    if !(5..=6).contains(&version) {
        return Err(format!("CTranslate2 format version {version} is not supported (5 or 6 is)"));
    }
    let spec = r.string()?;
    let _revision = r.u32()?;
    let count = r.u32()?;
    let mut variables = HashMap::new();
    for _ in 0..count {
        let name = r.string()?;
        let rank = r.u8()?;
        let dims = (0..rank).map(|_| r.u32().map(|d| d as usize)).collect::<Result<Vec<_>, _>>()?;
        let dtype = r.u8()?;
        let len = r.u32()? as usize;
        let data = r.take(len).map_err(|e| format!("variable `{name}`: {e}"))?;
        variables.insert(name, Variable { dims, dtype, data });
    }
    let aliases = r.u32()?;
    for _ in 0..aliases {
        let alias = r.string()?;
        let target = r.string()?;
        let Some(v) = variables.get(&target) else {
            return Err(format!("alias `{alias}` names the missing variable `{target}`"));
        };
        let copy = Variable { dims: v.dims.clone(), dtype: v.dtype, data: v.data };
        variables.insert(alias, copy);
    }
    Ok((spec, variables))
}

/// A bounds-checked cursor over the file.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| format!("truncated: {n} bytes wanted at offset {} of {}", self.at, self.bytes.len()))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<String, String> {
        let b = self.take(2)?;
        let len = usize::from(u16::from_le_bytes([b[0], b[1]]));
        let raw = self.take(len)?;
        let text = raw.strip_suffix(b"\0").unwrap_or(raw);
        String::from_utf8(text.to_vec()).map_err(|_| format!("a name at offset {} is not UTF-8", self.at))
    }
}

/// The variable as a candle tensor; quantized weights are divided by their `weight_scale`.
fn to_tensor(name: &str, v: &Variable<'_>, all: &HashMap<String, Variable<'_>>) -> Result<Tensor, String> {
    let count: usize = v.dims.iter().product();
    let fail = |e: candle_core::Error| format!("variable `{name}`: {e}");
    let dtype = match v.dtype {
        code::F32 => DType::F32,
        code::F16 => DType::F16,
        code::BF16 => DType::BF16,
        code::I8 | code::I16 => return dequantize(name, v, all),
        code::I32 => return Err(format!("variable `{name}` holds int32 values, which Whisper has no use for")),
        other => return Err(format!("variable `{name}` has the unknown data type code {other}")),
    };
    if v.data.len() != count * dtype.size_in_bytes() {
        return Err(format!("variable `{name}` holds {} bytes for shape {:?}", v.data.len(), v.dims));
    }
    Tensor::from_raw_buffer(v.data, dtype, &v.dims, &Device::Cpu).map_err(fail)
}

/// `int8`/`int16` weights quantized per output row: `w = q / scale[row]`.
fn dequantize(name: &str, v: &Variable<'_>, all: &HashMap<String, Variable<'_>>) -> Result<Tensor, String> {
    let scale_name = format!("{name}_scale");
    let scale = all.get(&scale_name).ok_or_else(|| format!("quantized `{name}` has no `{scale_name}`"))?;
    let scale = to_tensor(&scale_name, scale, all)?.to_dtype(DType::F32).and_then(|s| s.to_vec1::<f32>());
    let scale = scale.map_err(|e| format!("`{scale_name}`: {e}"))?;
    let values: Vec<f32> = match v.dtype {
        code::I8 => v.data.iter().map(|b| f32::from(*b as i8)).collect(),
        _ => v.data.chunks_exact(2).map(|b| f32::from(i16::from_le_bytes([b[0], b[1]]))).collect(),
    };
    let rows = v.dims.first().copied().unwrap_or(1);
    if values.len() != v.dims.iter().product::<usize>() || scale.len() != rows || rows == 0 {
        return Err(format!("quantized `{name}` does not match its shape {:?} and {} scales", v.dims, scale.len()));
    }
    let per_row = values.len() / rows;
    let values: Vec<f32> = values.iter().enumerate().map(|(i, q)| q / scale[i / per_row]).collect();
    Tensor::from_vec(values, v.dims.as_slice(), &Device::Cpu).map_err(|e| format!("`{name}`: {e}"))
}

/// The Hugging Face name(s) of one CTranslate2 Whisper variable, splitting fused projections.
fn whisper_names(name: &str, tensor: Tensor) -> Result<Vec<(String, Tensor)>, String> {
    let unknown = || format!("variable `{name}` is not part of a Whisper model");
    let (side, rest) = name.split_once('/').ok_or_else(unknown)?;
    if side != "encoder" && side != "decoder" {
        return Err(unknown());
    }
    let base = format!("model.{side}");
    let renamed = |suffix: &str| Ok(vec![(format!("{base}.{suffix}"), tensor.clone())]);
    let Some(layer_rest) = rest.strip_prefix("layer_").filter(|r| r.starts_with(|c: char| c.is_ascii_digit())) else {
        return match rest {
            "conv1/weight" | "conv1/bias" | "conv2/weight" | "conv2/bias" => renamed(&rest.replace('/', ".")),
            "position_encodings/encodings" => renamed("embed_positions.weight"),
            "embeddings/weight" => renamed("embed_tokens.weight"),
            "layer_norm/gamma" => renamed("layer_norm.weight"),
            "layer_norm/beta" => renamed("layer_norm.bias"),
            "projection/weight" => Ok(Vec::new()), // Tied to the token embeddings.
            _ => Err(unknown()),
        };
    };
    let (index, part) = layer_rest.split_once('/').ok_or_else(unknown)?;
    let layer = format!("{base}.layers.{index}");
    let (module, leaf) = part.rsplit_once('/').ok_or_else(unknown)?;
    let leaf = match leaf {
        "gamma" | "weight" => "weight",
        "beta" | "bias" => "bias",
        _ => return Err(unknown()),
    };
    let one = |hf: &str| Ok(vec![(format!("{layer}.{hf}.{leaf}"), tensor.clone())]);
    match module {
        "self_attention/layer_norm" => one("self_attn_layer_norm"),
        "self_attention/linear_0" => split(&tensor, &layer, "self_attn", &["q_proj", "k_proj", "v_proj"], leaf, name),
        "self_attention/linear_1" => one("self_attn.out_proj"),
        "attention/layer_norm" => one("encoder_attn_layer_norm"),
        "attention/linear_0" => one("encoder_attn.q_proj"),
        "attention/linear_1" => split(&tensor, &layer, "encoder_attn", &["k_proj", "v_proj"], leaf, name),
        "attention/linear_2" => one("encoder_attn.out_proj"),
        "ffn/layer_norm" => one("final_layer_norm"),
        "ffn/linear_0" => one("fc1"),
        "ffn/linear_1" => one("fc2"),
        _ => Err(unknown()),
    }
}

/// Splits a fused projection along its output rows. Whisper's key projections have no bias:
/// CTranslate2 stores zeros there, which are dropped (anything else is refused, not lost).
fn split(
    tensor: &Tensor,
    layer: &str,
    attention: &str,
    parts: &[&str],
    leaf: &str,
    name: &str,
) -> Result<Vec<(String, Tensor)>, String> {
    let fail = |e: candle_core::Error| format!("variable `{name}`: {e}");
    let chunks = tensor.chunk(parts.len(), 0).map_err(fail)?;
    let mut out = Vec::with_capacity(parts.len());
    for (part, chunk) in parts.iter().zip(chunks) {
        if *part == "k_proj" && leaf == "bias" {
            let max = chunk.to_dtype(DType::F32).and_then(|c| c.abs()?.max_all()?.to_scalar::<f32>()).map_err(fail)?;
            if max != 0.0 {
                return Err(format!("variable `{name}` has a non-zero key bias, which Whisper does not have"));
            }
            continue;
        }
        let chunk = chunk.contiguous().map_err(fail)?;
        out.push((format!("{layer}.{attention}.{part}.{leaf}"), chunk));
    }
    Ok(out)
}

/// Refuses models whose head count candle would get wrong (it assumes 64-wide heads).
fn check_heads(variables: &HashMap<String, Variable<'_>>, tensors: &[(String, Tensor)]) -> Result<(), String> {
    let width = tensors
        .iter()
        .find(|(n, _)| n == "model.encoder.conv1.bias")
        .map(|(_, t)| t.elem_count())
        .ok_or("the model has no `encoder/conv1/bias`")?;
    for side in ["encoder", "decoder"] {
        let heads = variables.get(&format!("{side}/num_heads")).and_then(|v| match (v.dtype, v.data) {
            (code::I8, [h]) => Some(usize::from(*h)),
            (code::I16, [a, b]) => usize::try_from(i16::from_le_bytes([*a, *b])).ok(),
            (code::I32, [a, b, c, d]) => usize::try_from(i32::from_le_bytes([*a, *b, *c, *d])).ok(),
            _ => None,
        });
        if let Some(heads) = heads
            && heads * WHISPER_HEAD_DIM != width
        {
            return Err(format!(
                "{side} has {heads} heads of width {width}; only {WHISPER_HEAD_DIM}-wide heads (every released Whisper) are supported"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CTranslate2 file with the given variables and aliases.
    fn file(spec: &str, variables: &[(&str, &[u32], u8, Vec<u8>)], aliases: &[(&str, &str)]) -> Vec<u8> {
        let mut out = 6u32.to_le_bytes().to_vec();
        let string = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        };
        string(&mut out, spec);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(variables.len() as u32).to_le_bytes());
        for (name, dims, dtype, data) in variables {
            string(&mut out, name);
            out.push(dims.len() as u8);
            dims.iter().for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
            out.push(*dtype);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out.extend_from_slice(&(aliases.len() as u32).to_le_bytes());
        for (alias, target) in aliases {
            string(&mut out, alias);
            string(&mut out, target);
        }
        out
    }

    fn f32s(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn named<'a>(tensors: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
        &tensors.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} missing")).1
    }

    #[test]
    fn fused_self_attention_splits_into_query_key_and_value() {
        // Width 64 (one head): the fused [192, 64] weight and its [192] bias.
        let weight: Vec<f32> = (0..192 * 64).map(|i| (i / 64) as f32).collect();
        let mut bias = vec![1.0f32; 64];
        bias.extend(vec![0.0; 64]);
        bias.extend(vec![3.0; 64]);
        let bytes = file(
            WHISPER_SPEC,
            &[
                ("encoder/conv1/bias", &[64], code::F32, f32s(&[0.0; 64])),
                ("encoder/num_heads", &[], code::I16, 1i16.to_le_bytes().to_vec()),
                ("encoder/layer_norm/gamma", &[64], code::F32, f32s(&[1.0; 64])),
                ("encoder/layer_0/self_attention/linear_0/weight", &[192, 64], code::F32, f32s(&weight)),
                ("encoder/layer_0/self_attention/linear_0/bias", &[192], code::F32, f32s(&bias)),
            ],
            &[],
        );
        assert!(is_ctranslate2(&bytes));
        let tensors = read_whisper(&bytes).expect("converts");
        let v = named(&tensors, "model.encoder.layers.0.self_attn.v_proj.weight");
        assert_eq!(v.dims(), &[64, 64]);
        assert_eq!(v.to_vec2::<f32>().expect("f32")[0][0], 128.0);
        let q_bias = named(&tensors, "model.encoder.layers.0.self_attn.q_proj.bias");
        assert_eq!(q_bias.to_vec1::<f32>().expect("f32"), vec![1.0; 64]);
        assert!(!tensors.iter().any(|(n, _)| n.ends_with("k_proj.bias")), "the zero key bias is dropped");
        assert_eq!(named(&tensors, "model.encoder.layer_norm.weight").dims(), &[64]);
    }

    #[test]
    fn int8_weights_are_dequantized_by_their_row_scales() {
        let bytes = file(
            WHISPER_SPEC,
            &[
                ("encoder/conv1/bias", &[2], code::F32, f32s(&[0.0, 0.0])),
                ("decoder/layer_0/ffn/linear_0/weight", &[2, 2], code::I8, vec![10, 246, 4, 8]),
                ("decoder/layer_0/ffn/linear_0/weight_scale", &[2], code::F32, f32s(&[10.0, 4.0])),
            ],
            &[],
        );
        let tensors = read_whisper(&bytes).expect("converts");
        let fc1 = named(&tensors, "model.decoder.layers.0.fc1.weight");
        assert_eq!(fc1.to_vec2::<f32>().expect("f32"), vec![vec![1.0, -1.0], vec![1.0, 2.0]]);
    }

    #[test]
    fn other_specs_truncated_files_and_key_biases_are_refused() {
        let bytes = file("TransformerSpec", &[], &[]);
        assert!(read_whisper(&bytes).expect_err("not whisper").contains("`TransformerSpec`"));
        let bytes = file(WHISPER_SPEC, &[("encoder/conv1/bias", &[4], code::F32, f32s(&[0.0; 4]))], &[]);
        assert!(read_whisper(&bytes[..bytes.len() - 9]).expect_err("truncated").contains("truncated"));
        let bytes = file(
            WHISPER_SPEC,
            &[
                ("encoder/conv1/bias", &[1], code::F32, f32s(&[0.0])),
                ("decoder/layer_0/attention/linear_1/bias", &[2], code::F32, f32s(&[0.5, 0.0])),
            ],
            &[],
        );
        assert!(read_whisper(&bytes).expect_err("key bias").contains("non-zero key bias"));
    }

    #[test]
    fn aliases_resolve_and_tied_projections_are_not_duplicated() {
        let bytes = file(
            WHISPER_SPEC,
            &[
                ("encoder/conv1/bias", &[1], code::F32, f32s(&[0.0])),
                ("decoder/embeddings/weight", &[3, 1], code::F16, vec![0, 60, 0, 64, 0, 66]),
            ],
            &[("decoder/projection/weight", "decoder/embeddings/weight")],
        );
        let tensors = read_whisper(&bytes).expect("converts");
        assert_eq!(tensors.len(), 2);
        let embed = named(&tensors, "model.decoder.embed_tokens.weight");
        assert_eq!(embed.dtype(), DType::F16);
        assert_eq!(
            embed.to_dtype(DType::F32).and_then(|t| t.flatten_all()?.to_vec1::<f32>()).ok(),
            Some(vec![1.0, 2.0, 3.0])
        );
    }
}
