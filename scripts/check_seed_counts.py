#!/usr/bin/env python3
"""Cross-check of the model files in models/ against the seed documents.

Reads every models/*.toml, does its own shape inference and parameter counting
(independently of the Rust engine), prints per-layer and total counts, and asserts
them against the numbers stated in the seed documents (/work/shared/seeds/*.txt,
summarised in /work/shared/docs/seed-cases.md).

Python 3.11+ standard library only. Usage:  python3 scripts/check_seed_counts.py
This is a cross-check only; the Rust tests do not call it.
"""

from __future__ import annotations

import math
import sys
import tomllib
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

# ---------------------------------------------------------------------------
# Expected numbers, taken from the seed documents.
#   total:  the model's total parameter count
#   layers: per-layer parameter counts the seed states (layer names are the
#           Keras-style default names: conv2d_1, dense_1, ...)
#   shapes: per-layer output shapes the seed states, as (C, H, W) or (N,)
# ---------------------------------------------------------------------------
EXPECTED: dict[str, dict] = {
    # --- seed 000 (000_*.txt): Keras "Can deeper CNNs have fewer parameters?"
    # model.count_params() printed 604035 and 336387.
    "vgg1": {
        "total": 604_035,
        # seed-cases.md: 32x12x12 = 4,608 values flattened into dense 128 -> 589,952
        "layers": {"dense_1": 589_952},
        "shapes": {"flatten_1": (4_608,)},
    },
    "vgg2": {
        "total": 336_387,
        # seed-cases.md: 64x4x4 = 1,024 values flattened into dense 256 -> 262,400
        "layers": {"dense_1": 262_400},
        "shapes": {"flatten_1": (1_024,)},
    },
    # Toy MLPs from the same thread (bottleneck features).
    "mlp_784_2000_2000_10": {"total": 5_592_010},
    "mlp_784_2000_50_2000_10": {"total": 1_792_060},
    # --- seed 001 (001_*.txt): Keras "how many weights will be trained?"
    "keras_conv_490": {
        "total": 490,  # 10*(4*4*3+1), model.summary() output in the thread
        "layers": {"conv2d_1": 490},
        "shapes": {"conv2d_1": (10, 29, 29)},
    },
    "channel_sum_170": {
        "total": 170,  # Lambda(sum channels) 0 + Conv2D 170, model.summary() output
        "layers": {"channel_sum_1": 0, "conv2d_1": 170},
        "shapes": {"channel_sum_1": (1, 32, 32), "conv2d_1": (10, 29, 29)},
    },
    "separable_88": {
        "total": 88,  # 3*16 depthwise + 3*10 pointwise + 10 bias
        "layers": {"separable_conv2d_1": 88},
    },
    "depthwise_51": {
        "total": 51,  # 3*16 + 3 bias
        "layers": {"depthwise_conv2d_1": 51},
    },
    # --- seed 002 (002_*.txt): blog post on local receptive fields / weight sharing
    "fc_1000x1000": {"total": 10**12, "layers": {"dense_1": 10**12}},
    "local_10x10": {
        "total": 10**8,
        "layers": {"locally_connected2d_1": 10**8},
        "shapes": {"locally_connected2d_1": (1, 1000, 1000)},
    },
    "shared_10x10": {"total": 100, "layers": {"conv2d_1": 100}},
    "shared_10x10_100_filters": {
        "total": 10_000,
        "layers": {"conv2d_1": 10_000},
        "shapes": {"conv2d_1": (100, 1000, 1000)},
    },
    # --- seed 003 (003_*.txt): Lasagne MNIST CNN, per-layer table in the answer
    "lasagne_mnist": {
        "total": 217_706,
        "layers": {
            "conv2d_1": 832,
            "maxpool2d_1": 0,
            "conv2d_2": 9_248,
            "maxpool2d_2": 0,
            "dense_1": 205_056,
            "dense_2": 2_570,
        },
        "shapes": {
            "conv2d_1": (32, 24, 24),
            "maxpool2d_1": (32, 12, 12),
            "conv2d_2": (32, 10, 10),
            "maxpool2d_2": (32, 5, 5),
            "dense_1": (256,),
            "dense_2": (10,),
        },
    },
    # --- seed 004 (004_*.txt): blog post "fewer layers, more parameters", no biases
    "blog_4block": {
        "total": 6_810_720,
        # 864 + 18,432 + 73,728 + 294,912 + [6,422,528] + 256
        "layers": {
            "conv2d_1": 864,
            "conv2d_2": 18_432,
            "conv2d_3": 73_728,
            "conv2d_4": 294_912,
            "dense_1": 6_422_528,
            "dense_2": 256,
        },
        "shapes": {"maxpool2d_4": (256, 14, 14)},
    },
    "blog_3block": {
        "total": 12_938_336,
        # 864 + 18,432 + 73,728 + [12,845,056] + 256
        "layers": {
            "conv2d_1": 864,
            "conv2d_2": 18_432,
            "conv2d_3": 73_728,
            "dense_1": 12_845_056,
            "dense_2": 256,
        },
        "shapes": {"maxpool2d_3": (128, 28, 28)},
    },
    # Same two models with the default biases (seed-cases.md, recomputed).
    "blog_4block_bias": {"total": 6_811_330},
    "blog_3block_bias": {"total": 12_938_690},
}

