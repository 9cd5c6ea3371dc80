//! Checkpoints to safetensors, without Python: PyTorch's zip format (PyTorch 1.6 and later, read
//! by candle, which takes contiguous and transposed views) and legacy format (one pickle stream
//! followed by raw storages, which candle refuses; any strided view is copied), and CTranslate2
//! Whisper models ([`ctranslate2`]), and TensorFlow.js graph models' weights ([`tfjs`]). Several PyTorch files (MTCNN's three networks) are merged
//! into one, each file's tensors prefixed with its name.
//!
//! The legacy layout, as `torch.save` wrote it before 1.6: a pickled magic number, a pickled
//! protocol version, a pickled `sys_info` dict, the pickled object (tensors refer to storages by
//! persistent id), a pickled list of storage keys, then for each key in that order its element
//! count (u64, little-endian) and its raw little-endian elements.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use candle_core::pickle::{Object, Stack, TensorInfo};
use candle_core::{Device, Tensor};

use crate::graph::GraphSpec;

pub mod ctranslate2;
pub mod tfjs;

/// Why a checkpoint could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("reading `{path}`: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("`{path}` is not a PyTorch checkpoint (zip or legacy pickle), a CTranslate2 model nor a TF.js model.json")]
    NotTorch { path: String },
    #[error("`{path}`: {message}")]
    Malformed { path: String, message: String },
    #[error("`{path}` holds no tensors{hint}")]
    Empty { path: String, hint: String },
    #[error("writing `{path}`: {message}")]
    Write { path: String, message: String },
}

/// The magic number `torch.save` pickles first in the legacy format, as pickle protocol 2
/// bytes: PROTO 2, LONG1 of 10 bytes (0x1950a86a20f9469cfc6c), STOP.
const LEGACY_MAGIC: [u8; 15] =
    [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.'];

/// Whether `bytes` start like a PyTorch checkpoint (zip or legacy).
pub fn is_torch_checkpoint(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(&LEGACY_MAGIC)
}

/// What a conversion wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub tensors: usize,
    pub bytes: u64,
    /// The nodes of the graph stored with the weights (TF.js graph models), if any.
    pub graph_nodes: Option<usize>,
}

/// Converts the checkpoint at `input` into a safetensors file at `output`. PyTorch tensors keep
/// their names (a `module.` prefix from `DataParallel` removed) and dtypes; a checkpoint that
/// wraps its state dict (`{"state_dict": ...}` or `{"model": ...}`) is unwrapped. Several
/// PyTorch files are merged, each tensor name prefixed with its file's stem (`pnet.pt` gives
/// `pnet.conv1.weight`). A CTranslate2 Whisper model gets the names candle's Whisper loads; one
/// split into parts (as some packages ship large models) is given as its parts in order. A TF.js
/// graph model is given as its `model.json`; its weights keep their graph names, dequantised to
/// f32, and its graph is stored in the file's metadata (see [`crate::graph`]).
///
/// # Errors
/// [`ConvertError`] naming the file: unreadable, not a checkpoint, malformed, or without tensors.
pub fn convert(input: &[&Path], output: &Path) -> Result<Converted, ConvertError> {
    let (tensors, graph) = match input {
        [] => return Err(ConvertError::Empty { path: output.display().to_string(), hint: " (no input given)".into() }),
        [first, ..] if is_ctranslate2_file(first)? => (read_ctranslate2(input)?, None),
        [one] if is_tfjs_file(one)? => read_tfjs(one)?,
        [one] => (read_checkpoint(one)?, None),
        many => (read_prefixed(many)?, None),
    };
    let write_error = |message: String| ConvertError::Write { path: output.display().to_string(), message };
    let graph_nodes = graph.as_ref().map(|g| g.nodes.len());
    let metadata = match graph {
        Some(graph) => {
            let json = serde_json::to_string(&graph).map_err(|e| write_error(e.to_string()))?;
            Some(HashMap::from([(crate::graph::METADATA_KEY.to_string(), json)]))
        }
        None => None,
    };
    let map: HashMap<String, Tensor> = tensors.into_iter().collect();
    let bytes = map.values().map(|t| (t.elem_count() * t.dtype().size_in_bytes()) as u64).sum();
    safetensors::serialize_to_file(map.iter(), metadata, output).map_err(|e| write_error(e.to_string()))?;
    Ok(Converted { tensors: map.len(), bytes, graph_nodes })
}

