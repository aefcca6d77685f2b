//! The EfficientNet-Lite inference network as a plain list of layers, read once from the
//! PyTorch state dict and checked against the architecture. Each backend writes it out its own
//! way: [`super::efficientnet`] as an ONNX graph for ONNX Runtime, the CUDA backend as its
//! kernels' weights. One reading of the weights means the backends cannot disagree on the
//! architecture (padding, strides, residuals), only on arithmetic.
//!
//! Lite differs from EfficientNet-B*: ReLU6 instead of swish, no squeeze-excite, fixed stem and
//! head widths. The weights were trained in TensorFlow, so padding is TF "SAME" (the extra
//! pixel of an even split goes bottom/right), computed statically because the input size is
//! fixed. BatchNorm (eps 1e-3) is folded into the preceding convolution: inference runs one
//! convolution per layer.

use std::collections::{BTreeMap, BTreeSet};

use super::pth::Tensor;
use super::{ModelError, ModelKind};

/// ImageNet-1k classes of the classifier.
pub const CLASSES: usize = 1000;
const BN_EPS: f64 = 1e-3;

/// TensorFlow SAME padding along one axis: returns (output size, padding before, padding
/// after). The total is what makes `ceil(input / stride)` outputs; an odd total puts the extra
/// pixel after (bottom/right), unlike PyTorch's symmetric padding.
pub fn same_pads(input: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (out, total / 2, total - total / 2)
}

/// BatchNorm parameters of one layer (inference: running statistics).
pub struct BatchNorm<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub mean: &'a [f32],
    pub var: &'a [f32],
}

/// Folds BatchNorm into a bias-free convolution: `w' = w * s`, `b' = beta - mean * s` per
/// output channel, with `s = gamma / sqrt(var + eps)`. Computed in f64, stored as f32.
/// `weight` is [out, ...] row-major.
pub fn fold_batch_norm(weight: &[f32], bn: &BatchNorm) -> (Vec<f32>, Vec<f32>) {
    let out = bn.gamma.len();
    let per = weight.len() / out.max(1);
    let mut w = Vec::with_capacity(weight.len());
    let mut b = Vec::with_capacity(out);
    for o in 0..out {
        let s = f64::from(bn.gamma[o]) / (f64::from(bn.var[o]) + BN_EPS).sqrt();
        w.extend(
            weight[o * per..(o + 1) * per]
                .iter()
                .map(|&x| (f64::from(x) * s) as f32),
        );
        b.push((f64::from(bn.beta[o]) - f64::from(bn.mean[o]) * s) as f32);
    }
    (w, b)
}

/// One convolution with its BatchNorm folded in, its activation and its residual.
#[derive(Debug, Clone)]
pub struct Conv {
    /// The weights' name in the state dict (`_conv_stem`, `_blocks.3._expand_conv`, ...).
    pub name: String,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    /// One group per channel (the weights are then `[channels, 1, k, k]`).
    pub depthwise: bool,
    /// Spatial side of the input and of the output (square throughout).
    pub in_side: usize,
    pub out_side: usize,
    /// TF SAME padding: (before, after), the same on both axes.
    pub pad: (usize, usize),
    /// `[out, in / groups, k, k]` row-major (OIHW), BatchNorm folded in.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    /// Clamp to [0, 6] after the bias.
    pub relu6: bool,
    /// Adds activation `residual` (the block's input) to the output: see [`Network::convs`].
    pub residual: Option<usize>,
}

impl Conv {
    /// 1x1, stride 1, not depthwise: a matrix product over the pixels.
    pub fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && !self.depthwise
    }

    /// The name of the MBConv block this layer belongs to (`_blocks.3`), if any.
    pub fn block(&self) -> Option<&str> {
        self.name
            .strip_prefix("_blocks.")
            .and_then(|_| self.name.rsplit_once('.'))
            .map(|(block, _)| block)
    }
}

/// The whole inference network for square inputs of one side.
#[derive(Debug, Clone)]
pub struct Network {
    pub kind: ModelKind,
    pub input_size: usize,
    /// The convolutions in order. Activation 0 is the input image; conv `i` reads activation
    /// `i` and writes activation `i + 1` (after its bias, ReLU6 and residual). The last one is
    /// the head, whose output is the feature map.
    pub convs: Vec<Conv>,
    /// The classifier on the average-pooled feature map: `[CLASSES, feature_dim]` row-major.
    pub fc_weight: Vec<f32>,
    pub fc_bias: Vec<f32>,
}

