#!/usr/bin/env python3
"""EfficientNet-Lite0/Lite2 in plain PyTorch: the peer that lookalike's GPU path is measured against.

Two modes:

  torch_peer.py bench [--model lite0] [--weights PTH|random] [--device cuda]
                      [--batch 64,128,256] [--precision fp16,fp32] [--variants eager,folded,graph]
                      [--seconds 2] [--repeats 5]
      Network-only throughput: a random input already on the device, no decoding, no copies.
      Prints one JSON object: {"device", "torch", "cudnn", "model", "weights", "network": [
      {"variant", "precision", "batch", "memory_format", "tf32", "images_per_s", "batches",
      "runs_images_per_s": [...]}]}; images_per_s is the median of the timed runs.

  torch_peer.py check-logits [--model lite0] [--weights PTH] [--onnx GRAPH] [--lookalike BIN]
                             [--model-dir DIR] IMAGE_OR_DIR...
      Proves the peer computes the network lookalike computes: a few real images, preprocessed
      as lookalike and the classic pipeline do (Pillow, JPEG draft, bicubic resize of the shorter
      side to round(S*256/224), centre crop S, (x-127)/128), through the peer in fp32 on the CPU,
      against ONNX Runtime on lookalike's own ONNX graph (same tensors: max |logit diff|, feature
      cosine, same top-1) and, with --lookalike, against `lookalike classify --json -k 1000`
      (its own decoding: top-1 and max |probability diff|). When CUDA is there, the peer's
      CUDA fp32 and fp16 outputs are compared to its CPU fp32 ones too. One JSON object.
      (`--check-logits` is accepted as an alias of `check-logits`.)

The model (what a user writes, efficientnet_pytorch-style, so the .pth loads with strict=True):
TF SAME padding (explicit zero pad, the extra pixel bottom/right, on stride-2 layers; symmetric
padding folded into the conv on stride 1), BatchNorm eps 1e-3, ReLU6, no squeeze-excite,
residual when stride 1 and in == out, head 1x1 to 1280, global average pool, fc to 1000.

Variants for `bench`:
  eager   the module as loaded: Conv2d + BatchNorm2d + ReLU6, what a user runs (default)
  folded  BatchNorm folded into the convolutions (conv with bias), still eager
  graph   folded, captured once as a CUDA graph and replayed (no per-kernel launch cost)
Precisions: fp16 (model.half(), channels_last), fp32 (strict fp32: TF32 off, NCHW), tf32
(fp32 tensors with PyTorch's default TF32 convolutions, NCHW). cudnn.benchmark is on.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# (repeats, kernel, stride, expand, out)
STAGES = {
    "lite0": [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
              (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)],
    "lite2": [(1, 3, 1, 1, 16), (3, 3, 2, 6, 24), (3, 5, 2, 6, 48), (4, 3, 2, 6, 88),
              (4, 5, 1, 6, 120), (5, 5, 2, 6, 208), (1, 3, 1, 6, 352)],
}
INPUT_SIZE = {"lite0": 224, "lite2": 260}
WEIGHTS_FILE = {"lite0": "efficientnet-lite0/efficientnet-lite0-57934424.pth",
                "lite2": "efficientnet-lite2/efficientnet-lite2-9656183e.pth"}
ONNX_FILE = {"lite0": "efficientnet-lite0/efficientnet-lite0.g1.onnx",
             "lite2": "efficientnet-lite2/efficientnet-lite2.g1.onnx"}
STEM, HEAD, CLASSES, BN_EPS = 32, 1280, 1000, 1e-3


def same_pads(size, kernel, stride):
    """TensorFlow SAME: (before, after) with the odd pixel after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv(nn.Conv2d):
    """Conv2d with TF SAME padding: explicit pad when asymmetric (stride 2), else conv padding."""

    def __init__(self, cin, cout, kernel, stride=1, groups=1):
        self.tf_stride = stride
        symmetric = stride == 1 and kernel % 2 == 1
        super().__init__(cin, cout, kernel, stride, padding=kernel // 2 if symmetric else 0,
                         groups=groups, bias=False)
        self.explicit = not symmetric

    def forward(self, x):
        if self.explicit:
            k = self.kernel_size[0]
            ph = same_pads(x.shape[-2], k, self.tf_stride)
            pw = same_pads(x.shape[-1], k, self.tf_stride)
            x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        return super().forward(x)


def bn(c):
    return nn.BatchNorm2d(c, eps=BN_EPS)


