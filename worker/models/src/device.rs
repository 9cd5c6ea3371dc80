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

/// Batches a model step keeps in flight (its concurrency): two on a GPU, so the device never waits
/// for the host to prepare the next batch; on a CPU `None`, one per compute thread, like any
/// compute step. Each batch's layers already use every compute thread, but a batch also has parts
/// that run on one thread (preparing its images, copies, the head) and waits at the end of each
/// parallel layer, which the other batches fill: with one batch at a time the two cores of the
/// peers' host were 82% busy on pipeline A (`perf record` samples per 250 ms), and one per thread
/// made A 0.746x and C 0.907x the wall time (`benches/peers/paired.sh`). One per thread, not a
/// fixed two: a slot no thread can run is no capacity, and the autoscaler reads a step's
/// utilisation as busy time over its slots (with `--threads 1`, two slots read 0.5 when saturated).
pub fn batches_in_flight(device: &Device) -> Option<usize> {
    if device.is_cpu() { None } else { Some(2) }
}