impl Network {
    /// Reads and checks every weight of `kind` for inputs of side `input_size` (the network's
    /// own is `kind.input_size()`; other sides serve multi-scale descriptors). Fails on a
    /// missing, misshapen or unused tensor: weights of another network are never run.
    pub fn from_state_dict(
        kind: ModelKind,
        input_size: usize,
        weights: &BTreeMap<String, Tensor>,
    ) -> Result<Network, ModelError> {
        if input_size < 32 {
            return Err(ModelError::Architecture {
                model: kind.name(),
                what: format!("input side {input_size} is below the network's total stride 32"),
            });
        }
        let mut reader = Reader {
            kind,
            weights,
            used: BTreeSet::new(),
            convs: Vec::new(),
            side: input_size,
            channels: 3,
        };
        reader.conv("_conv_stem", "_bn0", 2, false, true, Some(3))?;
        if reader.channels != kind.stem_channels() {
            return Err(reader.mismatch("_conv_stem", "stem width"));
        }
        let mut block = 0;
        for stage in kind.stages() {
            for r in 0..stage.repeats {
                let p = format!("_blocks.{block}");
                let (input, in_ch) = (reader.convs.len(), reader.channels);
                if stage.expand != 1 {
                    let (conv, bn) = (format!("{p}._expand_conv"), format!("{p}._bn0"));
                    reader.conv(&conv, &bn, 1, false, true, None)?;
                }
                if reader.channels != in_ch * stage.expand {
                    return Err(reader.mismatch(&p, "expansion ratio"));
                }
                let stride = if r == 0 { stage.stride } else { 1 };
                let (conv, bn) = (format!("{p}._depthwise_conv"), format!("{p}._bn1"));
                reader.conv(&conv, &bn, stride, true, true, Some(stage.kernel))?;
                let (conv, bn) = (format!("{p}._project_conv"), format!("{p}._bn2"));
                reader.conv(&conv, &bn, 1, false, false, None)?;
                if reader.channels != stage.out {
                    return Err(reader.mismatch(&p, "output channels"));
                }
                if stride == 1 && in_ch == stage.out {
                    if let Some(last) = reader.convs.last_mut() {
                        last.residual = Some(input);
                    }
                }
                block += 1;
            }
        }
        if weights.contains_key(&format!("_blocks.{block}._project_conv.weight")) {
            return Err(reader.mismatch(
                &format!("_blocks.{block}"),
                "more blocks than the network has",
            ));
        }
        reader.conv("_conv_head", "_bn1", 1, false, true, Some(1))?;
        let dim = reader.channels;
        if dim != kind.feature_dim() {
            return Err(reader.mismatch("_conv_head", "feature width"));
        }
        let fc_weight = reader.tensor("_fc.weight", &[CLASSES, dim])?.data.clone();
        let fc_bias = reader.tensor("_fc.bias", &[CLASSES])?.data.clone();
        let unused: Vec<&String> = weights
            .keys()
            .filter(|k| !reader.used.contains(*k))
            .collect();
        if let Some(first) = unused.first() {
            return Err(reader.mismatch(first, &format!("{} weights left unused", unused.len())));
        }
        Ok(Network {
            kind,
            input_size,
            convs: reader.convs,
            fc_weight,
            fc_bias,
        })
    }

    /// Width of the feature map (the pooled vector's length).
    pub fn feature_dim(&self) -> usize {
        self.convs.last().map_or(0, |c| c.out_channels)
    }

    /// Side of the feature map.
    pub fn feature_side(&self) -> usize {
        self.convs.last().map_or(0, |c| c.out_side)
    }

    /// Values of activation `i` per image (0: the input).
    pub fn activation_len(&self, i: usize) -> usize {
        match i {
            0 => 3 * self.input_size * self.input_size,
            i => {
                let c = &self.convs[i - 1];
                c.out_channels * c.out_side * c.out_side
            }
        }
    }
}

/// Reads the state dict layer by layer, tracking the activation's shape.
struct Reader<'w> {
    kind: ModelKind,
    weights: &'w BTreeMap<String, Tensor>,
    used: BTreeSet<String>,
    convs: Vec<Conv>,
    side: usize,
    channels: usize,
}