class MBConv(nn.Module):
    def __init__(self, cin, cout, kernel, stride, expand):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv(cin, mid, 1)
            self._bn0 = bn(mid)
        self.expand = expand != 1
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = bn(mid)
        self._project_conv = SameConv(mid, cout, 1)
        self._bn2 = bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = x
        if self.expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    def __init__(self, model="lite0"):
        super().__init__()
        self._conv_stem = SameConv(3, STEM, 3, 2)
        self._bn0 = bn(STEM)
        blocks, cin = [], STEM
        for repeats, kernel, stride, expand, cout in STAGES[model]:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(cin, HEAD, 1)
        self._bn1 = bn(HEAD)
        self._fc = nn.Linear(HEAD, CLASSES)

    def forward(self, x):
        """(logits [N,1000], features [N,1280]: the average-pooled head activation)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        features = x.mean((2, 3))
        return self._fc(features), features


def fold_bn(model):
    """Folds every BatchNorm into the conv before it (bias added), replacing the BN by Identity."""
    def fold(conv, norm):
        s = norm.weight.double() / torch.sqrt(norm.running_var.double() + norm.eps)
        w = conv.weight.double() * s.view(-1, 1, 1, 1)
        b = norm.bias.double() - norm.running_mean.double() * s
        conv.weight = nn.Parameter(w.to(conv.weight.dtype), requires_grad=False)
        conv.bias = nn.Parameter(b.to(conv.weight.dtype), requires_grad=False)

    fold(model._conv_stem, model._bn0)
    model._bn0 = nn.Identity()
    for block in model._blocks:
        if block.expand:
            fold(block._expand_conv, block._bn0)
            block._bn0 = nn.Identity()
        fold(block._depthwise_conv, block._bn1)
        block._bn1 = nn.Identity()
        fold(block._project_conv, block._bn2)
        block._bn2 = nn.Identity()
    fold(model._conv_head, model._bn1)
    model._bn1 = nn.Identity()
    return model


def default_model_dir():
    return os.environ.get("LOOKALIKE_MODEL_DIR") or os.path.expanduser("~/.cache/lookalike/models")


def load_model(model, weights):
    """The network with the .pth's weights (torch.load of the legacy file), or random ones."""
    net = EfficientNetLite(model)
    if weights == "random":
        # Speed does not depend on the values; give BN sane statistics so fp16 stays finite.
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_var.fill_(1.0)
        source = "random"
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        # The file's tensors are non-contiguous views (TF memory order); load_state_dict copies
        # them into the module's own contiguous parameters.
        net.load_state_dict(state, strict=True)
        source = os.path.basename(weights)
    return net.eval(), source


def resolve_weights(args):
    if args.weights:
        return args.weights
    path = os.path.join(args.model_dir or default_model_dir(), WEIGHTS_FILE[args.model])
    if os.path.isfile(path):
        return path
    if args.mode == "bench":
        print("torch_peer.py: %s not found: timing with random weights" % path, file=sys.stderr)
        return "random"
    sys.exit("torch_peer.py: weights not found: %s (give --weights or --model-dir)" % path)


# ---------------------------------------------------------------- bench

def set_precision(precision):
    """dtype, memory format and the TF32 switch for one precision name."""
    if precision == "fp16":
        torch.backends.cudnn.allow_tf32 = True
        return torch.float16, torch.channels_last, True
    if precision == "fp32":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        return torch.float32, torch.contiguous_format, False
    if precision == "tf32":
        torch.backends.cudnn.allow_tf32 = True  # PyTorch's default for convolutions
        torch.backends.cuda.matmul.allow_tf32 = False  # and its default for matmul
        return torch.float32, torch.contiguous_format, True
    raise SystemExit("torch_peer.py: unknown precision %r (fp16, fp32, tf32)" % precision)


def bench_one(base, variant, precision, batch, size, device, seconds, repeats):
    dtype, fmt, tf32 = set_precision(precision)
    import copy
    net = copy.deepcopy(base)
    if variant in ("folded", "graph"):
        fold_bn(net)
    net = net.to(device=device, dtype=dtype, memory_format=fmt)
    x = torch.randn(batch, 3, size, size, device=device, dtype=dtype).contiguous(memory_format=fmt)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    with torch.inference_mode():
        if variant == "graph":
            if device.type != "cuda":
                raise RuntimeError("the graph variant needs CUDA")
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):  # cudnn.benchmark picks its algorithms here, before capture
                    net(x)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = net(x)

            def step():
                graph.replay()
        else:
            def step():
                net(x)

        # Warm-up: cudnn.benchmark's search, clocks up, at least 0.5 s.
        sync()
        t0 = time.perf_counter()
        n = 0
        while n < 5 or time.perf_counter() - t0 < 0.5:
            step()
            n += 1
            if n % 5 == 0:
                sync()
        sync()
        per_batch = (time.perf_counter() - t0) / n
        iters = max(3, int(seconds / repeats / max(per_batch, 1e-6)))
        runs = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            for _ in range(iters):
                step()
            sync()
            runs.append(batch * iters / (time.perf_counter() - t0))
    del net, x
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "variant": variant, "precision": precision, "batch": batch,
        "memory_format": "channels_last" if fmt is torch.channels_last else "nchw",
        "tf32": tf32, "images_per_s": round(statistics.median(runs), 1),
        "batches": iters * repeats, "runs_images_per_s": [round(r, 1) for r in runs],
    }


