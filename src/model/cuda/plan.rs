//! How the GPU runs a [`Network`]: which kernel each layer becomes, where each activation
//! lives, and the weights in the layouts those kernels read. Plain data, built and checked on
//! any machine: the CPU reference in the tests runs the same plan with the GPU's rounding.
//!
//! Activations are NHWC (channels innermost): a 1x1 convolution is then one matrix product
//! over all pixels of the batch (cuBLAS), and the depthwise kernel reads neighbouring channels
//! from neighbouring threads. Only the stem reads the input, the batch's 8-bit packed RGB
//! crops (`model::input`), so it also scales them to the network's values.

use super::super::network::{Conv, Network};
use super::super::{ModelError, Precision};

/// Where an activation is: the 8-bit input, or one of the plan's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Input,
    Buffer(usize),
}

/// The kernel a layer runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A full convolution reading the 8-bit input, writing NHWC (the stem).
    Stem,
    /// One filter per channel, with its bias, ReLU6 and TF SAME padding in the kernel.
    Depthwise,
    /// A 1x1 convolution: a matrix product, then the bias/ReLU6/residual kernel in place.
    Pointwise,
}

/// One layer of the plan.
#[derive(Debug, Clone)]
pub struct Step {
    /// Index into [`Network::convs`].
    pub conv: usize,
    pub op: Op,
    pub input: Slot,
    pub output: Slot,
    pub residual: Option<Slot>,
    /// The weights as the kernel reads them, f32 with the output channel innermost for the
    /// stem (`[in][k][k][out]`) and depthwise (`[k*k][C]`) kernels, whose neighbouring threads
    /// compute neighbouring channels; `[out][in]` at the plan's precision for pointwise.
    pub weight: Vec<f32>,
}

/// What the GPU pools the feature map into, besides the average that feeds the classifier:
/// the descriptor's own pooling, so that only vectors come back (a feature map is ~50 times
/// larger than its vector, and pooling it on the CPU cost 1.4 ms per image on one core).
#[derive(Debug, Clone, PartialEq)]
pub struct Pooled {
    pub global: Global,
    /// Region descriptors: GeM over these windows of the map.
    pub regions: Option<RegionWindows>,
}

/// The global vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Global {
    Average,
    /// GeM with this power.
    Gem(f32),
    /// Copy the feature map back and pool on the CPU (max and the regional poolings, which
    /// no default uses).
    Map,
}

/// Region windows `(y, x, side)` on the feature map, pooled with GeM at power `p`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionWindows {
    pub windows: Vec<[usize; 3]>,
    pub p: f32,
}

impl RegionWindows {
    /// The region descriptors' windows on a map `map_side` cells wide, at their GeM power
    /// (see [`crate::descriptor::regions`]).
    pub fn of_regions(map_side: usize) -> Self {
        use crate::descriptor::regions;
        RegionWindows {
            windows: regions::windows(map_side)
                .iter()
                .map(|w| [w.y, w.x, w.side])
                .collect(),
            p: regions::GEM_P as f32,
        }
    }
}

/// The whole pass.
#[derive(Debug, Clone)]
pub struct Plan {
    pub network: Network,
    pub precision: Precision,
    pub steps: Vec<Step>,
    /// Values per image of each buffer (the largest activation it ever holds).
    pub buffer_lens: Vec<usize>,
}

