#!/usr/bin/env python3
"""Train the small digits CNN and write its weights, test fixtures and sample pictures.

Produces (paths relative to the repository root):
  models/digits.safetensors          the trained weights, float32, named `<layer>.<param>`
                                     as the engine names them (models/digits.toml)
  tests/fixtures/digits/*.npy        the 360 held-out images and PyTorch's logits/probabilities
  tests/fixtures/digits/README.md    what the fixtures are and how they were made
  models/samples/<d>_a.png, <d>_b.png  one held-out digit per class, dark ink on light paper,
                                     at 64x64 (nearest neighbour) and at the native 8x8

Data: scikit-learn's bundled 8x8 handwritten digits (load_digits, no download), split with
train_test_split(test_size=0.2, random_state=0, stratify=y). Everything is seeded and runs
single-threaded with deterministic algorithms, so a rerun with the pinned versions of
scripts/requirements.txt reproduces the same files.

At the end the script checks its own output with numpy only (no torch): a plain numpy forward
pass over models/digits.safetensors must reproduce logits.npy, and the 64x64 sample PNGs,
decoded and box-averaged back to 8x8, must give back the network input and be classified as
their file names say.

Not used by the Rust build or CI. Usage (from the repository root):
  python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements.txt
  .venv/bin/python scripts/train_digits.py
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.numpy import load_file as load_safetensors_numpy
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parent.parent
MODEL_PATH = ROOT / "models" / "digits.safetensors"
SAMPLES_DIR = ROOT / "models" / "samples"
FIXTURES_DIR = ROOT / "tests" / "fixtures" / "digits"

SEED = 0
EPOCHS = 60
BATCH_SIZE = 32
LR = 1e-3
MIN_ACCURACY = 0.97  # hard floor; the target is >= 0.98
SAMPLE_SCALE = 8  # 8x8 -> 64x64
LOGIT_TOL = 1e-4

PACKAGES = ["torch", "scikit-learn", "numpy", "safetensors", "pillow"]


class DigitsCNN(nn.Module):
    """Exactly the network of models/digits.toml (NCHW)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv2d_1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2d_2 = nn.Conv2d(16, 32, 3, padding=1)
        self.dense_1 = nn.Linear(128, 64)
        self.dense_2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv2d_1(x)), 2)  # 16 x 4 x 4
        x = F.max_pool2d(F.relu(self.conv2d_2(x)), 2)  # 32 x 2 x 2
        x = torch.flatten(x, 1)  # 128, channel-major (C, H, W)
        x = F.relu(self.dense_1(x))
        return self.dense_2(x)  # logits


def to_pixels(values: np.ndarray) -> np.ndarray:
    """Digits values 0..16 (ink high) -> uint8 scan pixels, dark ink on light paper.

    pixel = 255 - round(value * 255 / 16); the one tie (value 8 -> 127.5) rounds to 128.
    """
    return (255 - np.rint(values.astype(np.float64) * 255.0 / 16.0)).astype(np.uint8)


# ---------------------------------------------------------------------------
# Independent numpy forward pass (used only by the final check).
# ---------------------------------------------------------------------------


def np_conv2d_same3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x [N, C, H, W], w [O, C, 3, 3], padding 1, stride 1, via im2col. Accumulates in f64."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.empty((n, c, kh, kw, h, wd), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i : i + h, j : j + wd]
    cols = cols.reshape(n, c * kh * kw, h * wd)  # rows ordered (c, i, j) like w's layout
    out = np.einsum("ok,nkp->nop", w.reshape(o, -1).astype(np.float64), cols)
    return out.reshape(n, o, h, wd) + b.astype(np.float64)[None, :, None, None]


