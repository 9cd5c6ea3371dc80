//! Reading safetensors weights, with errors that say which tensor is missing or misshapen.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::ModelError;
use crate::assets::Asset;

/// The tensors of one weights file, on the CPU, looked up by name.
pub struct Weights {
    uri: String,
    tensors: HashMap<String, Tensor>,
    /// The file's `__metadata__` (a graph model's graph, for one).
    metadata: HashMap<String, String>,
}

impl Weights {
    /// Parses a safetensors file.
    ///
    /// # Errors
    /// [`ModelError::Weights`] when the bytes are empty, a PyTorch checkpoint (with the command
    /// that converts it), or not safetensors.
    pub fn parse(asset: &Asset) -> Result<Self, ModelError> {
        let uri = asset.uri.clone();
        let bytes = &asset.bytes[..];
        let refuse = |message: String| ModelError::Weights { uri: uri.clone(), message };
        if bytes.is_empty() {
            return Err(refuse("is empty (0 bytes)".into()));
        }
        if crate::convert::is_torch_checkpoint(bytes) {
            return Err(refuse(
                "is a PyTorch checkpoint, not safetensors: convert it with `weir model convert IN OUT.safetensors`"
                    .into(),
            ));
        }
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
            .map_err(|e| refuse(format!("is not a readable safetensors file: {e}")))?;
        let metadata = safetensors::SafeTensors::read_metadata(bytes)
            .ok()
            .and_then(|(_, header)| header.metadata().clone())
            .unwrap_or_default();
        Ok(Self { uri, tensors, metadata })
    }

    /// The tensor `name`, which must have shape `shape`.
    ///
    /// # Errors
    /// [`ModelError::Weights`] naming the tensor and the shape the architecture expects.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, ModelError> {
        let refuse = |message: String| ModelError::Weights { uri: self.uri.clone(), message };
        let Some(tensor) = self.tensors.get(name) else {
            return Err(refuse(format!("tensor `{name}` (shape {shape:?}) is missing")));
        };
        if tensor.dims() != shape {
            return Err(refuse(format!("tensor `{name}` has shape {:?}, expected {shape:?}", tensor.dims())));
        }
        Ok(tensor.to_dtype(DType::F32)?)
    }

    /// The tensor `name` as stored (any shape and dtype), if present.
    pub fn raw(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// The file's metadata entry `key`, if present.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// The shape of tensor `name`, if present (for architectures whose sizes vary).
    pub fn shape_of(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(Tensor::dims)
    }

    /// Whether any tensor name starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.tensors.keys().any(|k| k.starts_with(prefix))
    }

    /// A candle `VarBuilder` over these tensors in `dtype` on `device`, for models built with
    /// candle-transformers (whose errors also name the tensor and shape).
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_tensors(self.tensors, dtype, device)
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }
}