impl Plan {
    /// Chooses a kernel for every layer and a buffer for every activation: an activation's
    /// buffer is not reused until its last reader (the next layer, or a residual add later)
    /// has run, and no layer writes a buffer it reads.
    pub fn new(network: Network, precision: Precision) -> Result<Plan, ModelError> {
        let convs = &network.convs;
        // last_use[a]: the last step reading activation a.
        let mut last_use: Vec<usize> = (0..=convs.len()).collect();
        for (i, conv) in convs.iter().enumerate() {
            if let Some(r) = conv.residual {
                last_use[r] = last_use[r].max(i);
            }
        }
        let mut slots = vec![Slot::Input];
        // What each buffer holds now (an activation index) and its size so far.
        let mut held: Vec<Option<usize>> = Vec::new();
        let mut buffer_lens: Vec<usize> = Vec::new();
        let mut steps = Vec::with_capacity(convs.len());
        for (i, conv) in convs.iter().enumerate() {
            let unsupported = |what: &str| ModelError::Architecture {
                model: network.kind.name(),
                what: format!("{}: {what}", conv.name),
            };
            let op =
                op_of(i, conv).ok_or_else(|| unsupported("no GPU kernel for this convolution"))?;
            // Only the stem reads the 8-bit input; a residual adds activations.
            if conv.residual == Some(0) {
                return Err(unsupported("a residual from the input"));
            }
            let free = held.iter().position(|h| h.is_none_or(|a| last_use[a] < i));
            let b = free.unwrap_or_else(|| {
                held.push(None);
                buffer_lens.push(0);
                held.len() - 1
            });
            held[b] = Some(i + 1);
            buffer_lens[b] = buffer_lens[b].max(network.activation_len(i + 1));
            slots.push(Slot::Buffer(b));
            steps.push(Step {
                conv: i,
                op,
                input: slots[i],
                output: Slot::Buffer(b),
                residual: conv.residual.map(|r| slots[r]),
                weight: match op {
                    Op::Stem | Op::Depthwise => channels_innermost(conv),
                    Op::Pointwise => conv.weight.iter().map(|&w| precision.round(w)).collect(),
                },
            });
        }
        Ok(Plan {
            network,
            precision,
            steps,
            buffer_lens,
        })
    }

    /// The buffer holding the feature map (the head's output).
    pub fn feature_map(&self) -> Slot {
        self.steps.last().map_or(Slot::Input, |s| s.output)
    }

    /// Device bytes the activations of a batch of `n` take.
    pub fn activation_bytes(&self, n: usize) -> usize {
        let input = n * self.network.activation_len(0);
        input + self.buffer_lens.iter().sum::<usize>() * n * self.precision.bytes()
    }
}

/// Only the first layer reads the 8-bit input, so only it may be the stem, and it can be
/// nothing else.
fn op_of(i: usize, conv: &Conv) -> Option<Op> {
    if i == 0 {
        (!conv.depthwise).then_some(Op::Stem)
    } else if conv.depthwise {
        Some(Op::Depthwise)
    } else if conv.is_pointwise() {
        Some(Op::Pointwise)
    } else {
        None
    }
}