/// The named tensors of a PyTorch checkpoint, in file order.
///
/// # Errors
/// As [`convert`].
pub fn read_checkpoint(input: &Path) -> Result<Vec<(String, Tensor)>, ConvertError> {
    let path = input.display().to_string();
    let io = |source| ConvertError::Io { path: path.clone(), source };
    let mut head = [0u8; 16];
    let mut file = std::fs::File::open(input).map_err(io)?;
    let read = file.read(&mut head).map_err(io)?;
    let tensors = if head[..read].starts_with(b"PK\x03\x04") {
        read_zip(input)?
    } else if head[..read].starts_with(&LEGACY_MAGIC) {
        read_legacy(input)?
    } else {
        return Err(ConvertError::NotTorch { path });
    };
    if tensors.is_empty() {
        return Err(ConvertError::Empty {
            path,
            hint: " (is it a whole pickled model rather than a state dict?)".into(),
        });
    }
    Ok(tensors.into_iter().map(|(name, t)| (strip_wrapper_prefix(name), t)).collect())
}

fn is_ctranslate2_file(path: &Path) -> Result<bool, ConvertError> {
    let mut head = [0u8; 64];
    let mut file = std::fs::File::open(path).map_err(|source| io_error(path, source))?;
    let read = file.read(&mut head).map_err(|source| io_error(path, source))?;
    Ok(ctranslate2::is_ctranslate2(&head[..read]))
}

fn is_tfjs_file(path: &Path) -> Result<bool, ConvertError> {
    if path.extension().is_none_or(|e| e != "json") {
        return Ok(false);
    }
    let bytes = std::fs::read(path).map_err(|source| io_error(path, source))?;
    Ok(tfjs::is_tfjs_manifest(&bytes))
}

/// Tensors with their names, in file order.
type NamedTensors = Vec<(String, Tensor)>;

/// The weights and the graph of a TF.js graph model, from its `model.json`.
fn read_tfjs(manifest: &Path) -> Result<(NamedTensors, Option<GraphSpec>), ConvertError> {
    let path = manifest.display().to_string();
    let malformed = |message| ConvertError::Malformed { path: path.clone(), message };
    let tensors = tfjs::read_weights(manifest).map_err(malformed)?;
    if tensors.is_empty() {
        return Err(ConvertError::Empty { path, hint: " (its weightsManifest lists no weights)".into() });
    }
    let graph = tfjs::read_graph(manifest).map_err(malformed)?;
    Ok((tensors, Some(graph)))
}

fn io_error(path: &Path, source: std::io::Error) -> ConvertError {
    ConvertError::Io { path: path.display().to_string(), source }
}

/// The Whisper tensors of a CTranslate2 model given as one or more parts.
fn read_ctranslate2(parts: &[&Path]) -> Result<Vec<(String, Tensor)>, ConvertError> {
    let joined = parts.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" + ");
    let mut bytes = Vec::new();
    for part in parts {
        bytes.extend(std::fs::read(part).map_err(|source| io_error(part, source))?);
    }
    if !ctranslate2::is_ctranslate2(&bytes) {
        return Err(ConvertError::NotTorch { path: joined });
    }
    let tensors = ctranslate2::read_whisper(&bytes)
        .map_err(|message| ConvertError::Malformed { path: joined.clone(), message })?;
    if tensors.is_empty() {
        return Err(ConvertError::Empty { path: joined, hint: String::new() });
    }
    Ok(tensors)
}

/// The tensors of several PyTorch files, each name prefixed with its file's stem.
fn read_prefixed(inputs: &[&Path]) -> Result<Vec<(String, Tensor)>, ConvertError> {
    let mut out = Vec::new();
    for input in inputs {
        let stem = input.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        if stem.is_empty() {
            return Err(ConvertError::Malformed {
                path: input.display().to_string(),
                message: "has no file name to prefix its tensors with".into(),
            });
        }
        out.extend(read_checkpoint(input)?.into_iter().map(|(name, t)| (format!("{stem}.{name}"), t)));
    }
    Ok(out)
}

