//! The GPU's arithmetic on the CPU: runs a [`Plan`] step by step, in its buffers, reading and
//! writing values exactly where and at the precision the kernels in `kernels.cu` do (f32
//! sums, results rounded when stored). Checked against ONNX Runtime on real photos, it shows
//! that the plan (layouts, padding, buffers, residuals) computes the network, and how far fp16
//! storage moves the vectors, on machines without a GPU.

use super::super::input::scaled;
use super::super::network::Conv;
use super::super::Precision;
use super::plan::{Op, Plan, RegionWindows, Slot, Step};

/// What one pass gives: average-pooled features (not normalised), logits, and the feature
/// map as stored (NHWC).
pub struct Outputs {
    pub features: Vec<f32>,
    pub logits: Vec<f32>,
    pub feature_map: Vec<f32>,
}

/// Runs `plan` on `n` images of 8-bit `input` (see `model::input`).
pub fn run(plan: &Plan, input: &[u8], n: usize) -> Outputs {
    let p = plan.precision;
    let mut buffers: Vec<Vec<f32>> = plan.buffer_lens.iter().map(|&l| vec![0.0; l * n]).collect();
    for step in &plan.steps {
        let conv = &plan.network.convs[step.conv];
        let Slot::Buffer(out_b) = step.output else {
            unreachable!("the plan never writes the input")
        };
        let mut out = std::mem::take(&mut buffers[out_b]);
        let read = |slot: Slot| -> &[f32] {
            match slot {
                Slot::Input => unreachable!("only the stem reads the input"),
                Slot::Buffer(b) => &buffers[b],
            }
        };
        let len = n * conv.out_channels * conv.out_side * conv.out_side;
        match step.op {
            Op::Stem => stem(step, conv, input, n, &mut out[..len], p),
            Op::Depthwise => depthwise(step, conv, read(step.input), n, &mut out[..len], p),
            Op::Pointwise => {
                let rows = n * conv.in_side * conv.in_side;
                pointwise(
                    &step.weight,
                    read(step.input),
                    rows,
                    conv.in_channels,
                    conv.out_channels,
                    &mut out[..len],
                );
                // cuBLAS stores the product at the plan's precision, then the epilogue runs.
                let residual = step.residual.map(read);
                for (i, y) in out[..len].iter_mut().enumerate() {
                    let v = p.round(*y) + conv.bias[i % conv.out_channels];
                    let v = if conv.relu6 { v.clamp(0.0, 6.0) } else { v };
                    let v = residual.map_or(v, |r| v + r[i]);
                    *y = p.round(v);
                }
            }
        }
        buffers[out_b] = out;
    }
    let net = &plan.network;
    let (dim, pixels) = (net.feature_dim(), net.feature_side() * net.feature_side());
    let Slot::Buffer(fm) = plan.feature_map() else {
        unreachable!("the head writes a buffer")
    };
    let feature_map = buffers[fm][..n * pixels * dim].to_vec();
    let mut features = vec![0.0f32; n * dim];
    for (b, row) in features.chunks_mut(dim).enumerate() {
        for (c, f) in row.iter_mut().enumerate() {
            let sum: f32 = (0..pixels)
                .map(|q| feature_map[(b * pixels + q) * dim + c])
                .sum();
            *f = sum / pixels as f32;
        }
    }
    let classes = net.fc_bias.len();
    let mut logits = vec![0.0f32; n * classes];
    pointwise(&net.fc_weight, &features, n, dim, classes, &mut logits);
    for (i, l) in logits.iter_mut().enumerate() {
        *l += net.fc_bias[i % classes];
    }
    Outputs {
        features,
        logits,
        feature_map,
    }
}

/// GeM over `cells` of image `b`'s NHWC `map` for channel `c`, as `gem_pool` and
/// `region_pool` compute it: f32 sums of `max(x, eps)^p`.
fn gem(
    map: &[f32],
    cells: impl Iterator<Item = usize>,
    count: usize,
    c: usize,
    dim: usize,
    p: f32,
) -> f32 {
    let sum: f32 = cells
        .map(|q| {
            map[q * dim + c]
                .max(crate::descriptor::pooling::GEM_EPS)
                .powf(p)
        })
        .sum();
    (sum / count as f32).powf(1.0 / p)
}