# Keys allowed per layer type (design.md, "Model file (TOML)"); every layer may
# also have `name` and `inputs`.
COMMON_KEYS = {"type", "name", "inputs"}
LAYER_KEYS: dict[str, set[str]] = {
    "conv2d": {"filters", "kernel", "stride", "padding", "dilation", "groups", "use_bias", "activation"},
    "depthwise_conv2d": {"kernel", "depth_multiplier", "stride", "padding", "dilation", "use_bias", "activation"},
    "separable_conv2d": {"filters", "kernel", "depth_multiplier", "stride", "padding", "dilation", "use_bias", "activation"},
    "locally_connected2d": {"filters", "kernel", "stride", "padding", "use_bias", "activation"},
    "dense": {"units", "use_bias", "activation"},
    "maxpool2d": {"pool", "stride", "padding"},
    "avgpool2d": {"pool", "stride", "padding"},
    "global_avgpool2d": set(),
    "global_maxpool2d": set(),
    "flatten": set(),
    "channel_sum": set(),
    "batchnorm": {"epsilon"},
    "dropout": {"rate"},
    "activation": {"activation"},
    "add": set(),
    "concat": set(),
}
TOP_KEYS = {"name", "description", "labels", "input", "layers"}
INPUT_KEYS = {"channels", "height", "width", "invert", "scale", "mean", "std"}
# Models that are not seed cases (trained models); their counts are checked by the Rust tests.
NOT_SEEDS = {"digits"}
ACTIVATIONS = {"relu", "sigmoid", "tanh", "softmax", "linear"}


class ModelError(Exception):
    pass


def pair(v, what: str) -> tuple[int, int]:
    """An integer or [h, w] -> (h, w)."""
    if isinstance(v, bool):
        raise ModelError(f"{what}: expected an integer or [h, w], got {v!r}")
    if isinstance(v, int):
        return v, v
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return v[0], v[1]
    raise ModelError(f"{what}: expected an integer or [h, w], got {v!r}")


def out_size(n: int, k: int, s: int, d: int, pad, axis: int) -> int:
    """Output length along one axis. pad: "valid" | "same" | int | [h, w]."""
    dk = d * (k - 1) + 1
    if pad == "same":
        return math.ceil(n / s)
    if pad == "valid":
        p = 0
    else:
        p = pair(pad, "padding")[axis]
    o = (n + 2 * p - dk) // s + 1
    if o < 1:
        raise ModelError(f"output size {o} < 1 (in {n}, kernel {k}, stride {s}, dilation {d}, padding {pad!r})")
    return o


