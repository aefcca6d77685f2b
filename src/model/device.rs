//! Where the network runs: the device (CPU through ONNX Runtime, or an NVIDIA GPU through
//! CUDA) and, on a GPU, the precision activations are stored at.

use std::fmt;
use std::str::FromStr;

/// The processor that runs the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// ONNX Runtime on the CPU's cores (always available).
    #[default]
    Cpu,
    /// The CUDA device with this ordinal (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl Device {
    /// The precision a device runs at unless told otherwise: fp16 on a GPU (a CPU re-run of
    /// its arithmetic agrees with fp32 to a cosine of 0.99997 and better; see BENCHMARKS.md),
    /// fp32 on CPU.
    pub fn default_precision(self) -> Precision {
        match self {
            Device::Cpu => Precision::Fp32,
            Device::Cuda(_) => Precision::Fp16,
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.split_once(':') {
            None if lower == "cpu" => Ok(Device::Cpu),
            None if lower == "cuda" || lower == "gpu" => Ok(Device::Cuda(0)),
            Some(("cuda" | "gpu", n)) => n
                .parse()
                .map(Device::Cuda)
                .map_err(|_| format!("bad device `{s}`: the GPU number must be 0, 1, ...")),
            _ => Err(format!("unknown device `{s}` (cpu, cuda or cuda:N)")),
        }
    }
}

/// Storage type of activations and of the matrix-product weights. Arithmetic is f32 in both:
/// kernels accumulate in f32, and cuBLAS computes fp16 products in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    #[default]
    Fp32,
    Fp16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
        }
    }

    /// Bytes per stored value.
    pub fn bytes(self) -> usize {
        match self {
            Precision::Fp32 => 4,
            Precision::Fp16 => 2,
        }
    }

    /// `x` as this precision stores it (round to nearest even for fp16, as `cvt.rn` does).
    pub fn round(self, x: f32) -> f32 {
        match self {
            Precision::Fp32 => x,
            Precision::Fp16 => half::f16::from_f32(x).to_f32(),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float32" => Ok(Precision::Fp32),
            "fp16" | "f16" | "half" | "float16" => Ok(Precision::Fp16),
            _ => Err(format!("unknown precision `{s}` (fp32 or fp16)")),
        }
    }
}

/// Images per GPU pass, unless the device's memory is smaller. Not yet tuned on a GPU: the
/// device check (scripts/device) times 64, 128 and 256.
pub const GPU_BATCH: usize = 256;

/// How the network runs: on which device, at which precision, and (on CPU) on how many
/// threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compute {
    pub device: Device,
    pub precision: Precision,
    /// ONNX Runtime's intra-op threads (CPU only).
    pub threads: usize,
    /// The most images a GPU runs at once (it sizes its buffers for them; larger batches are
    /// split): [`GPU_BATCH`], or 1 for a network that only ever sees one query at a time.
    pub batch: usize,
}

impl Compute {
    /// `device` at its default precision.
    pub fn new(device: Device, threads: usize) -> Self {
        Compute {
            device,
            precision: device.default_precision(),
            threads,
            batch: GPU_BATCH,
        }
    }

    /// ONNX Runtime on `threads` CPU threads.
    pub fn cpu(threads: usize) -> Self {
        Compute::new(Device::Cpu, threads)
    }
}

impl Default for Compute {
    fn default() -> Self {
        Compute::cpu(crate::available_cores())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert_eq!("cpu".parse::<Device>(), Ok(Device::Cpu));
        assert_eq!("CUDA".parse::<Device>(), Ok(Device::Cuda(0)));
        assert_eq!("cuda:3".parse::<Device>(), Ok(Device::Cuda(3)));
        assert_eq!("gpu:1".parse::<Device>(), Ok(Device::Cuda(1)));
        for bad in ["cuda:", "cuda:-1", "cuda:x", "tpu", "cpu:0", ""] {
            assert!(bad.parse::<Device>().is_err(), "{bad}");
        }
        assert_eq!(Device::Cuda(2).to_string(), "cuda:2");
        assert_eq!(Compute::new(Device::Cuda(0), 1).precision, Precision::Fp16);
        assert_eq!(Compute::cpu(1).precision, Precision::Fp32);
    }

    #[test]
    fn precision_names() {
        assert_eq!("FP16".parse::<Precision>(), Ok(Precision::Fp16));
        assert_eq!("fp32".parse::<Precision>(), Ok(Precision::Fp32));
        assert!("int8".parse::<Precision>().is_err());
        assert_eq!(Precision::Fp16.round(1.0 + 1.0 / 4096.0), 1.0);
        assert_eq!(
            Precision::Fp32.round(1.0 + 1.0 / 4096.0),
            1.0 + 1.0 / 4096.0
        );
    }
}