def cmd_bench(args):
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_peer.py: CUDA is not available to this PyTorch")
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # synchronize() and the graph pool follow the current device
    torch.backends.cudnn.benchmark = True
    base, source = load_model(args.model, resolve_weights(args))
    size = args.size or INPUT_SIZE[args.model]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    results = []
    for variant in split(args.variants):
        for precision in split(args.precision):
            for batch in [int(b) for b in split(args.batch)]:
                try:
                    r = bench_one(base, variant, precision, batch, size, device,
                                  args.seconds, args.repeats)
                except Exception as e:  # noqa: BLE001 - report and go on with the rest
                    r = {"variant": variant, "precision": precision, "batch": batch,
                         "error": "%s: %s" % (type(e).__name__, e)}
                print("torch_peer.py: %s" % json.dumps(r), file=sys.stderr, flush=True)
                results.append(r)
    print(json.dumps({
        "device": name, "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "model": "efficientnet-" + args.model, "input_size": size, "weights": source,
        "network": results,
    }))


# ---------------------------------------------------------------- check-logits

EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def find_images(paths, limit):
    out = []
    for p in paths:
        if os.path.isdir(p):
            for dp, dns, fns in os.walk(p):
                dns.sort()
                out += [os.path.join(dp, f) for f in sorted(fns) if f.lower().endswith(EXTS)]
        elif os.path.isfile(p):
            out.append(p)
    return out[:limit]


def preprocess(path, size):
    """The classic pipeline's preprocess (what src/image/preprocess.rs reproduces)."""
    import numpy as np
    from PIL import Image
    Image.MAX_IMAGE_PIXELS = None
    short = round(size * 256 / 224)
    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft("RGB", (short, short))  # DCT-domain downscale; result stays >= short
        im = to_rgb_on_white(im)
    w, h = im.size
    s = short / min(w, h)
    nw, nh = max(short, round(w * s)), max(short, round(h * s))
    im = im.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    im = im.crop((left, top, left + size, top + size))
    a = (np.asarray(im, dtype=np.float32) - 127.0) / 128.0
    return a.transpose(2, 0, 1)


