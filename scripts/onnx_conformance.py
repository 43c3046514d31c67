#!/usr/bin/env python3
"""Regenerate the ONNX backend *node* conformance tests for the ops the engine supports.

Writes, for every kept test case, the standard backend-test layout (exactly as
`python -m onnx.backend.test.cmd_tools generate-data` does):

    tests/onnx/node/<test_name>/model.onnx
    tests/onnx/node/<test_name>/test_data_set_<k>/input_<i>.pb    (serialized onnx TensorProto)
    tests/onnx/node/<test_name>/test_data_set_<k>/output_<i>.pb

and tests/onnx/node/EXCLUDED.md listing the test cases of supported ops that were
left out, with the reason. Only node-test cases whose graph nodes all have an op_type
in SUPPORTED are considered; `_expanded` variants of a supported op whose function
body uses other ops are recorded as excluded.

The inputs/outputs come from onnx's own generators (onnx.backend.test.case.node),
which call np.random.seed(0) before each export function, so the output is
deterministic for a given onnx/numpy version.

Usage (from the repository root):
    /work/venv/bin/python scripts/onnx_conformance.py [--out tests/onnx/node] [--check-ort]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import warnings

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

SUPPORTED = {
    "Conv", "Gemm", "MatMul", "Add", "Mul", "Relu", "LeakyRelu", "Clip", "Sigmoid",
    "Tanh", "Softmax", "Flatten", "Reshape", "MaxPool", "AveragePool",
    "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "Concat", "Dropout",
    "Identity", "Constant", "Pad",
    # Element-wise math and activations (issue 14).
    "Sub", "Div", "Pow", "PRelu", "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal", "Erf",
    "Softplus", "Elu", "Selu", "HardSigmoid", "HardSwish", "Mish", "Gelu",
    # Reductions and layout (issue 14).
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2", "Transpose", "Squeeze",
    "Unsqueeze", "Slice", "LayerNormalization",
    # Shape arithmetic, evaluated when planning, and Gather/Cast on data (issue 14).
    "Shape", "Gather", "Cast", "Range", "ConstantOfShape", "Equal", "Where", "Split",
    "Less", "Greater", "Not", "Expand", "Tile", "InstanceNormalization", "DepthToSpace",
    "SpaceToDepth", "Resize", "Upsample", "ConvTranspose", "LRN", "GroupNormalization",
}

# (op_type, input position) pairs whose int64 operand is allowed: shape / pads / axes.
INT64_OPERANDS = {("Reshape", 1), ("Pad", 1), ("Pad", 3)} | {
    (op, 1) for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2",
                       "Squeeze", "Unsqueeze")
} | {("Slice", i) for i in (1, 2, 3, 4)} | {("Gather", 1), ("Split", 1), ("Expand", 1), ("Tile", 1), ("Resize", 3)}

SPATIAL_OPS = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool",
               "GlobalMaxPool"}


def elem_type_name(t: int) -> str:
    return TensorProto.DataType.Name(t)


def value_kind(vi: onnx.ValueInfoProto) -> str:
    return vi.type.WhichOneof("value") or "none"


def shape_of(vi: onnx.ValueInfoProto) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in vi.type.tensor_type.shape.dim]


def attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def base_name(name: str) -> str:
    return name.split("_expanded")[0]


def exclusion_reason(case, base_ops: list[str]) -> str | None:
    """Return None to keep the case, else a one-line reason."""
    g = case.model.graph
    ops = [n.op_type for n in g.node]
    name = case.name

    if "_expanded" in name:
        outside = sorted(set(ops) - SUPPORTED)
        if outside:
            return f"`_expanded` function body uses ops outside the set: {', '.join(outside)}"

    # Opsets the engine does not read (it reads 7 to 28).
    for o in case.model.opset_import:
        if o.domain in ("", "ai.onnx") and o.version < 7:
            return f"opset {o.version} (cnn reads opsets 7 to 28)"

    # A reduction of an empty BOOL set is false in ONNX (a logical any/all); the engine's
    # booleans are floats, whose empty max is -inf.
    if name.startswith("test_reduce_") and name.endswith("empty_set_bool"):
        return "reduction of an empty BOOL set (logical any/all; float max/min of nothing is -inf)"

    # Sequence / optional / map types.
    for vi in list(g.input) + list(g.output):
        k = value_kind(vi)
        if k != "tensor_type":
            return f"{k.replace('_type', '')} type input/output (not a tensor)"

    # Training mode.
    for n in g.node:
        if n.op_type == "BatchNormalization" and attr(n, "training_mode", 0) == 1:
            return "training mode (BatchNormalization training_mode=1, running stats outputs)"
    if name.startswith("test_training_dropout"):
        return "training mode (Dropout training_mode=true)"

    # 3-D (5-D tensor) conv / pooling.
    for n in g.node:
        if n.op_type in SPATIAL_OPS:
            for vi in g.input:
                if vi.name == n.input[0] and len(vi.type.tensor_type.shape.dim) == 5:
                    return f"3-D {n.op_type} (5-D input tensor)"

    # MaxPool Indices output.
    for n in g.node:
        if n.op_type == "MaxPool" and len([o for o in n.output if o]) > 1:
            return "MaxPool with the second (Indices, int64) output"

    # Shape-arithmetic ops on FLOAT data (the engine evaluates them on shape integers only).
    # Equal/Less/Greater/Not/Where also run on float data (booleans held as 1.0 / 0.0).
    for n in g.node:
        if n.op_type in ("Range", "ConstantOfShape"):
            return f"{n.op_type} on FLOAT values (evaluated on shape integers only, when planning)"

    # Resize modes the engine refuses.
    for n in g.node:
        if n.op_type in ("Resize", "Upsample"):
            mode = attr(n, "mode", b"nearest")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            ctm = attr(n, "coordinate_transformation_mode", b"half_pixel")
            ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
            if mode == "cubic":
                return "Resize mode 'cubic' (nearest and linear supported)"
            if attr(n, "antialias", 0):
                return "Resize with antialias"
            if ctm in ("tf_crop_and_resize", "half_pixel_symmetric"):
                return f"Resize coordinate_transformation_mode '{ctm}'"
            policy = attr(n, "keep_aspect_ratio_policy", b"stretch")
            policy = policy.decode() if isinstance(policy, bytes) else policy
            if policy != "stretch":
                return f"Resize keep_aspect_ratio_policy '{policy}'"

    # LayerNormalization's statistics outputs (the engine's nodes have one output).
    for n in g.node:
        if n.op_type == "LayerNormalization" and len([o for o in n.output if o]) > 1:
            return "LayerNormalization with the Mean / InvStdDev outputs (one output per node)"

    # Pad modes other than constant.
    for n in g.node:
        if n.op_type == "Pad":
            mode = attr(n, "mode", b"constant")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            if mode != "constant":
                return f"Pad mode '{mode}' (only constant supported)"

    # Element types: float32 everywhere, int64 only as shape/pads/axes operands.
    allowed_int64 = set()
    for n in g.node:
        for pos, inp in enumerate(n.input):
            if (n.op_type, pos) in INT64_OPERANDS and inp:
                allowed_int64.add(inp)
    for vi in g.input:
        t = vi.type.tensor_type.elem_type
        # BOOL data is fed to the engine as 0.0 / 1.0.
        if t in (TensorProto.FLOAT, TensorProto.BOOL):
            continue
        if t == TensorProto.INT64 and vi.name in allowed_int64:
            continue
        return f"non-float32 input '{vi.name}' ({elem_type_name(t)})"
    for i, vi in enumerate(g.output):
        t = vi.type.tensor_type.elem_type
        if t not in (TensorProto.FLOAT, TensorProto.BOOL):
            extra = ""
            if any(n.op_type == "Dropout" for n in g.node) and i == 1:
                extra = " (Dropout mask output)"
            return f"non-float32 output '{vi.name}' ({elem_type_name(t)}){extra}"
    return None


def write_tensor(path: str, value, vi: onnx.ValueInfoProto) -> None:
    # Same logic as onnx/backend/test/cmd_tools.py generate-data, tensor case.
    assert vi.type.HasField("tensor_type")
    if isinstance(value, TensorProto):
        data = value.SerializeToString()
    else:
        data = numpy_helper.from_array(value, vi.name).SerializeToString()
    with open(path, "wb") as f:
        f.write(data)


def write_case(out_dir: str, case) -> None:
    d = os.path.join(out_dir, case.name)
    os.makedirs(d)
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(case.model.SerializeToString())
    g = case.model.graph
    for k, (inputs, outputs) in enumerate(case.data_sets):
        ds = os.path.join(d, f"test_data_set_{k}")
        os.makedirs(ds)
        for j, v in enumerate(inputs):
            write_tensor(os.path.join(ds, f"input_{j}.pb"), v, g.input[j])
        for j, v in enumerate(outputs):
            write_tensor(os.path.join(ds, f"output_{j}.pb"), v, g.output[j])


def check_ort(case) -> str:
    """Run onnxruntime on the case; return 'ok', 'MISMATCH ...' or 'ORT-ERROR ...'."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "no-ort"
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(case.model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        return f"ORT-ERROR {str(e).splitlines()[0][:100]}"
    g = case.model.graph
    for inputs, outputs in case.data_sets:
        feed = {}
        for vi, v in zip(g.input, inputs):
            feed[vi.name] = np.asarray(numpy_helper.to_array(v) if isinstance(v, TensorProto) else v)
        try:
            got = sess.run(None, feed)
        except Exception as e:  # noqa: BLE001
            return f"ORT-ERROR {str(e).splitlines()[0][:100]}"
        for want, have in zip(outputs, got):
            want = numpy_helper.to_array(want) if isinstance(want, TensorProto) else want
            if not np.allclose(have, want, rtol=case.rtol, atol=case.atol):
                return f"MISMATCH max|d|={np.max(np.abs(have - want)):.3g}"
    return "ok"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/onnx/node")
    ap.add_argument("--check-ort", action="store_true",
                    help="also run each kept case through onnxruntime and report")
    args = ap.parse_args()

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # generators for unrelated ops warn on overflow etc.
        cases = collect_testcases(None)
    by_name = {c.name: c for c in cases}

    kept, excluded = [], []
    for c in cases:
        ops = [n.op_type for n in c.model.graph.node]
        base = by_name.get(base_name(c.name), c)
        base_ops = [n.op_type for n in base.model.graph.node]
        if not base_ops or not all(o in SUPPORTED for o in base_ops):
            continue  # not a test of a supported op
        if not all(o in SUPPORTED for o in ops) and "_expanded" not in c.name:
            continue
        reason = exclusion_reason(c, base_ops)
        op = "+".join(sorted(set(base_ops)))
        if reason is None:
            kept.append(c)
        else:
            excluded.append((c.name, op, reason))

    kept.sort(key=lambda c: c.name)
    excluded.sort()

    out = args.out
    if os.path.isdir(out):  # drop stale cases (only what this script writes)
        for e in os.listdir(out):
            p = os.path.join(out, e)
            if e.startswith("test_") and os.path.isdir(p):
                shutil.rmtree(p)
    os.makedirs(out, exist_ok=True)

    print(f"onnx {onnx.__version__}, numpy {np.__version__}: "
          f"{len(cases)} node test cases collected")
    print(f"{'test':58s} {'opset':>5s}  inputs")
    ort_status = collections.Counter()
    for c in kept:
        write_case(out, c)
        opset = ",".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in c.model.opset_import)
        ins = " ".join(
            f"{vi.name}:{'f32' if vi.type.tensor_type.elem_type == TensorProto.FLOAT else 'i64'}"
            f"{shape_of(vi)}" for vi in c.model.graph.input)
        line = f"{c.name:58s} {opset.split(':')[-1]:>5s}  {ins or '(none)'}"
        if len(c.data_sets) > 1:
            line += f"  [{len(c.data_sets)} data sets]"
        if args.check_ort:
            st = check_ort(c)
            ort_status[st.split()[0]] += 1
            line += f"  ort:{st}"
        print(line)

    with open(os.path.join(out, "EXCLUDED.md"), "w") as f:
        f.write("# ONNX node tests left out\n\n")
        f.write("Generated by `scripts/onnx_conformance.py` (onnx "
                f"{onnx.__version__}): backend node tests of the supported ops "
                "that are not written to this directory.\n\n")
        f.write("| test | op | reason |\n| --- | --- | --- |\n")
        for name, op, reason in excluded:
            f.write(f"| {name} | {op} | {reason} |\n")

    reasons = collections.Counter()
    for _, _, r in excluded:
        key = r.split(":")[0] if r.startswith("`_expanded`") else r
        if key.startswith("non-float32"):
            key = "non-float32 " + ("input" if "input" in key else "output") + " data"
        elif key.startswith("3-D "):
            key = "3-D conv/pooling (5-D input tensor)"
        elif key.startswith("training mode"):
            key = "training mode"
        elif key.startswith("Pad mode"):
            key = "Pad mode other than constant"
        elif " type input/output" in key:
            key = "sequence/optional type"
        reasons[key] += 1
    print()
    print(f"kept {len(kept)}, excluded {len(excluded)}")
    for r, n in reasons.most_common():
        print(f"  excluded {n:3d}: {r}")
    if args.check_ort:
        print("onnxruntime check of kept cases:", dict(ort_status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