def spatial(shape, layer, k, s, d, pad):
    if len(shape) != 3:
        raise ModelError(f"{layer} needs a C x H x W input, got {shape}")
    c, h, w = shape
    return c, out_size(h, k[0], s[0], d[0], pad, 0), out_size(w, k[1], s[1], d[1], pad, 1)


def check_keys(desc: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(desc) - allowed)
    if unknown:
        raise ModelError(f"{where}: unknown key(s) {unknown}")


def analyse(model: dict) -> tuple[list[tuple[str, str, tuple, int]], tuple]:
    """Returns ([(name, type, output shape, params)], input shape)."""
    check_keys(model, TOP_KEYS, "top level")
    inp = model["input"]
    check_keys(inp, INPUT_KEYS, "[input]")
    in_shape = (inp["channels"], inp["height"], inp["width"])

    counters: dict[str, int] = {}
    shapes: dict[str, tuple] = {}
    rows = []
    prev = in_shape
    for i, L in enumerate(model["layers"]):
        t = L.get("type")
        if t not in LAYER_KEYS:
            raise ModelError(f"layer {i}: unknown type {t!r}")
        check_keys(L, COMMON_KEYS | LAYER_KEYS[t], f"layer {i} ({t})")
        counters[t] = counters.get(t, 0) + 1
        name = L.get("name", f"{t}_{counters[t]}")
        if name in shapes:
            raise ModelError(f"duplicate layer name {name!r}")
        if "activation" in L and L["activation"] not in ACTIVATIONS:
            raise ModelError(f"{name}: unknown activation {L['activation']!r}")

        inputs = L.get("inputs")
        if inputs is None:
            ins = [prev]
        else:
            names = [inputs] if isinstance(inputs, str) else list(inputs)
            ins = []
            for n in names:
                if n == "input":
                    ins.append(in_shape)
                elif n in shapes:
                    ins.append(shapes[n])
                else:
                    raise ModelError(f"{name}: unknown input {n!r}")
        x = ins[0]

        bias = 1 if L.get("use_bias", True) else 0
        k = pair(L.get("kernel", 1), f"{name}.kernel")
        s = pair(L.get("stride", 1), f"{name}.stride")
        d = pair(L.get("dilation", 1), f"{name}.dilation")
        pad = L.get("padding", "valid")
        params = 0

        if t == "conv2d":
            f, g = L["filters"], L.get("groups", 1)
            c, oh, ow = spatial(x, name, k, s, d, pad)
            if c % g or f % g:
                raise ModelError(f"{name}: groups {g} must divide channels {c} and filters {f}")
            params = (k[0] * k[1] * c // g + bias) * f
            out = (f, oh, ow)
        elif t == "depthwise_conv2d":
            dm = L.get("depth_multiplier", 1)
            c, oh, ow = spatial(x, name, k, s, d, pad)
            params = (k[0] * k[1] + bias) * c * dm
            out = (c * dm, oh, ow)
        elif t == "separable_conv2d":
            f, dm = L["filters"], L.get("depth_multiplier", 1)
            c, oh, ow = spatial(x, name, k, s, d, pad)
            params = k[0] * k[1] * c * dm + c * dm * f + f * bias
            out = (f, oh, ow)
        elif t == "locally_connected2d":
            f = L["filters"]
            c, oh, ow = spatial(x, name, k, s, (1, 1), pad)
            params = oh * ow * f * (k[0] * k[1] * c + bias)
            out = (f, oh, ow)
        elif t == "dense":
            if len(x) != 1:
                raise ModelError(f"{name}: dense needs a flattened input, got {x} (add a flatten layer)")
            params = (x[0] + bias) * L["units"]
            out = (L["units"],)
        elif t == "flatten":
            out = (math.prod(x),)
        elif t in ("maxpool2d", "avgpool2d"):
            p = pair(L["pool"], f"{name}.pool")
            ps = pair(L.get("stride", L["pool"]), f"{name}.stride")
            out = spatial(x, name, p, ps, (1, 1), pad)
        elif t in ("global_avgpool2d", "global_maxpool2d"):
            out = (x[0],)
        elif t == "channel_sum":
            out = (1,) + tuple(x[1:])
        elif t == "batchnorm":
            params = 4 * x[0]  # gamma, beta, moving mean, moving variance
            out = x
        elif t in ("dropout", "activation"):
            out = x
        elif t == "add":
            if any(y != x for y in ins):
                raise ModelError(f"{name}: add needs equal shapes, got {ins}")
            out = x
        elif t == "concat":
            if any(len(y) != len(x) or y[1:] != x[1:] for y in ins):
                raise ModelError(f"{name}: concat needs equal spatial shapes, got {ins}")
            out = (sum(y[0] for y in ins),) + tuple(x[1:])
        else:  # pragma: no cover
            raise ModelError(f"unhandled type {t}")

        shapes[name] = out
        rows.append((name, t, out, params))
        prev = out
    return rows, in_shape


def fmt_shape(s: tuple) -> str:
    return " x ".join(str(v) for v in s)


def main() -> int:
    files = sorted(MODELS_DIR.glob("*.toml"))
    failures: list[str] = []
    seen: set[str] = set()
    for path in files:
        stem = path.stem
        with path.open("rb") as fh:
            model = tomllib.load(fh)
        try:
            rows, in_shape = analyse(model)
        except (ModelError, KeyError) as e:
            failures.append(f"{path.name}: {e}")
            print(f"== {path.name}: ERROR {e}\n")
            continue
        total = sum(r[3] for r in rows)
        print(f"== {path.name}  (name = {model.get('name')!r}, input {fmt_shape(in_shape)})")
        for name, t, out, params in rows:
            print(f"   {name:<24} {t:<20} {fmt_shape(out):>18} {params:>17,}")
        print(f"   {'TOTAL':<24} {'':<20} {'':>18} {total:>17,}")

        if model.get("name") != stem:
            failures.append(f"{path.name}: name {model.get('name')!r} != file stem {stem!r}")
        if not model.get("description"):
            failures.append(f"{path.name}: missing description")
        exp = EXPECTED.get(stem)
        if stem in NOT_SEEDS:
            print("   (not a seed model: counted, not compared)")
        elif exp is None:
            failures.append(f"{path.name}: no expected numbers in this script")
        else:
            seen.add(stem)
            checks = [("total", total, exp["total"])]
            by_name = {r[0]: r for r in rows}
            for ln, want in exp.get("layers", {}).items():
                got = by_name[ln][3] if ln in by_name else None
                checks.append((f"params {ln}", got, want))
            for ln, want in exp.get("shapes", {}).items():
                got = by_name[ln][2] if ln in by_name else None
                checks.append((f"shape {ln}", got, want))
            bad = [(w, g, e) for w, g, e in checks if g != e]
            for what, got, want in bad:
                failures.append(f"{path.name}: {what}: got {got}, expected {want}")
            print(f"   check: {len(checks) - len(bad)}/{len(checks)} seed numbers match"
                  f"{'' if not bad else '  <-- MISMATCH'}")
        print()

    for stem in sorted(set(EXPECTED) - seen):
        failures.append(f"models/{stem}.toml: missing")

    print(f"{len(files)} model files, {len(EXPECTED)} expected")
    if failures:
        print("FAILED:")
        for f in failures:
            print("  " + f)
        return 1
    print("ALL SEED NUMBERS MATCH")
    return 0


if __name__ == "__main__":
    # Assertion, as asked: every seed number must match.
    rc = main()
    assert rc == 0, "seed count mismatch (see above)"
    sys.exit(rc)