def to_rgb_on_white(im):
    import numpy as np
    from PIL import Image
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float32)
        im = Image.fromarray(np.clip(a / max(a.max(), 1) * 255, 0, 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        bg.alpha_composite(im)
        im = bg
    return im.convert("RGB")


def cosine_rows(a, b):
    a = a.double()
    b = b.double()
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)


def compare(ref_logits, ref_feats, logits, feats):
    return {
        "max_abs_logit_diff": float((ref_logits - logits).abs().max()),
        "max_logit": float(ref_logits.abs().max()),
        "feature_cosine_min": float(cosine_rows(ref_feats, feats).min()),
        "top1_same": int((ref_logits.argmax(1) == logits.argmax(1)).sum()),
    }


def cmd_check(args):
    import numpy as np
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    model_dir = args.model_dir or default_model_dir()
    net, source = load_model(args.model, resolve_weights(args))
    size = INPUT_SIZE[args.model]
    files = find_images(args.images, args.limit)
    if not files:
        sys.exit("torch_peer.py: no images found in %s" % args.images)
    x_np = np.stack([preprocess(f, size) for f in files])
    x = torch.from_numpy(x_np)
    with torch.inference_mode():
        logits, feats = net(x)
    report = {"model": "efficientnet-" + args.model, "weights": source, "images": len(files),
              "torch": torch.__version__, "peer_top1": [int(i) for i in logits.argmax(1)]}
    ok = True

    # 1. ONNX Runtime on lookalike's own graph, same input tensors.
    onnx = args.onnx or os.path.join(model_dir, ONNX_FILE[args.model])
    try:
        import onnxruntime as ort
        sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
        ort_logits, ort_feats = sess.run(["logits", "features"], {"input": x_np})
        c = compare(torch.from_numpy(ort_logits), torch.from_numpy(ort_feats), logits, feats)
        c["onnx"] = onnx
        c["onnxruntime"] = ort.__version__
        c["pass"] = (c["max_abs_logit_diff"] < 1e-2 and c["feature_cosine_min"] > 0.99999
                     and c["top1_same"] == len(files))
        ok &= c["pass"]
        report["vs_onnxruntime"] = c
    except Exception as e:  # noqa: BLE001
        report["vs_onnxruntime"] = {"error": "%s: %s" % (type(e).__name__, e)}
        ok = False

    # 2. lookalike classify: its own decoding and preprocessing, its own runtime.
    if args.lookalike:
        try:
            cmd = [args.lookalike, "--model-dir", model_dir, "classify", "--json", "-k", "1000",
                   "--model", args.model] + files
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if out.returncode not in (0, 2):
                raise RuntimeError("exit %d: %s" % (out.returncode, out.stderr.strip()[-500:]))
            probs = torch.zeros(len(files), CLASSES, dtype=torch.float64)
            lines = [json.loads(l) for l in out.stdout.splitlines() if l.strip()]
            for i, line in enumerate(lines):
                for c in line.get("classes", []):
                    probs[i, int(c["class"])] = float(c["probability"])
            peer = torch.softmax(logits.double(), 1)
            diff = (peer - probs).abs().max(1).values
            c = {
                "top1_same": int((peer.argmax(1) == probs.argmax(1)).sum()),
                "max_abs_prob_diff": float(diff.max()),
                "median_abs_prob_diff": float(diff.median()),
                "lookalike_top1": [int(i) for i in probs.argmax(1)],
            }
            # Decoders differ (libjpeg-turbo scaled decode vs Pillow's draft), so this is loose.
            c["pass"] = c["top1_same"] >= len(files) - 1 and c["max_abs_prob_diff"] < 0.2
            ok &= c["pass"]
            report["vs_lookalike_classify"] = c
        except Exception as e:  # noqa: BLE001
            report["vs_lookalike_classify"] = {"error": "%s: %s" % (type(e).__name__, e)}
            ok = False

    # 3. The folded variant (what `bench --variants folded,graph` runs) against the eager one.
    import copy
    with torch.inference_mode():
        fl, ff = fold_bn(copy.deepcopy(net))(x)
    c = compare(logits, feats, fl, ff)
    c["pass"] = c["max_abs_logit_diff"] < 1e-2 and c["top1_same"] == len(files)
    ok &= c["pass"]
    report["folded_vs_eager"] = c

    # 4. The peer itself on CUDA (fp32 strict, fp16) against its CPU fp32 result.
    if torch.cuda.is_available() and not args.no_cuda:
        report["cuda"] = {}
        for precision in ("fp32", "fp16"):
            try:
                dtype, fmt, _ = set_precision(precision)
                torch.backends.cudnn.allow_tf32 = False
                gnet = copy.deepcopy(net).to(device="cuda", dtype=dtype, memory_format=fmt)
                with torch.inference_mode():
                    gl, gf = gnet(x.to(device="cuda", dtype=dtype).contiguous(memory_format=fmt))
                c = compare(logits, feats, gl.float().cpu(), gf.float().cpu())
                report["cuda"][precision] = c
            except Exception as e:  # noqa: BLE001
                report["cuda"][precision] = {"error": "%s: %s" % (type(e).__name__, e)}
    report["pass"] = bool(ok)
    print(json.dumps(report))
    return 0 if ok else 1


# ---------------------------------------------------------------- main

def split(s):
    return [p.strip() for p in str(s).split(",") if p.strip()]


def main(argv):
    argv = ["check-logits" if a == "--check-logits" else a for a in argv]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    for name in ("bench", "check-logits"):
        s = sub.add_parser(name)
        s.add_argument("--model", default="lite0", choices=sorted(STAGES))
        s.add_argument("--weights", help="the .pth (default: from the model store), or 'random'")
        s.add_argument("--model-dir", help="lookalike's model store [LOOKALIKE_MODEL_DIR]")
        s.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    b = sub.choices["bench"]
    b.add_argument("--device", default="cuda")
    b.add_argument("--batch", default="64,128,256")
    b.add_argument("--precision", default="fp16,fp32")
    b.add_argument("--variants", default="eager")
    b.add_argument("--seconds", type=float, default=2.0, help="timed seconds per configuration")
    b.add_argument("--repeats", type=int, default=5, help="timed runs per configuration")
    b.add_argument("--size", type=int, help="input side (default: the model's)")
    c = sub.choices["check-logits"]
    c.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    c.add_argument("--limit", type=int, default=12)
    c.add_argument("--onnx", help="ONNX graph (default: the model store's)")
    c.add_argument("--lookalike", help="lookalike binary: also compare with its classify")
    c.add_argument("--no-cuda", action="store_true", help="skip the CUDA comparison")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mode == "bench":
        cmd_bench(args)
        return 0
    return cmd_check(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