impl<'w> Reader<'w> {
    /// Reads conv `conv` and BatchNorm `bn`, checks the weight's shape (and `kernel`, when
    /// given) against the activation so far, and appends the folded layer.
    fn conv(
        &mut self,
        conv: &str,
        bn: &str,
        stride: usize,
        depthwise: bool,
        relu6: bool,
        kernel: Option<usize>,
    ) -> Result<(), ModelError> {
        let w = self.weight(&format!("{conv}.weight"))?;
        let [out, per_group, k, k2] = w.shape[..] else {
            return Err(self.mismatch(conv, "conv weight is not 4-d"));
        };
        let groups = if depthwise { self.channels } else { 1 };
        if k != k2 || kernel.is_some_and(|e| e != k) || per_group * groups != self.channels {
            return Err(self.mismatch(conv, &format!("weight shape {:?}", w.shape)));
        }
        if depthwise && out != self.channels {
            return Err(self.mismatch(conv, "depthwise conv changes the width"));
        }
        let norm = BatchNorm {
            gamma: &self.tensor(&format!("{bn}.weight"), &[out])?.data,
            beta: &self.tensor(&format!("{bn}.bias"), &[out])?.data,
            mean: &self.tensor(&format!("{bn}.running_mean"), &[out])?.data,
            var: &self.tensor(&format!("{bn}.running_var"), &[out])?.data,
        };
        let (weight, bias) = fold_batch_norm(&w.data, &norm);
        let (out_side, before, after) = same_pads(self.side, k, stride);
        self.convs.push(Conv {
            name: conv.to_string(),
            in_channels: self.channels,
            out_channels: out,
            kernel: k,
            stride,
            depthwise,
            in_side: self.side,
            out_side,
            pad: (before, after),
            weight,
            bias,
            relu6,
            residual: None,
        });
        self.side = out_side;
        self.channels = out;
        Ok(())
    }