fn strip_wrapper_prefix(name: String) -> String {
    match name.strip_prefix("module.") {
        Some(rest) => rest.to_string(),
        None => name,
    }
}

/// Keys under which training scripts commonly nest the state dict.
const STATE_DICT_KEYS: [&str; 3] = ["state_dict", "model", "model_state_dict"];

fn read_zip(input: &Path) -> Result<Vec<(String, Tensor)>, ConvertError> {
    let malformed =
        |e: candle_core::Error| ConvertError::Malformed { path: input.display().to_string(), message: e.to_string() };
    // A wrapped state dict wins over tensors stored beside it (a checkpoint's `best_acc1`).
    for key in STATE_DICT_KEYS {
        if let Ok(nested) = candle_core::pickle::read_all_with_key(input, Some(key))
            && !nested.is_empty()
        {
            return Ok(nested);
        }
    }
    candle_core::pickle::read_all(input).map_err(malformed)
}

fn read_legacy(input: &Path) -> Result<Vec<(String, Tensor)>, ConvertError> {
    let path = input.display().to_string();
    let malformed = |message: String| ConvertError::Malformed { path: path.clone(), message };
    let file = std::fs::File::open(input).map_err(|source| ConvertError::Io { path: path.clone(), source })?;
    let mut reader = BufReader::new(file);
    // The magic number is an 80-bit integer, too wide for candle's pickle reader: skip its bytes.
    let mut magic = [0u8; 15];
    reader.read_exact(&mut magic).map_err(|e| malformed(format!("truncated header: {e}")))?;
    let _protocol = read_pickle(&mut reader).map_err(|e| malformed(format!("protocol version: {e}")))?;
    let _sys_info = read_pickle(&mut reader).map_err(|e| malformed(format!("sys_info: {e}")))?;
    let object = read_pickle(&mut reader).map_err(|e| malformed(format!("state dict: {e}")))?;
    let keys =
        read_pickle(&mut reader).and_then(storage_keys).map_err(|e| malformed(format!("storage key list: {e}")))?;

    // Every storage in the stream must be skipped or read, including those of tensors outside
    // the state dict (optimizer state, metrics): their element sizes come from the whole object.
    let mut sizes = HashMap::new();
    storage_sizes(&object, &mut sizes).map_err(&malformed)?;
    let infos = tensor_infos(state_dict(object));
    let mut storages: HashMap<String, Vec<u8>> = HashMap::with_capacity(keys.len());
    for key in keys {
        let elem_size =
            *sizes.get(&key).ok_or_else(|| malformed(format!("storage `{key}` is not referred to by any tensor")))?;
        let mut count = [0u8; 8];
        reader.read_exact(&mut count).map_err(|e| malformed(format!("storage `{key}`: {e}")))?;
        let bytes = u64::from_le_bytes(count)
            .checked_mul(elem_size as u64)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| malformed(format!("storage `{key}` claims an impossible size")))?;
        let mut data = Vec::new();
        (&mut reader)
            .take(bytes as u64)
            .read_to_end(&mut data)
            .map_err(|e| malformed(format!("storage `{key}`: {e}")))?;
        if data.len() != bytes {
            return Err(malformed(format!("storage `{key}` is truncated ({} of {bytes} bytes)", data.len())));
        }
        storages.insert(key, data);
    }
    infos
        .into_iter()
        .map(|info| {
            let key = storage_key(&info);
            let storage = storages
                .get(&key)
                .ok_or_else(|| malformed(format!("tensor `{}`: storage `{key}` is missing", info.name)))?;
            let tensor =
                strided_tensor(storage, &info).map_err(|m| malformed(format!("tensor `{}`: {m}", info.name)))?;
            Ok((info.name, tensor))
        })
        .collect()
}

fn read_pickle<R: BufRead>(reader: &mut R) -> Result<Object, String> {
    let mut stack = Stack::empty();
    stack.read_loop(reader).map_err(|e| e.to_string())?;
    stack.finalize().map_err(|e| e.to_string())
}

