//! TensorFlow.js graph models' weights: the `weightsManifest` of a `model.json` names each weight
//! (name, shape, dtype, and how it was quantised), and the binary shards its groups list hold them
//! back to back, in manifest order. Quantised weights are dequantised to f32: `float16`, and
//! `uint8`/`uint16` with `scale` and `min` (value = q × scale + min). The graph
//! (`modelTopology.node`) becomes a [`GraphSpec`] that the converter stores beside them.

use std::path::Path;

use base64::Engine;
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::graph::{Attr, GraphSpec, NodeSpec};

/// Largest element count of one weight accepted (2^31: far above any graph model's).
const MAX_ELEMENTS: usize = 1 << 31;

/// Whether `bytes` look like a TF.js `model.json`: a JSON object naming `weightsManifest`.
pub fn is_tfjs_manifest(bytes: &[u8]) -> bool {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    start.is_some_and(|i| bytes[i] == b'{') && bytes.windows(17).any(|w| w == b"\"weightsManifest\"")
}

/// The named weights of the TF.js model whose `model.json` is `manifest`, its shards read from
/// `manifest`'s folder, in manifest order.
///
/// # Errors
/// What is wrong, naming the weight or the shard: not JSON, no `weightsManifest`, a shard missing
/// or shorter than its weights, a dtype or quantisation not known.
pub fn read_weights(manifest: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let text = std::fs::read(manifest).map_err(|e| format!("reading it: {e}"))?;
    let json: Value = serde_json::from_slice(&text).map_err(|e| format!("not JSON: {e}"))?;
    let groups = json.get("weightsManifest").and_then(Value::as_array).ok_or("no `weightsManifest` list")?;
    let folder = manifest.parent().unwrap_or(Path::new("."));
    let mut tensors = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        let paths =
            group.get("paths").and_then(Value::as_array).ok_or(format!("weightsManifest[{g}] has no `paths`"))?;
        let mut data = Vec::new();
        for path in paths {
            let name = path.as_str().ok_or(format!("weightsManifest[{g}].paths holds a non-string"))?;
            if name.contains("..") || name.starts_with('/') {
                return Err(format!("weightsManifest[{g}]: shard `{name}` is outside the model's folder"));
            }
            data.extend(std::fs::read(folder.join(name)).map_err(|e| format!("shard `{name}`: {e}"))?);
        }
        let weights =
            group.get("weights").and_then(Value::as_array).ok_or(format!("weightsManifest[{g}] has no `weights`"))?;
        let mut offset = 0;
        for weight in weights {
            let (name, tensor, size) = read_weight(weight, &data[offset.min(data.len())..])?;
            offset += size;
            tensors.push((name, tensor));
        }
        if offset != data.len() {
            return Err(format!("weightsManifest[{g}]: the shards hold {} bytes, the weights {offset}", data.len()));
        }
    }
    Ok(tensors)
}

/// The graph of the TF.js model whose `model.json` is `manifest`: every node with its op, its
/// data inputs (control inputs, `^name`, are dropped) and the attributes that have a value (strings,
/// numbers, flags and lists of them; types, shapes and tensors are left out, the weights carry
/// them).
///
/// # Errors
/// What is wrong: not JSON, no `modelTopology.node` list, a node without a name or an op.
pub fn read_graph(manifest: &Path) -> Result<GraphSpec, String> {
    let text = std::fs::read(manifest).map_err(|e| format!("reading it: {e}"))?;
    let json: Value = serde_json::from_slice(&text).map_err(|e| format!("not JSON: {e}"))?;
    let nodes = json.pointer("/modelTopology/node").and_then(Value::as_array).ok_or("no `modelTopology.node` list")?;
    let nodes = nodes.iter().enumerate().map(|(i, node)| read_node(node).map_err(|e| format!("node {i}: {e}")));
    Ok(GraphSpec { format: "tfjs".into(), nodes: nodes.collect::<Result<_, _>>()? })
}

fn read_node(node: &Value) -> Result<NodeSpec, String> {
    let text = |key: &str| node.get(key).and_then(Value::as_str).map(str::to_string).ok_or(format!("no `{key}`"));
    let inputs = node.get("input").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let inputs = inputs.iter().filter_map(Value::as_str).filter(|i| !i.starts_with('^')).map(str::to_string);
    let attrs = node.get("attr").and_then(Value::as_object);
    let attrs = attrs.into_iter().flatten().filter_map(|(key, value)| Some((key.clone(), read_attr(value)?)));
    Ok(NodeSpec { name: text("name")?, op: text("op")?, inputs: inputs.collect(), attrs: attrs.collect() })
}

