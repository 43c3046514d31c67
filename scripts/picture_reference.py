#!/usr/bin/env python3
"""Reference preprocessing for `cnn run model.onnx picture --preset imagenet` (and a sidecar).

Writes tests/fixtures/pictures/:

    photo.jpg, photo.png         two synthetic photo-like pictures (seeded; 320x240 and 200x260)
    identity_nchw.onnx           one Identity node, input float32 [N, 3, 224, 224]
    identity_nhwc.onnx           the same with input [N, 224, 224, 3] (Keras/TensorFlow layout)
    small_nchw.onnx              the same with input [N, 3, 24, 32] (for a sidecar test)
    imagenet_<name>.npy          torchvision's ImageNet transform of each picture, [3, 224, 224]
    small_<name>.npy             Resize((30, 40)), CenterCrop((24, 32)), BGR, mean/std below
    squeezenet_<name>.npy        onnxruntime's logits of tests/onnx/networks/squeezenet1_0 on
                                 imagenet_<name>.npy, [1000]

The ImageNet transform is torchvision's `ResNet18_Weights.IMAGENET1K_V1.transforms()` (Resize
256 bilinear on the PIL image, CenterCrop 224, ToTensor, Normalize with ImageNet's mean/std),
applied to `Image.open(p).convert("RGB")` exactly as torchvision's reference scripts do.

Usage (from the repository root):
    /work/venv/bin/python scripts/picture_reference.py
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from PIL import Image
from torchvision import transforms
from torchvision.models import ResNet18_Weights

OUT = "tests/fixtures/pictures"


def photo(w: int, h: int, seed: int) -> Image.Image:
    """Smooth gradients, a few discs and some noise: JPEG-friendly, not trivially flat."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack(
        [
            128 + 100 * np.sin(x / (w / 3.0) + seed),
            128 + 100 * np.cos(y / (h / 2.5)),
            128 + 80 * np.sin((x + y) / (w / 4.0)),
        ],
        axis=-1,
    )
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 60)
        colour = rng.uniform(0, 255, size=3)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        img[mask] = colour
    img += rng.normal(0, 8, size=img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def identity(path: str, dims: list) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    photo(320, 240, 1).save(f"{OUT}/photo.jpg", quality=90)
    photo(200, 260, 2).save(f"{OUT}/photo.png")
    identity(f"{OUT}/identity_nchw.onnx", ["N", 3, 224, 224])
    identity(f"{OUT}/identity_nhwc.onnx", ["N", 224, 224, 3])
    identity(f"{OUT}/small_nchw.onnx", ["N", 3, 24, 32])
    imagenet = ResNet18_Weights.IMAGENET1K_V1.transforms()
    small = transforms.Compose(
        [
            transforms.Resize((30, 40)),
            transforms.CenterCrop((24, 32)),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3]),
        ]
    )
    for name in ["photo.jpg", "photo.png"]:
        img = Image.open(f"{OUT}/{name}").convert("RGB")
        stem = name.replace(".", "_")
        np.save(f"{OUT}/imagenet_{stem}.npy", imagenet(img).numpy().astype(np.float32))
        # The network of the small test takes BGR: the reference reverses the channels of an
        # RGB transform whose mean/std were given in RGB order (0.6, 0.5, 0.4 in BGR).
        t = small(img).numpy()[::-1].copy()
        np.save(f"{OUT}/small_{stem}.npy", t.astype(np.float32))
    net = ort.InferenceSession("tests/onnx/networks/squeezenet1_0/model.onnx")
    for name in ["photo.jpg", "photo.png"]:
        stem = name.replace(".", "_")
        x = np.load(f"{OUT}/imagenet_{stem}.npy")[None]
        (y,) = net.run(None, {net.get_inputs()[0].name: x})
        np.save(f"{OUT}/squeezenet_{stem}.npy", y[0].astype(np.float32))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
