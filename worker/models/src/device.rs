//! Where a model runs: the CPU, or a CUDA GPU when the worker is built with the `cuda` feature.

use candle_core::{DType, Device};
use weir_crds::{ModelDevice, ModelDtype};

use crate::ModelError;

/// The device for `wanted` (default `auto`).
///
/// # Errors
/// [`ModelError::Device`] when `cuda` is asked for and this build has no CUDA support or the
/// machine no usable GPU.
pub fn select(wanted: Option<ModelDevice>) -> Result<Device, ModelError> {
    match wanted.unwrap_or(ModelDevice::Auto) {
        ModelDevice::Cpu => Ok(Device::Cpu),
        ModelDevice::Auto => Ok(cuda().unwrap_or(Device::Cpu)),
        ModelDevice::Cuda => cuda(),
    }
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Device, ModelError> {
    Device::new_cuda(0).map_err(|e| ModelError::Device(format!("no usable CUDA device: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device, ModelError> {
    Err(ModelError::Device("this weir was built without the `cuda` feature".into()))
}

/// The compute type for `wanted` on `device`: half types only where the device computes them
/// fast (a CPU computes f16 and bf16 slower than f32, so it keeps f32).
pub fn dtype(wanted: Option<ModelDtype>, device: &Device) -> DType {
    match (wanted.unwrap_or(ModelDtype::F32), device) {
        (ModelDtype::F32, _) | (_, Device::Cpu) => DType::F32,
        (ModelDtype::F16, _) => DType::F16,
        (ModelDtype::Bf16, _) => DType::BF16,
    }
}

/// Batches a model step keeps in flight, on any device. On a GPU, so the device never waits for
/// the host to prepare the next batch. On a CPU too, though each batch's layers already use every
/// compute thread: a batch also has parts that run on one thread (preparing its images, copies,
/// the head) and waits at the end of each parallel layer, and a second batch fills them. With one
/// batch the two cores of the peers' host were 82% busy on pipeline A (`perf record` samples per
/// 250 ms); with two, `benches/peers/paired.sh` gave A 0.746x the wall time and C 0.907x.
pub const BATCHES_IN_FLIGHT: usize = 2;