/// A TensorFlow `AttrValue` as TF.js writes it (`{"s": base64}`, `{"i": "2"}`, `{"f": 0.1}`,
/// `{"b": true}`, `{"list": {"i": [...]}}`); `None` for kinds a graph's ops are not read from.
fn read_attr(value: &Value) -> Option<Attr> {
    let int = |v: &Value| v.as_i64().or_else(|| v.as_str()?.parse().ok());
    if let Some(s) = value.get("s").and_then(Value::as_str) {
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
        return String::from_utf8(bytes).ok().map(Attr::Text);
    }
    if let Some(i) = value.get("i") {
        return int(i).map(Attr::Int);
    }
    if let Some(f) = value.get("f") {
        return f.as_f64().map(Attr::Float);
    }
    if let Some(b) = value.get("b") {
        return b.as_bool().map(Attr::Bool);
    }
    let list = value.get("list")?;
    if let Some(ints) = list.get("i").and_then(Value::as_array) {
        return ints.iter().map(int).collect::<Option<_>>().map(Attr::Ints);
    }
    let floats = list.get("f").and_then(Value::as_array)?;
    floats.iter().map(Value::as_f64).collect::<Option<_>>().map(Attr::Floats)
}

/// One weight from the start of `data`: its name, its tensor, and the bytes it took.
fn read_weight(weight: &Value, data: &[u8]) -> Result<(String, Tensor, usize), String> {
    let name = weight.get("name").and_then(Value::as_str).ok_or("a weight without a `name`")?.to_string();
    let at = |message: String| format!("weight `{name}`: {message}");
    let shape: Vec<usize> = weight
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| at("no `shape`".into()))?
        .iter()
        .map(|d| {
            d.as_u64().and_then(|d| usize::try_from(d).ok()).ok_or_else(|| at(format!("shape entry {d} is not a size")))
        })
        .collect::<Result<_, _>>()?;
    let count = shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d)).filter(|n| *n <= MAX_ELEMENTS);
    let count = count.ok_or_else(|| at(format!("shape {shape:?} is too large")))?;
    let dtype = weight.get("dtype").and_then(Value::as_str).unwrap_or("float32");
    let quantization = weight.get("quantization");
    let stored = quantization.and_then(|q| q.get("dtype")).and_then(Value::as_str).unwrap_or(dtype);
    let width = match stored {
        "float32" | "int32" => 4,
        "float16" | "uint16" => 2,
        "uint8" | "bool" => 1,
        other => return Err(at(format!("stored dtype `{other}` is not supported"))),
    };
    let size = count * width;
    let bytes =
        data.get(..size).ok_or_else(|| at(format!("needs {size} bytes, the shards have {} left", data.len())))?;
    let device = Device::Cpu;
    let tensor = match (dtype, stored) {
        ("float32", "float32") => Tensor::from_raw_buffer(bytes, DType::F32, &shape, &device),
        ("int32", "int32") => Tensor::from_raw_buffer(bytes, DType::I32, &shape, &device),
        ("bool", "bool") => Tensor::from_raw_buffer(bytes, DType::U8, &shape, &device),
        ("float32", "float16") => {
            Tensor::from_raw_buffer(bytes, DType::F16, &shape, &device).and_then(|t| t.to_dtype(DType::F32))
        }
        ("float32" | "int32", "uint8" | "uint16") => {
            let param = |key: &str| {
                quantization
                    .and_then(|q| q.get(key))
                    .and_then(Value::as_f64)
                    .ok_or_else(|| at(format!("quantization has no `{key}`")))
            };
            let (scale, min) = (param("scale")?, param("min")?);
            let values: Vec<f32> = match stored {
                "uint8" => bytes.iter().map(|q| (f64::from(*q) * scale + min) as f32).collect(),
                _ => bytes
                    .chunks_exact(2)
                    .map(|q| (f64::from(u16::from_le_bytes([q[0], q[1]])) * scale + min) as f32)
                    .collect(),
            };
            Tensor::from_vec(values, shape.as_slice(), &device)
        }
        _ => return Err(at(format!("dtype `{dtype}` stored as `{stored}` is not supported"))),
    }
    .map_err(|e| at(e.to_string()))?;
    Ok((name, tensor, size))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Writes a model.json and one shard, `weights` each `(manifest entry, bytes)`.
    fn write_model(dir: &Path, weights: &[(Value, Vec<u8>)]) -> std::path::PathBuf {
        let entries: Vec<Value> = weights.iter().map(|(entry, _)| entry.clone()).collect();
        let data: Vec<u8> = weights.iter().flat_map(|(_, bytes)| bytes.clone()).collect();
        std::fs::write(dir.join("group1-shard1of1.bin"), data).expect("shard");
        let manifest = json!({"format": "graph-model", "modelTopology": {"node": []},
            "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": entries}]});
        let path = dir.join("model.json");
        std::fs::write(&path, manifest.to_string()).expect("manifest");
        path
    }

    #[test]
    fn plain_half_and_integer_quantised_weights_are_read_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let f32s: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        // 0.5, -1.0 and 65504 (the largest half) as IEEE half floats.
        let halves: Vec<u8> = [0x3800u16, 0xBC00, 0x7BFF].iter().flat_map(|v| v.to_le_bytes()).collect();
        let ints: Vec<u8> = [7i32, -3].iter().flat_map(|v| v.to_le_bytes()).collect();
        let path = write_model(
            dir.path(),
            &[
                (json!({"name": "conv/kernel", "shape": [2], "dtype": "float32"}), f32s),
                (
                    json!({"name": "conv/bias", "shape": [3], "dtype": "float32", "quantization": {"dtype": "float16"}}),
                    halves,
                ),
                (
                    json!({"name": "q8", "shape": [1, 2], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}}),
                    vec![0, 4],
                ),
                (json!({"name": "shape", "shape": [2], "dtype": "int32"}), ints),
            ],
        );
        assert!(is_tfjs_manifest(&std::fs::read(&path).expect("read")));
        let weights = read_weights(&path).expect("weights");
        let names: Vec<&str> = weights.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["conv/kernel", "conv/bias", "q8", "shape"]);
        let values = |i: usize| {
            weights[i]
                .1
                .flatten_all()
                .and_then(|t| t.to_dtype(DType::F32))
                .and_then(|t| t.to_vec1::<f32>())
                .expect("values")
        };
        assert_eq!(values(0), [1.5, -2.0]);
        assert_eq!(values(1), [0.5, -1.0, 65504.0]);
        assert_eq!(weights[2].1.dims(), [1, 2]);
        assert_eq!(values(2), [-1.0, 1.0]);
        assert_eq!(weights[3].1.dtype(), DType::I32);
        assert_eq!(values(3), [7.0, -3.0]);
        // `weir model convert model.json out.safetensors` takes the same path.
        let out = dir.path().join("model.safetensors");
        let converted = crate::convert::convert(&[&path], &out).expect("converted");
        assert_eq!(converted.tensors, 4);
        let loaded = candle_core::safetensors::load(&out, &Device::Cpu).expect("load");
        assert_eq!(loaded["conv/bias"].to_vec1::<f32>().expect("f32"), [0.5, -1.0, 65504.0]);
    }

    #[test]
    fn a_short_shard_a_stray_path_and_an_unknown_dtype_are_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let short = write_model(dir.path(), &[(json!({"name": "w", "shape": [4], "dtype": "float32"}), vec![0; 8])]);
        assert_eq!(read_weights(&short).unwrap_err(), "weight `w`: needs 16 bytes, the shards have 8 left");
        let string = write_model(dir.path(), &[(json!({"name": "s", "shape": [1], "dtype": "string"}), vec![0; 4])]);
        assert_eq!(read_weights(&string).unwrap_err(), "weight `s`: stored dtype `string` is not supported");
        let long = write_model(dir.path(), &[(json!({"name": "w", "shape": [1], "dtype": "float32"}), vec![0; 8])]);
        assert_eq!(read_weights(&long).unwrap_err(), "weightsManifest[0]: the shards hold 8 bytes, the weights 4");
        let stray = dir.path().join("stray.json");
        std::fs::write(&stray, json!({"weightsManifest": [{"paths": ["../secret.bin"], "weights": []}]}).to_string())
            .expect("write");
        assert!(read_weights(&stray).unwrap_err().contains("outside the model's folder"));
        assert!(!is_tfjs_manifest(b"PK\x03\x04"));
    }
}