    fn weight(&mut self, name: &str) -> Result<&'w Tensor, ModelError> {
        self.used.insert(name.to_string());
        self.weights
            .get(name)
            .ok_or_else(|| ModelError::Architecture {
                model: self.kind.name(),
                what: format!("missing tensor `{name}`"),
            })
    }

    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<&'w Tensor, ModelError> {
        let model = self.kind.name();
        let t = self.weight(name)?;
        if t.shape != shape {
            return Err(ModelError::Architecture {
                model,
                what: format!("`{name}` has shape {:?}, expected {shape:?}", t.shape),
            });
        }
        Ok(t)
    }

    fn mismatch(&self, layer: &str, what: &str) -> ModelError {
        ModelError::Architecture {
            model: self.kind.name(),
            what: format!("{layer}: {what}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{pth, testutil};

    #[test]
    fn tensorflow_same_padding() {
        // (input, kernel, stride) -> (output, before, after); odd totals pad after.
        assert_eq!(same_pads(224, 3, 2), (112, 0, 1));
        assert_eq!(same_pads(112, 3, 1), (112, 1, 1));
        assert_eq!(same_pads(56, 5, 2), (28, 1, 2));
        assert_eq!(same_pads(14, 5, 1), (14, 2, 2));
        assert_eq!(same_pads(7, 1, 1), (7, 0, 0));
        // Lite2 (260): odd sizes pad evenly.
        assert_eq!(same_pads(260, 3, 2), (130, 0, 1));
        assert_eq!(same_pads(65, 3, 2), (33, 1, 1));
        assert_eq!(same_pads(33, 5, 2), (17, 2, 2));
        assert_eq!(same_pads(17, 5, 2), (9, 2, 2));
        // Multi-scale sides (Lite0 and Lite2 at 0.75).
        assert_eq!(same_pads(168, 3, 2), (84, 0, 1));
        assert_eq!(same_pads(195, 3, 2), (98, 1, 1));
    }

    #[test]
    fn folded_batch_norm_equals_conv_then_batch_norm() {
        // 1x1 conv, 2 inputs -> 2 outputs, applied to one pixel x = (0.5, -2).
        let w = [1.0f32, 2.0, -3.0, 0.25];
        let x = [0.5f32, -2.0];
        let bn = BatchNorm {
            gamma: &[2.0, 0.5],
            beta: &[0.1, -1.0],
            mean: &[0.3, -0.7],
            var: &[4.0, 0.09],
        };
        let (fw, fb) = fold_batch_norm(&w, &bn);
        for o in 0..2 {
            let conv = w[2 * o] * x[0] + w[2 * o + 1] * x[1];
            let unfolded =
                (conv - bn.mean[o]) / (bn.var[o] + 1e-3).sqrt() * bn.gamma[o] + bn.beta[o];
            let folded = fw[2 * o] * x[0] + fw[2 * o + 1] * x[1] + fb[o];
            assert!(
                (unfolded - folded).abs() < 1e-5,
                "channel {o}: {unfolded} vs {folded}"
            );
        }
        // Hand-computed channel 0: s = 2 / sqrt(4.001).
        let s = 2.0 / 4.001f64.sqrt();
        assert!((f64::from(fw[1]) - 2.0 * s).abs() < 1e-6);
        assert!((f64::from(fb[0]) - (0.1 - 0.3 * s)).abs() < 1e-6);
    }

    fn lite0() -> Network {
        let files = testutil::model_files(ModelKind::Lite0);
        let weights = pth::read_state_dict(&std::fs::read(&files.weights).unwrap()).unwrap();
        Network::from_state_dict(ModelKind::Lite0, 224, &weights).unwrap()
    }

    #[test]
    fn lite0_layers_follow_the_published_architecture() {
        let net = lite0();
        // 1 stem + 15 expand + 16 depthwise + 16 project + 1 head.
        assert_eq!(net.convs.len(), 49);
        let stem = &net.convs[0];
        assert_eq!(
            (
                stem.in_channels,
                stem.out_channels,
                stem.kernel,
                stem.stride
            ),
            (3, 32, 3, 2)
        );
        assert_eq!((stem.in_side, stem.out_side, stem.pad), (224, 112, (0, 1)));
        // The strided depthwise layers, in order, with the sides data.md's stages give.
        let strided: Vec<(usize, usize, usize, (usize, usize))> = net
            .convs
            .iter()
            .filter(|c| c.depthwise && c.stride == 2)
            .map(|c| (c.kernel, c.in_side, c.out_side, c.pad))
            .collect();
        assert_eq!(
            strided,
            [
                (3, 112, 56, (0, 1)),
                (5, 56, 28, (1, 2)),
                (3, 28, 14, (0, 1)),
                (5, 14, 7, (1, 2)),
            ]
        );
        // Residuals: 9 blocks (stride 1, same width), each adding its own input, which is the
        // activation just before its expand conv.
        let residual: Vec<&Conv> = net.convs.iter().filter(|c| c.residual.is_some()).collect();
        assert_eq!(residual.len(), 9);
        for conv in residual {
            let from = conv.residual.unwrap();
            let expand = &net.convs[from];
            assert!(conv.name.ends_with("_project_conv"), "{}", conv.name);
            assert_eq!(expand.block(), conv.block());
            assert!(expand.name.ends_with("_expand_conv"), "{}", expand.name);
            assert_eq!(net.activation_len(from), net.activation_len(from + 3));
        }
        let head = net.convs.last().unwrap();
        assert_eq!((head.name.as_str(), head.relu6), ("_conv_head", true));
        assert_eq!((net.feature_dim(), net.feature_side()), (1280, 7));
        assert_eq!(net.fc_weight.len(), CLASSES * 1280);
        // Project convs are linear; every other layer ends in ReLU6.
        for c in &net.convs {
            assert_eq!(c.relu6, !c.name.ends_with("_project_conv"), "{}", c.name);
            assert_eq!(
                c.weight.len(),
                c.out_channels * c.kernel * c.kernel * {
                    if c.depthwise {
                        1
                    } else {
                        c.in_channels
                    }
                }
            );
        }
    }

    #[test]
    fn too_small_inputs_and_other_networks_are_rejected() {
        let files = testutil::model_files(ModelKind::Lite0);
        let weights = pth::read_state_dict(&std::fs::read(&files.weights).unwrap()).unwrap();
        assert!(Network::from_state_dict(ModelKind::Lite0, 16, &weights).is_err());
        let err = Network::from_state_dict(ModelKind::Lite2, 260, &weights).unwrap_err();
        assert!(matches!(err, ModelError::Architecture { .. }), "{err}");
    }
}
