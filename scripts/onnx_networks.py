#!/usr/bin/env python3
"""Export torchvision CNNs (random weights, fixed seed) to ONNX, with an onnxruntime reference.

For each network writes the backend-test layout:

    <dir>/model.onnx
    <dir>/test_data_set_0/input_0.pb     (onnx TensorProto, float32 [1,3,224,224])
    <dir>/test_data_set_0/output_0.pb    (onnxruntime output, graph optimizations disabled)

squeezenet1_0 and mobilenet_v2 go to tests/onnx/networks/<name>/ (committed); the others
(resnet18, and the networks that need the ops of issue 14: mobilenet_v3_small/large,
shufflenet_v2_x1_0, mnasnet1_0, efficientnet_b0, convnext_tiny) go to
--out-uncommitted/<name> (default /work/onnx-extra/<name>), outside the repository; the Rust
tests read them with CNN_ONNX_EXTRA set to that folder.

Weights: torchvision's own init (weights=None) under torch.manual_seed, then every
BatchNorm gets random running_mean (normal*0.1), running_var (uniform 0.5..1.5),
gamma (uniform 0.5..1.5) and beta (normal*0.1), and every conv/linear bias is set to
normal*0.1, so a bug in BN or bias handling cannot hide. Then, in one forward pass on the
fixed input, each Conv/Linear weight is rescaled so that its bias-free output has std 1
(the final classifier: std 2), LSUV-style; this keeps activations O(1) through the network
and the logits O(1)-O(10). The model is exported with the legacy TorchScript exporter,
opset 17, do_constant_folding=True, training=TrainingMode.PRESERVE on an eval() model, which
keeps the BatchNormalization nodes (TrainingMode.EVAL would fold them into the convs).

Usage (from the repository root):
    /work/venv/bin/python scripts/onnx_networks.py [--out tests/onnx/networks]
        [--out-uncommitted /work/onnx-extra/resnet18] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision
from onnx import numpy_helper

OPSET = 17
SEED = 20240601
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_conformance import SUPPORTED  # noqa: E402  (one list of the ops the engine reads)

# Networks whose default-exporter (--dynamo) file is committed beside the legacy ones.
DYNAMO_COMMITTED = {"mobilenet_v3_small"}

# name -> committed (True) or written to --out-uncommitted/<name> (False)
NETWORKS = {
    "squeezenet1_0": True, "mobilenet_v2": True, "resnet18": False,
    "mobilenet_v3_small": False, "mobilenet_v3_large": False, "shufflenet_v2_x1_0": False,
    "mnasnet1_0": False, "efficientnet_b0": False, "convnext_tiny": False,
    # A segmentation model: bilinear Resize to sizes computed in the graph.
    "lraspp_mobilenet_v3_large": False,
}


class SegmentationOut(torch.nn.Module):
    """A torchvision segmentation model with its `out` map as the one output."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def build(name: str, x: torch.Tensor) -> torch.nn.Module:
    torch.manual_seed(SEED)
    if hasattr(torchvision.models.segmentation, name):
        ctor = getattr(torchvision.models.segmentation, name)
        model = SegmentationOut(ctor(weights=None, weights_backbone=None))
    else:
        model = getattr(torchvision.models, name)(weights=None)
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                n = mod.num_features
                mod.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                mod.weight.copy_(torch.rand(n, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(n, generator=g) * 0.1)
            elif isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) and mod.bias is not None:
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.1)
    model.eval()

    # LSUV-style rescale in a single pass: each layer sees its already-rescaled inputs.
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    last = layers[-1]

    def hook(mod, _inp, out):
        if mod.bias is None:
            b = 0
        elif isinstance(mod, torch.nn.Linear):  # features last (convnext runs it on NHWC)
            b = mod.bias
        else:
            b = mod.bias.view(1, -1, *([1] * (out.dim() - 2)))
        nb = out - b
        target = 2.0 if mod is last else 1.0
        s = target / nb.std().item()
        mod.weight.mul_(s)
        return nb * s + b

    hs = [m.register_forward_hook(hook) for m in layers]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return model


def export(model: torch.nn.Module, x: torch.Tensor) -> onnx.ModelProto:
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation, PRESERVE+folding note
        torch.onnx.export(
            model, (x,), f,
            dynamo=False,
            opset_version=OPSET,
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.PRESERVE,
            keep_initializers_as_inputs=False,
            input_names=["input"],
            output_names=["output"],
        )
    m = onnx.load_from_string(f.getvalue())
    onnx.checker.check_model(m)
    return m