def np_maxpool2(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def np_forward(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = np_maxpool2(np.maximum(np_conv2d_same3(x, weights["conv2d_1.weight"], weights["conv2d_1.bias"]), 0))
    x = np_maxpool2(np.maximum(np_conv2d_same3(x, weights["conv2d_2.weight"], weights["conv2d_2.bias"]), 0))
    x = x.reshape(x.shape[0], -1)  # C, H, W order
    x = np.maximum(x @ weights["dense_1.weight"].T.astype(np.float64) + weights["dense_1.bias"], 0)
    return x @ weights["dense_2.weight"].T.astype(np.float64) + weights["dense_2.bias"]


def numpy_check(y_test: np.ndarray) -> dict:
    """Re-check the written files with numpy + Pillow only."""
    weights = load_safetensors_numpy(str(MODEL_PATH))
    expected_shapes = {
        "conv2d_1.weight": (16, 1, 3, 3),
        "conv2d_1.bias": (16,),
        "conv2d_2.weight": (32, 16, 3, 3),
        "conv2d_2.bias": (32,),
        "dense_1.weight": (64, 128),
        "dense_1.bias": (64,),
        "dense_2.weight": (10, 64),
        "dense_2.bias": (10,),
    }
    assert set(weights) == set(expected_shapes), sorted(weights)
    for name, shape in expected_shapes.items():
        assert weights[name].shape == shape, (name, weights[name].shape)
        assert weights[name].dtype == np.float32, (name, weights[name].dtype)

    x_test = np.load(FIXTURES_DIR / "x_test.npy")
    logits = np.load(FIXTURES_DIR / "logits.npy")
    probs = np.load(FIXTURES_DIR / "probs.npy")
    pixels = np.load(FIXTURES_DIR / "pixels_test.npy")
    assert np.array_equal(np.load(FIXTURES_DIR / "y_test.npy"), y_test)

    ref = np_forward(weights, x_test)
    logit_err = float(np.abs(ref - logits).max())
    assert logit_err <= LOGIT_TOL, f"numpy forward differs from logits.npy by {logit_err}"
    ref_probs = np.exp(ref - ref.max(axis=1, keepdims=True))
    ref_probs /= ref_probs.sum(axis=1, keepdims=True)
    prob_err = float(np.abs(ref_probs - probs).max())
    assert prob_err <= LOGIT_TOL, f"numpy softmax differs from probs.npy by {prob_err}"
    np_acc = float((ref.argmax(axis=1) == y_test).mean())

    # pixels_test.npy, inverted and scaled, is the network input within half a grey level
    pix_err = float(np.abs((255.0 - pixels.astype(np.float64)) / 255.0 - x_test[:, 0]).max())
    assert pix_err <= 0.5 / 255 + 1e-9, pix_err

    sample_err = 0.0
    sample_results = []
    for d in range(10):
        for suffix, size in (("a", 8 * SAMPLE_SCALE), ("b", 8)):
            img = Image.open(SAMPLES_DIR / f"{d}_{suffix}.png")
            assert img.mode == "L" and img.size == (size, size), (d, suffix, img.mode, img.size)
            p = np.asarray(img, dtype=np.float64)
            k = size // 8
            p8 = p.reshape(8, k, 8, k).mean(axis=(1, 3))  # box average back to 8x8
            x = ((255.0 - p8) / 255.0)[None, None]  # invert, scale by 1/255
            out = np_forward(weights, x)[0]
            pred = int(out.argmax())
            # the same digit in x_test: the first of class d that logits.npy classifies correctly
            i = int(np.flatnonzero((y_test == d) & (logits.argmax(axis=1) == d))[0])
            err = float(np.abs(x - x_test[i]).max())
            sample_err = max(sample_err, err)
            assert err <= 1.0 / 255, (d, suffix, err)
            assert pred == d, f"{d}_{suffix}.png classified as {pred}"
            sample_results.append((f"{d}_{suffix}.png", pred, err))

    return {
        "logit_max_abs_err": logit_err,
        "prob_max_abs_err": prob_err,
        "numpy_accuracy": np_acc,
        "pixels_max_abs_err": pix_err,
        "sample_max_abs_err": sample_err,
        "samples": sample_results,
    }


def main() -> int:
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    versions = {p: version(p) for p in PACKAGES}
    versions["python"] = sys.version.split()[0]
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))

    digits = load_digits()
    X, y = digits.data, digits.target  # X: [1797, 64] float64 in 0..16
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=SEED, stratify=y
    )
    y_train = y_train.astype(np.int64)
    y_test = y_test.astype(np.int64)
    x_train = (X_train / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    x_test = (X_test / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    print(f"data: {len(x_train)} train, {len(x_test)} held out")

    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    xv = torch.from_numpy(x_test)

    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(SEED)

    def accuracy(x: torch.Tensor, y: np.ndarray) -> float:
        model.eval()
        with torch.no_grad():
            return float((model(x).argmax(1).numpy() == y).mean())

    for epoch in range(1, EPOCHS + 1):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for s in range(0, len(xt), BATCH_SIZE):
            idx = perm[s : s + BATCH_SIZE]
            opt.zero_grad()
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if epoch % 10 == 0 or epoch == 1:
            print(
                f"epoch {epoch:3d}  loss {total / len(xt):.4f}  "
                f"train {accuracy(xt, y_train):.4f}  held-out {accuracy(xv, y_test):.4f}"
            )

    model.eval()
    with torch.no_grad():
        logits_t = model(xv)
        probs_t = torch.softmax(logits_t, dim=1)
    logits = logits_t.numpy().astype("<f4")
    probs = probs_t.numpy().astype("<f4")
    pred = logits.argmax(1)
    train_acc = accuracy(xt, y_train)
    test_acc = float((pred == y_test).mean())
    n_correct = int((pred == y_test).sum())
    print(f"final: train accuracy {train_acc:.4f}, held-out accuracy {test_acc:.4f} ({n_correct}/{len(y_test)})")
    if test_acc < MIN_ACCURACY:
        print(f"error: held-out accuracy {test_acc:.4f} is below {MIN_ACCURACY}", file=sys.stderr)
        return 1

    # --- weights -----------------------------------------------------------
    MODEL_PATH.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: p.detach().to(torch.float32).contiguous().clone()
        for name, p in model.named_parameters()
    }
    save_file(tensors, str(MODEL_PATH))

    # --- fixtures ----------------------------------------------------------
    FIXTURES_DIR.mkdir(parents=True, exist_ok=True)
    pixels_test = to_pixels(X_test.reshape(-1, 8, 8))
    arrays = {
        "x_test.npy": np.ascontiguousarray(x_test, dtype="<f4"),
        "y_test.npy": np.ascontiguousarray(y_test, dtype="<i8"),
        "logits.npy": np.ascontiguousarray(logits, dtype="<f4"),
        "probs.npy": np.ascontiguousarray(probs, dtype="<f4"),
        "pixels_test.npy": np.ascontiguousarray(pixels_test, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        np.save(FIXTURES_DIR / name, arr)

    # --- sample pictures ---------------------------------------------------
    SAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    sample_index = {}
    for d in range(10):
        i = int(np.flatnonzero((y_test == d) & (pred == d))[0])
        sample_index[d] = i
        img8 = pixels_test[i]
        big = np.kron(img8, np.ones((SAMPLE_SCALE, SAMPLE_SCALE), dtype=np.uint8))
        Image.fromarray(big).save(SAMPLES_DIR / f"{d}_a.png", optimize=False)
        Image.fromarray(img8).save(SAMPLES_DIR / f"{d}_b.png", optimize=False)
    print("samples (class: held-out index): " + ", ".join(f"{d}: {i}" for d, i in sample_index.items()))

    max_logit = float(np.abs(logits).max())
    write_readme(versions, train_acc, test_acc, n_correct, len(y_test), max_logit)

    # --- independent numpy check --------------------------------------------
    check = numpy_check(y_test)
    print(
        "numpy check: forward pass vs logits.npy max |diff| "
        f"{check['logit_max_abs_err']:.3e} (tolerance {LOGIT_TOL:g}); softmax vs probs.npy "
        f"{check['prob_max_abs_err']:.3e}; numpy accuracy {check['numpy_accuracy']:.4f}"
    )
    print(f"numpy check: pixels_test.npy -> input max |diff| {check['pixels_max_abs_err']:.5f} (<= 0.5/255)")
    print(
        f"numpy check: 20 sample PNGs decoded -> input max |diff| {check['sample_max_abs_err']:.5f} "
        f"(<= 1/255 = {1 / 255:.5f}); all classified as their file names say"
    )

    # --- summary -----------------------------------------------------------
    print("\nsummary")
    print("  versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"  held-out accuracy {test_acc:.4f} ({n_correct}/{len(y_test)}), train accuracy {train_acc:.4f}")
    print(f"  max |logit| {max_logit:.4f}")
    print("  files:")
    files = [MODEL_PATH] + sorted(FIXTURES_DIR.iterdir()) + sorted(SAMPLES_DIR.iterdir())
    for f in files:
        print(f"    {f.relative_to(ROOT)}  {f.stat().st_size} bytes")
    return 0


def write_readme(versions: dict, train_acc: float, test_acc: float, n_correct: int, n: int, max_logit: float) -> None:
    v = versions
    text = f"""# Digits fixtures

Reference data for the `digits` model (`models/digits.toml`, weights `models/digits.safetensors`),
written by `scripts/train_digits.py`. All `.npy` files are numpy format 1.0, little-endian, C order.

| file | dtype | shape | what it is |
|---|---|---|---|
| `x_test.npy` | float32 | [{n}, 1, 8, 8] | the held-out images as the network sees them: `value / 16` (light ink on dark, 0..1) |
| `y_test.npy` | int64 | [{n}] | their true classes 0..9 |
| `logits.npy` | float32 | [{n}, 10] | PyTorch's logits for `x_test` (trained model, eval mode, float32): the output of `dense_2` |
| `probs.npy` | float32 | [{n}, 10] | `softmax(logits)` computed by PyTorch in float32: the model's final output (`activation_1`) |
| `pixels_test.npy` | uint8 | [{n}, 8, 8] | the same digits as a scan shows them, dark ink on light paper: `255 - round(value * 255 / 16)` (value 8 -> 127.5 rounds to 128). Preprocessed by `[input]` of `models/digits.toml` (`(255 - pixel) / 255`) they give `x_test` within 0.5/255 |

## How they were produced

- Data: scikit-learn's bundled `load_digits()` (1,797 8x8 images, values 0..16, ink high).
- Split: `train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)` -> 1,437 train,
  {n} held out, kept in the order the split returns them.
- Network (PyTorch, NCHW): Conv2d(1, 16, 3, padding=1) -> ReLU -> MaxPool2d(2) ->
  Conv2d(16, 32, 3, padding=1) -> ReLU -> MaxPool2d(2) -> Flatten (C, H, W) -> Linear(128, 64) ->
  ReLU -> Linear(64, 10).
- Training: Adam lr {LR:g}, cross-entropy, batch {BATCH_SIZE}, {EPOCHS} epochs, no augmentation;
  `torch.manual_seed(0)`, `np.random.seed(0)`, `torch.use_deterministic_algorithms(True)`,
  `torch.set_num_threads(1)`, shuffling from a `torch.Generator` seeded with 0.
- Versions: Python {v['python']}, torch {v['torch']}, scikit-learn {v['scikit-learn']},
  numpy {v['numpy']}, safetensors {v['safetensors']}, Pillow {v['pillow']} (pinned in
  `scripts/requirements.txt`).
- PyTorch's held-out accuracy: **{test_acc * 100:.2f} %** ({n_correct}/{n}); train accuracy
  {train_acc * 100:.2f} %. Max |logit| over the held-out set: {max_logit:.4f}.
- Checked by the script itself with numpy only: a plain numpy forward pass over
  `models/digits.safetensors` reproduces `logits.npy` within {LOGIT_TOL:g} (max abs) on all {n} images.

The sample pictures `models/samples/<d>_a.png` (64x64, each pixel an 8x8 block) and
`<d>_b.png` (native 8x8) are, for each class d, the first held-out image of that class that the
network classifies correctly, rendered like `pixels_test.npy`.

Regenerate (from the repository root; not part of the Rust build or CI):

```sh
python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements.txt
.venv/bin/python scripts/train_digits.py
```

Provenance for tests: generated by scripts/train_digits.py (PyTorch {v['torch']}, scikit-learn {v['scikit-learn']} load_digits, train_test_split test_size=0.2 random_state=0 stratify=y, seed 0); PyTorch held-out accuracy {test_acc * 100:.2f} % ({n_correct}/{n}).
"""
    (FIXTURES_DIR / "README.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
