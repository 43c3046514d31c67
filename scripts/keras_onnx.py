#!/usr/bin/env python3
"""Export Keras 3 models to ONNX the way a Keras user does (`model.export(path, format="onnx")`),
with Keras' own output and onnxruntime's for a fixed input.

Keras 3.15.1 on the torch backend (KERAS_BACKEND=torch, set here): its ONNX export traces the
model with torch.onnx (the TorchScript exporter), writes one self-contained file at opset 20
(Keras' kernels HWIO transposed to OIHW as constants, biases added by separate Adds,
BatchNormalization written as Sub/Mul/Add arithmetic, "same" padding computed by shape
arithmetic and an explicit Pad) with the input in Keras' layout, NHWC.

Writes the backend-test layout for each model:

    <dir>/model.onnx
    <dir>/test_data_set_0/input_0.pb     float32 [1, H, W, C], seeded
    <dir>/test_data_set_0/output_0.pb    onnxruntime's output (checked against Keras' own)
    <dir>/keras.txt                      Keras' count_params() and trainable split

keras_small (a functional CNN with every layer kind a typical user model has: Conv2D with
BatchNormalization and ReLU6, DepthwiseConv2D, SeparableConv2D, a residual Add, Concatenate,
both poolings, Dropout, Dense softmax; 32x32x3) goes to tests/onnx/networks/keras_small
(committed, ~60 KB); keras.applications' MobileNetV3Small (weights=None, 224x224x3) goes to
--out-uncommitted (default /work/onnx-extra/keras_mobilenet_v3_small).

Weights: Keras' initializers under keras.utils.set_random_seed(0), then every
BatchNormalization gets random moving statistics, gamma and beta and every bias a random value,
so a bug in their handling cannot hide.

Usage (from the repository root):
    /work/venv/bin/python scripts/keras_onnx.py [--out tests/onnx/networks]
        [--out-uncommitted /work/onnx-extra]
"""

from __future__ import annotations

import argparse
import os

os.environ["KERAS_BACKEND"] = "torch"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import numpy_helper  # noqa: E402


def small() -> keras.Model:
    L = keras.layers
    inp = keras.Input((32, 32, 3), name="image")
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu6")(x)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = L.Activation("swish", name="dw_swish")(y)
    y = L.Conv2D(16, 1, name="pw")(y)
    x = L.Add(name="residual")([x, y])
    a = L.SeparableConv2D(24, 3, strides=2, padding="same", activation="relu", name="sep")(x)
    b = L.AveragePooling2D(2, name="avg")(x)
    x = L.Concatenate(name="concat")([a, b])
    x = L.MaxPooling2D(2, name="max")(x)
    x = L.Conv2D(32, 3, padding="valid", activation="hard_swish", name="conv")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.2, name="drop")(x)
    out = L.Dense(10, activation="softmax", name="classifier")(x)
    return keras.Model(inp, out, name="keras_small")


def randomize(model: keras.Model, rng: np.random.Generator) -> None:
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, g.shape).astype(np.float32),
                    (rng.normal(size=b.shape) * 0.1).astype(np.float32),
                    (rng.normal(size=m.shape) * 0.1).astype(np.float32),
                    rng.uniform(0.5, 1.5, v.shape).astype(np.float32),
                ]
            )
        else:
            ws = layer.get_weights()
            if ws and getattr(layer, "use_bias", False):
                ws[-1] = (rng.normal(size=ws[-1].shape) * 0.1).astype(np.float32)
                layer.set_weights(ws)


def export(model: keras.Model, out_dir: str, rng: np.random.Generator) -> None:
    os.makedirs(f"{out_dir}/test_data_set_0", exist_ok=True)
    shape = (1,) + tuple(model.input_shape[1:])
    x = rng.uniform(0, 1, shape).astype(np.float32)
    y_keras = keras.ops.convert_to_numpy(model(x, training=False))
    path = f"{out_dir}/model.onnx"
    model.export(path, format="onnx")
    sess = ort.InferenceSession(path)
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
    err = np.abs(y - y_keras).max() / np.abs(y_keras).max()
    assert err < 1e-4, f"onnxruntime vs keras: {err}"
    with open(f"{out_dir}/test_data_set_0/input_0.pb", "wb") as f:
        f.write(numpy_helper.from_array(x, "input").SerializeToString())
    with open(f"{out_dir}/test_data_set_0/output_0.pb", "wb") as f:
        f.write(numpy_helper.from_array(y, "output").SerializeToString())
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    with open(f"{out_dir}/keras.txt", "w") as f:
        f.write(
            f"keras {keras.__version__} ({keras.backend.backend()} backend)\n"
            f"count_params {model.count_params()}\n"
            f"trainable {trainable}\n"
            f"non_trainable {model.count_params() - trainable}\n"
            f"onnxruntime_vs_keras {err:.3e}\n"
        )
    print(f"{out_dir}: {model.count_params()} params, onnxruntime vs keras {err:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/onnx/networks")
    ap.add_argument("--out-uncommitted", default="/work/onnx-extra")
    args = ap.parse_args()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    m = small()
    randomize(m, rng)
    export(m, f"{args.out}/keras_small", rng)
    m = keras.applications.MobileNetV3Small(weights=None, input_shape=(224, 224, 3))
    randomize(m, rng)
    export(m, f"{args.out_uncommitted}/keras_mobilenet_v3_small", rng)


if __name__ == "__main__":
    main()