/// OIHW weights `[out][in / groups][k][k]` as `[in / groups][k][k][out]`: the threads of one
/// pixel (consecutive output channels) read consecutive weights. For a depthwise layer that is
/// `[k*k][C]`.
fn channels_innermost(conv: &Conv) -> Vec<f32> {
    let out_ch = conv.out_channels;
    let per_out = conv.weight.len() / out_ch.max(1);
    let mut out = vec![0.0; conv.weight.len()];
    for o in 0..out_ch {
        for j in 0..per_out {
            out[j * out_ch + o] = conv.weight[o * per_out + j];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{pth, testutil, ModelKind};

    fn network(kind: ModelKind) -> Network {
        let files = testutil::model_files(kind);
        let weights = pth::read_state_dict(&std::fs::read(&files.weights).unwrap()).unwrap();
        Network::from_state_dict(kind, kind.input_size(), &weights).unwrap()
    }

    #[test]
    fn no_layer_overwrites_an_activation_still_to_be_read() {
        for kind in ModelKind::ALL {
            let plan = Plan::new(network(kind), Precision::Fp16).unwrap();
            // Replay the plan: which activation each buffer holds after each step.
            let mut holds: Vec<Option<usize>> = vec![None; plan.buffer_lens.len()];
            let mut slot_of = vec![Slot::Input];
            for (i, step) in plan.steps.iter().enumerate() {
                let Slot::Buffer(out) = step.output else {
                    panic!("step {i} writes the input");
                };
                assert_ne!(Some(step.output), step.residual, "step {i}");
                assert_ne!(step.output, step.input, "step {i}");
                // The inputs are still where they were written.
                assert_eq!(step.input, slot_of[i], "step {i}");
                if let (Some(slot), Some(r)) = (step.residual, plan.network.convs[i].residual) {
                    assert_eq!(slot, slot_of[r], "residual of step {i}");
                    if let Slot::Buffer(b) = slot {
                        assert_eq!(holds[b], Some(r), "step {i}: residual overwritten");
                    }
                }
                if let Slot::Buffer(b) = step.input {
                    assert_eq!(holds[b], Some(i), "step {i}: input overwritten");
                }
                assert!(plan.buffer_lens[out] >= plan.network.activation_len(i + 1));
                holds[out] = Some(i + 1);
                slot_of.push(step.output);
            }
            // A chain with one skip at a time needs three buffers.
            assert_eq!(plan.buffer_lens.len(), 3, "{kind:?}");
            assert_eq!(plan.feature_map(), slot_of[plan.steps.len()]);
        }
    }

    #[test]
    fn kernels_and_weight_layouts() {
        let plan = Plan::new(network(ModelKind::Lite0), Precision::Fp16).unwrap();
        let count = |op: Op| plan.steps.iter().filter(|s| s.op == op).count();
        assert_eq!(
            (count(Op::Stem), count(Op::Depthwise), count(Op::Pointwise)),
            (1, 16, 32)
        );
        // Depthwise: weight[t][c] is the OIHW weight [c][0][t / k][t % k].
        let (i, step) = plan
            .steps
            .iter()
            .enumerate()
            .find(|(_, s)| s.op == Op::Depthwise && plan.network.convs[s.conv].kernel == 5)
            .unwrap();
        let conv = &plan.network.convs[i];
        let c = conv.out_channels;
        for (ch, t) in [(0, 0), (3, 7), (c - 1, 24)] {
            assert_eq!(step.weight[t * c + ch], conv.weight[ch * 25 + t]);
        }
        // Stem: weight[((c * k + ky) * k + kx) * 32 + o] is the OIHW weight [o][c][ky][kx].
        let (stem, conv) = (&plan.steps[0], &plan.network.convs[0]);
        for (o, c, ky, kx) in [(0, 0, 0, 0), (5, 2, 1, 0), (31, 1, 2, 2)] {
            assert_eq!(
                stem.weight[((c * 3 + ky) * 3 + kx) * 32 + o],
                conv.weight[((o * 3 + c) * 3 + ky) * 3 + kx]
            );
        }
        // Pointwise weights are stored in fp16: rounded, and within half an fp16 ulp.
        let step = plan.steps.iter().find(|s| s.op == Op::Pointwise).unwrap();
        let conv = &plan.network.convs[step.conv];
        let mut changed = 0;
        for (&w, &original) in step.weight.iter().zip(&conv.weight) {
            assert_eq!(half::f16::from_f32(w).to_f32(), w);
            assert!((w - original).abs() <= original.abs() / 2048.0 + 3e-8);
            changed += usize::from(w != original);
        }
        assert!(changed > step.weight.len() / 2, "{changed} weights rounded");
        // fp32 keeps them exactly.
        let plan32 = Plan::new(plan.network.clone(), Precision::Fp32).unwrap();
        assert_eq!(plan32.steps[step.conv].weight, conv.weight);
        // Batch of 256 at fp16: the 8-bit input plus three buffers, all under 2 GB.
        assert!(plan.activation_bytes(256) < 2 << 30);
    }

    #[test]
    fn only_the_first_layer_may_read_the_input() {
        // The kernels read the input as bytes: a network that adds it to a later activation,
        // or starts with a depthwise layer, has no plan.
        let mut residual = network(ModelKind::Lite0);
        residual.convs[2].residual = Some(0);
        let mut depthwise = network(ModelKind::Lite0);
        depthwise.convs[0].depthwise = true;
        for (what, network) in [("residual", residual), ("depthwise", depthwise)] {
            let refused = Plan::new(network, Precision::Fp16).expect_err(what);
            assert!(
                matches!(refused, ModelError::Architecture { .. }),
                "{what}: {refused}"
            );
        }
    }
}
