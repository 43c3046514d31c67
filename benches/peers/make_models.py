#!/usr/bin/env python3
"""Writes the peer comparison's inputs: one single-Conv ONNX model per layer.

For each of the 8 layers (batch 1, f32, NCHW, no bias) this writes into models/ (git-ignored):
  <name>.onnx         a graph with one Conv node: input "x" [1,C,H,W], weight initializer "w",
                      output "y" [1,M,OH,OW]
  <name>.input.npy    the input x, float32 [1,C,H,W]
  <name>.weight.npy   the same weights as the initializer, float32 [M, C/groups, k, k]
and models/layers.json, the layer list every other script reads (the single source of the
shapes). Values are drawn from a fixed-seed numpy generator: the input uniform in [-1, 1], the
weights uniform with unit output variance (He-style, bound sqrt(3/fan_in)), so outputs are O(1)
and the 1e-3 agreement check means something.

Usage: make_models.py [OUT_DIR]   (default: models/ beside this file)
"""

import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 20261123

# name, in_c, size (H = W), filters, kernel, stride, pad, groups -- the engine's benches/conv.rs list.
LAYERS = [
    ("c3_224_k3", 3, 224, 64, 3, 1, 1, 1),
    ("c64_56_k3", 64, 56, 64, 3, 1, 1, 1),
    ("c128_28_k3", 128, 28, 128, 3, 1, 1, 1),
    ("c256_14_k3", 256, 14, 256, 3, 1, 1, 1),
    ("c512_7_k3", 512, 7, 512, 3, 1, 1, 1),
    ("c64_56_1x1_256", 64, 56, 256, 1, 1, 0, 1),
    ("c3_224_k7s2", 3, 224, 64, 7, 2, 3, 1),
    ("dw32_112_k3", 32, 112, 32, 3, 1, 1, 32),
]


def out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "models")
    os.makedirs(out_dir, exist_ok=True)
    described = []
    for i, (name, c, size, m, k, s, p, g) in enumerate(LAYERS):
        rng = np.random.default_rng(SEED + i)
        oh = out_size(size, k, s, p)
        fan_in = (c // g) * k * k
        x = rng.uniform(-1.0, 1.0, size=(1, c, size, size)).astype(np.float32)
        bound = np.sqrt(3.0 / fan_in)
        w = rng.uniform(-bound, bound, size=(m, c // g, k, k)).astype(np.float32)

        node = helper.make_node(
            "Conv",
            ["x", "w"],
            ["y"],
            kernel_shape=[k, k],
            strides=[s, s],
            pads=[p, p, p, p],
            dilations=[1, 1],
            group=g,
        )
        graph = helper.make_graph(
            [node],
            name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, size, size])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, m, oh, oh])],
            initializer=[numpy_helper.from_array(w, "w")],
        )
        model = helper.make_model(
            graph,
            producer_name="cnn-peers",
            opset_imports=[helper.make_opsetid("", 13)],
        )
        model.ir_version = 8  # opset 13; old enough for every consumer here
        onnx.checker.check_model(model)
        onnx.save(model, os.path.join(out_dir, f"{name}.onnx"))
        np.save(os.path.join(out_dir, f"{name}.input.npy"), x)
        np.save(os.path.join(out_dir, f"{name}.weight.npy"), w)

        flops = 2 * m * oh * oh * c * k * k // g
        described.append(
            {
                "name": name,
                "in_c": c,
                "size": size,
                "filters": m,
                "kernel": k,
                "stride": s,
                "pad": p,
                "groups": g,
                "out_size": oh,
                "flops": flops,
            }
        )
        print(f"{name:16} [1,{c},{size},{size}] -> [1,{m},{oh},{oh}]  {flops / 1e6:7.1f} MFLOP")
    with open(os.path.join(out_dir, "layers.json"), "w") as f:
        json.dump({"seed": SEED, "layers": described}, f, indent=1)
    print(f"wrote {len(LAYERS)} models to {out_dir}")


if __name__ == "__main__":
    main()