/// The GPU's GeM pooling of `n` NHWC feature maps (`side` x `side` x `dim`) to `[n, dim]`.
pub fn gem_pool(map: &[f32], n: usize, side: usize, dim: usize, p: f32) -> Vec<f32> {
    let pixels = side * side;
    (0..n * dim)
        .map(|i| {
            let (b, c) = (i / dim, i % dim);
            gem(map, b * pixels..(b + 1) * pixels, pixels, c, dim, p)
        })
        .collect()
}

/// The GPU's region pooling: `[n, windows, dim]`, not normalised.
pub fn region_pool(
    map: &[f32],
    n: usize,
    side: usize,
    dim: usize,
    regions: &RegionWindows,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * regions.windows.len() * dim);
    for b in 0..n {
        for &[y0, x0, w] in &regions.windows {
            for c in 0..dim {
                let cells =
                    (y0..y0 + w).flat_map(|y| (x0..x0 + w).map(move |x| (b * side + y) * side + x));
                out.push(gem(map, cells, w * w, c, dim, regions.p));
            }
        }
    }
    out
}

/// A k x k convolution with stride and TF SAME padding, as `convolve` in `kernels.cu`: each
/// output value of NHWC `out` is its channel's bias plus `tap(b, ch, t, iy, ix)` (t = ky * k +
/// kx) over the taps inside the input, then ReLU6 when the layer has it, stored at `p`.
fn convolve(
    conv: &Conv,
    n: usize,
    out: &mut [f32],
    p: Precision,
    tap: impl Fn(usize, usize, usize, usize, usize) -> f32,
) {
    let (c, k, s, so) = (conv.out_channels, conv.kernel, conv.in_side, conv.out_side);
    // Input pixel along one axis for output `o` and tap `t`, if inside the image.
    let source = |o: usize, t: usize| {
        (o * conv.stride + t)
            .checked_sub(conv.pad.0)
            .filter(|&i| i < s)
    };
    for (i, y) in out[..n * so * so * c].iter_mut().enumerate() {
        let (ch, pixel) = (i % c, i / c);
        let (ox, oy, b) = (pixel % so, (pixel / so) % so, pixel / (so * so));
        let mut acc = conv.bias[ch];
        for ky in 0..k {
            let Some(iy) = source(oy, ky) else { continue };
            for kx in 0..k {
                let Some(ix) = source(ox, kx) else { continue };
                acc += tap(b, ch, ky * k + kx, iy, ix);
            }
        }
        *y = p.round(if conv.relu6 { acc.clamp(0.0, 6.0) } else { acc });
    }
}

/// The stem: 8-bit packed RGB input, weights `[in][k][k][out]`.
fn stem(step: &Step, conv: &Conv, x: &[u8], n: usize, out: &mut [f32], p: Precision) {
    let (ci, co, s, taps) = (
        conv.in_channels,
        conv.out_channels,
        conv.in_side,
        conv.kernel * conv.kernel,
    );
    convolve(conv, n, out, p, |b, o, t, iy, ix| {
        (0..ci)
            .map(|c| {
                step.weight[(c * taps + t) * co + o] * scaled(x[((b * s + iy) * s + ix) * ci + c])
            })
            .sum()
    });
}

/// A depthwise layer: NHWC input, weights `[k*k][C]`.
fn depthwise(step: &Step, conv: &Conv, x: &[f32], n: usize, out: &mut [f32], p: Precision) {
    let (c, s) = (conv.out_channels, conv.in_side);
    convolve(conv, n, out, p, |b, ch, t, iy, ix| {
        step.weight[t * c + ch] * x[((b * s + iy) * s + ix) * c + ch]
    });
}

/// `y[rows, out] = x[rows, in] * w[out, in]^T`, f32 sums (what cuBLAS computes for both
/// precisions, before storing).
fn pointwise(w: &[f32], x: &[f32], rows: usize, inputs: usize, outputs: usize, y: &mut [f32]) {
    // SAFETY: the slices hold rows*inputs, outputs*inputs and rows*outputs values, and the
    // strides below stay inside them.
    unsafe {
        matrixmultiply::sgemm(
            rows,
            inputs,
            outputs,
            1.0,
            x.as_ptr(),
            inputs as isize,
            1,
            w.as_ptr(),
            1,
            inputs as isize,
            0.0,
            y.as_mut_ptr(),
            outputs as isize,
            1,
        );
    }
}
