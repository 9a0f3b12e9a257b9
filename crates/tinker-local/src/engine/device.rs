//! The device the engine computes on: the CPU, or with the `cuda` cargo feature the first
//! CUDA GPU when one is present.
//!
//! Not finished: the `cuda` path builds only where the CUDA toolkit is installed and has
//! never been run (no GPU on the machines this was written on). Weights, LoRA variables and
//! activations live on the device; Adam and sampling decisions run on the host.

use std::sync::OnceLock;

use candle_core::Device;

/// The compute device, chosen once per process.
pub(crate) fn device() -> &'static Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE.get_or_init(pick)
}

#[cfg(feature = "cuda")]
fn pick() -> Device {
    Device::cuda_if_available(0).unwrap_or(Device::Cpu)
}

#[cfg(not(feature = "cuda"))]
fn pick() -> Device {
    Device::Cpu
}