def export_dynamo(model: torch.nn.Module, x: torch.Tensor, path: str) -> None:
    """torch.onnx.export's default (dynamo) exporter, as a user runs it: its own opset (20 with
    torch 2.15), BatchNorm folded, the weights in `model.onnx.data` beside the model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(model, (x,), dynamo=True, input_names=["input"],
                                 output_names=["output"], verbose=False)
    prog.save(path, external_data=True)


def ort_run(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def describe(name: str, m: onnx.ModelProto, path: str) -> None:
    g = m.graph
    ops = collections.Counter(n.op_type for n in g.node)
    bn_stats, bn_affine = set(), set()
    for n in g.node:
        if n.op_type == "BatchNormalization":
            bn_affine.update(n.input[1:3])
            bn_stats.update(n.input[3:5])
            tm = [a for a in n.attribute if a.name == "training_mode"]
            assert not tm or tm[0].i == 0, "BatchNormalization in training mode"
            assert len(n.output) == 1, "BatchNormalization with running-stat outputs"
    el = collections.Counter()
    for t in g.initializer:
        k = "bn_mean_var" if t.name in bn_stats else "bn_scale_bias" if t.name in bn_affine else "other"
        el[k] += int(np.prod(t.dims))
    consts = sum(1 for n in g.node if n.op_type == "Constant")
    outside = sorted(set(ops) - SUPPORTED)
    print(f"== {name}: opset {m.opset_import[0].version}, ir_version {m.ir_version}, "
          f"producer {m.producer_name} {m.producer_version}")
    print(f"   ops ({len(g.node)} nodes): " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
    print(f"   ops outside the supported set: {outside or 'none'}")
    print(f"   initializers: {len(g.initializer)}, float elements: "
          f"{sum(el.values())} = BN mean/var {el['bn_mean_var']} + BN scale/bias "
          f"{el['bn_scale_bias']} + other {el['other']}; Constant nodes: {consts}")
    print(f"   graph inputs: {[i.name for i in g.input]}, outputs: {[o.name for o in g.output]}")
    print(f"   model.onnx: {os.path.getsize(path) / 1e6:.2f} MB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/onnx/networks")
    ap.add_argument("--out-uncommitted", default="/work/onnx-extra",
                    help="directory for the networks not committed (one folder each)")
    ap.add_argument("--only", nargs="*", choices=list(NETWORKS), help="subset of networks")
    ap.add_argument("--dynamo", action="store_true",
                    help="also export each network with the default (dynamo) exporter and "
                         "external data, to --out-uncommitted/<name>-dynamo (needs onnxscript)")
    args = ap.parse_args()

    torch.set_num_threads(1)  # reproducible float summation order
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, onnx "
          f"{onnx.__version__}, onnxruntime {ort.__version__}")
    for name, committed in NETWORKS.items():
        if args.only and name not in args.only:
            continue
        d = os.path.join(args.out if committed else args.out_uncommitted, name)
        ds = os.path.join(d, "test_data_set_0")
        os.makedirs(ds, exist_ok=True)

        gx = torch.Generator().manual_seed(SEED + 2)
        x = torch.randn(1, 3, 224, 224, generator=gx, dtype=torch.float32)
        model = build(name, x)
        with torch.no_grad():
            y_torch = model(x).numpy()
        m = export(model, x)
        data = m.SerializeToString()
        path = os.path.join(d, "model.onnx")
        with open(path, "wb") as f:
            f.write(data)
        xn = x.numpy()
        y = ort_run(data, xn)
        with open(os.path.join(ds, "input_0.pb"), "wb") as f:
            f.write(numpy_helper.from_array(xn, "input").SerializeToString())
        with open(os.path.join(ds, "output_0.pb"), "wb") as f:
            f.write(numpy_helper.from_array(y, "output").SerializeToString())

        describe(name, m, path)
        print(f"   written to {d}")
        print(f"   output {list(y.shape)}: max|ort| {np.abs(y).max():.4f}, std {y.std():.4f}, "
              f"max|torch - ort| {np.abs(y_torch - y).max():.3g}")
        if args.dynamo:
            # mobilenet_v3_small's default export (11 MB) is committed: the real test of
            # external data and opset 20 that CI runs.
            base = args.out if name in DYNAMO_COMMITTED else args.out_uncommitted
            dd = os.path.join(base, f"{name}-dynamo")
            os.makedirs(os.path.join(dd, "test_data_set_0"), exist_ok=True)
            dpath = os.path.join(dd, "model.onnx")
            export_dynamo(model, x, dpath)
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            sess = ort.InferenceSession(dpath, so, providers=["CPUExecutionProvider"])
            feed = sess.get_inputs()[0].name
            yd = sess.run(None, {feed: xn})[0]
            with open(os.path.join(dd, "test_data_set_0", "input_0.pb"), "wb") as f:
                f.write(numpy_helper.from_array(xn, feed).SerializeToString())
            with open(os.path.join(dd, "test_data_set_0", "output_0.pb"), "wb") as f:
                f.write(numpy_helper.from_array(yd, "output").SerializeToString())
            dm = onnx.load(dpath, load_external_data=False)
            print(f"   dynamo: opset {dm.opset_import[0].version}, ops "
                  f"{sorted(set(n.op_type for n in dm.graph.node))}, files {sorted(os.listdir(dd))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