/// Bytes per element of a storage class, as `torch.save` names them.
fn element_size(class: &str) -> Option<usize> {
    Some(match class {
        "BoolStorage" | "ByteStorage" | "CharStorage" => 1,
        "ShortStorage" | "HalfStorage" | "BFloat16Storage" => 2,
        "IntStorage" | "FloatStorage" => 4,
        "LongStorage" | "DoubleStorage" | "ComplexFloatStorage" => 8,
        "ComplexDoubleStorage" => 16,
        _ => return None,
    })
}

/// Records the element size of every storage `object` refers to by persistent id
/// (`('storage', <class>, key, location, numel, ...)`), wherever it sits in the object.
fn storage_sizes(object: &Object, sizes: &mut HashMap<String, usize>) -> Result<(), String> {
    match object {
        Object::PersistentLoad(id) => {
            if let Object::Tuple(parts) = id.as_ref()
                && let (Some(Object::Class { class_name, .. }), Some(Object::Unicode(key))) =
                    (parts.get(1), parts.get(2))
            {
                let size = element_size(class_name)
                    .ok_or_else(|| format!("storage `{key}` has the unsupported type {class_name}"))?;
                sizes.insert(key.clone(), size);
            }
        }
        Object::Tuple(items) | Object::List(items) => {
            for item in items {
                storage_sizes(item, sizes)?;
            }
        }
        Object::Dict(entries) => {
            for (key, value) in entries {
                storage_sizes(key, sizes)?;
                storage_sizes(value, sizes)?;
            }
        }
        Object::Reduce { callable, args } | Object::Build { callable, args } => {
            storage_sizes(callable, sizes)?;
            storage_sizes(args, sizes)?;
        }
        _ => {}
    }
    Ok(())
}

/// The list of storage keys pickled after the state dict.
fn storage_keys(object: Object) -> Result<Vec<String>, String> {
    let (Object::List(items) | Object::Tuple(items)) = object else {
        return Err("is not a list".into());
    };
    items.into_iter().map(|item| item.unicode().map_err(|_| "holds a key that is not a string".to_string())).collect()
}

/// The state dict inside `object`: itself, or the dict under a usual wrapper key.
fn state_dict(object: Object) -> Vec<(Object, Object)> {
    let Object::Dict(entries) = object else { return Vec::new() };
    let wrapped = entries.iter().position(
        |(k, v)| matches!((k, v), (Object::Unicode(k), Object::Dict(_)) if STATE_DICT_KEYS.contains(&k.as_str())),
    );
    match wrapped {
        Some(index) => match entries.into_iter().nth(index) {
            Some((_, Object::Dict(inner))) => inner,
            _ => Vec::new(),
        },
        None => entries,
    }
}

/// The tensors among a state dict's entries (other values, such as version numbers, are skipped).
fn tensor_infos(entries: Vec<(Object, Object)>) -> Vec<TensorInfo> {
    entries.into_iter().filter_map(|(name, value)| value.into_tensor_info(name, Path::new("")).ok().flatten()).collect()
}

/// The storage key a tensor refers to (candle joins it to a folder name, empty here).
fn storage_key(info: &TensorInfo) -> String {
    info.path.trim_start_matches('/').to_string()
}

/// Copies the elements a tensor views out of its storage into a contiguous tensor.
fn strided_tensor(storage: &[u8], info: &TensorInfo) -> Result<Tensor, String> {
    let size = info.dtype.size_in_bytes();
    let dims = info.layout.dims();
    let strides = info.layout.stride();
    let offset = info.layout.start_offset() / size;
    let count: usize = dims.iter().product();
    let mut out = Vec::with_capacity(count * size);
    let mut index = vec![0usize; dims.len()];
    let past_end = || "views elements past the end of its storage".to_string();
    for _ in 0..count {
        let element = index
            .iter()
            .zip(strides)
            .try_fold(offset, |acc, (i, s)| i.checked_mul(*s).and_then(|step| acc.checked_add(step)))
            .ok_or_else(past_end)?;
        let start = element.checked_mul(size).ok_or_else(past_end)?;
        let bytes = storage.get(start..start + size).ok_or_else(past_end)?;
        out.extend_from_slice(bytes);
        for axis in (0..dims.len()).rev() {
            index[axis] += 1;
            if index[axis] < dims[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Tensor::from_raw_buffer(&out, info.dtype, dims, &Device::Cpu).map_err(|e| e.to_string())
}
