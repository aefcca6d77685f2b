//! GPU inference (`--device cuda`): the same network, run by cuBLAS and a few NVRTC-compiled
//! kernels instead of ONNX Runtime.
//!
//! [`Plan`] (kernels, buffers, weight layouts) is plain data built on any machine; the CPU
//! reference in the tests runs it with the GPU's rounding and checks it against ONNX Runtime.
//! [`GpuNetwork`] (the `cuda` feature, on by default) runs it through CUDA libraries loaded
//! at run time.

mod plan;
#[cfg(test)]
mod reference;

#[cfg(feature = "cuda")]
mod gpu;

pub use plan::{Global, Op, Plan, Pooled, RegionWindows, Slot, Step};

#[cfg(feature = "cuda")]
pub use gpu::{GpuNetwork, PassOutputs};

#[cfg(test)]
mod tests;
