#!/usr/bin/env python3
"""Train the SecureML MLP (784-128-128-10, ReLU) on MNIST with numpy only.

Reproducible on a CPU: fixed seed, fixed thread count, plain mini-batch Adam
with weight decay. Writes the model in the project's JSON model format
(version 1, described in dash-host/src/model.rs) and records the float test
accuracy measured on exactly the weights written (after rounding to the
stored decimal precision, evaluated in float64).

Usage:
    scripts/fetch-mnist.sh --train /tmp/mnist-train
    python3 scripts/train_mlp.py --train-dir /tmp/mnist-train \
        --out models/secureml_mlp.json

The test set is read from data/mnist/*.gz (committed). If --train-dir does
not hold the training files, the script runs scripts/fetch-mnist.sh to get
them. Takes a couple of minutes on two cores.
"""

import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import time

# One BLAS thread: runs repeat exactly, and on a shared two-core machine a
# threaded BLAS is far slower than a single thread.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_idx(path, magic, dims):
    """Read an IDX file (raw or .gz) of unsigned bytes with `dims` dimensions."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    (got,) = struct.unpack(">I", data[:4])
    if got != magic:
        raise ValueError(f"{path}: magic {got:#x}, expected {magic:#x}")
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {body.size} bytes of data for shape {shape}")
    return body.reshape(shape)


def load(images, labels):
    x = read_idx(images, 0x00000803, 3).reshape(-1, 784)
    y = read_idx(labels, 0x00000801, 1)
    if len(x) != len(y):
        raise ValueError("image and label counts differ")
    return x, y


def forward(params, x):
    """Float forward pass; returns logits and the hidden activations."""
    (w1, b1), (w2, b2), (w3, b3) = params
    h1 = np.maximum(x @ w1.T + b1, 0)
    h2 = np.maximum(h1 @ w2.T + b2, 0)
    return h2 @ w3.T + b3, (h1, h2)


def accuracy(params, x, y):
    logits, _ = forward(params, x)
    return float(np.mean(np.argmax(logits, axis=1) == y))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-dir", default="/tmp/mnist-train")
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "secureml_mlp.json"))
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--digits", type=int, default=6, help="significant digits stored per weight")
    args = ap.parse_args()

    train_images = os.path.join(args.train_dir, "train-images-idx3-ubyte")
    train_labels = os.path.join(args.train_dir, "train-labels-idx1-ubyte")
    if not (os.path.exists(train_images) and os.path.exists(train_labels)):
        subprocess.run([os.path.join(ROOT, "scripts", "fetch-mnist.sh"), "--train", args.train_dir], check=True)

    xtr, ytr = load(train_images, train_labels)
    xte, yte = load(
        os.path.join(ROOT, "data", "mnist", "t10k-images-idx3-ubyte.gz"),
        os.path.join(ROOT, "data", "mnist", "t10k-labels-idx1-ubyte.gz"),
    )
    # The model's input is pixel / 255 (recorded as input.scale in the file).
    scale = 1.0 / 255.0
    xtr = xtr.astype(np.float32) * np.float32(scale)
    xte32 = xte.astype(np.float32) * np.float32(scale)

    rng = np.random.default_rng(args.seed)
    sizes = [784, 128, 128, 10]
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_out, fan_in)).astype(np.float32)
        params.append([w, np.zeros(fan_out, dtype=np.float32)])

    # Adam state.
    m = [[np.zeros_like(p) for p in layer] for layer in params]
    v = [[np.zeros_like(p) for p in layer] for layer in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = 0
    n = len(xtr)
    onehot = np.eye(10, dtype=np.float32)
    start = time.time()
    for epoch in range(args.epochs):
        # Cosine learning-rate decay over the whole run.
        lr = args.lr * 0.5 * (1 + np.cos(np.pi * epoch / args.epochs))
        order = rng.permutation(n)
        for i in range(0, n, args.batch):
            idx = order[i : i + args.batch]
            x, t = xtr[idx], onehot[ytr[idx]]
            logits, (h1, h2) = forward(params, x)
            logits = logits - logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            g3 = (p - t) / len(idx)
            grads = []
            grads.append((g3.T @ h2, g3.sum(axis=0)))
            g2 = (g3 @ params[2][0]) * (h2 > 0)
            grads.append((g2.T @ h1, g2.sum(axis=0)))
            g1 = (g2 @ params[1][0]) * (h1 > 0)
            grads.append((g1.T @ x, g1.sum(axis=0)))
            grads.reverse()
            step += 1
            for li, (gw, gb) in enumerate(grads):
                gw = gw + args.weight_decay * params[li][0]
                for j, g in enumerate((gw, gb)):
                    m[li][j] = beta1 * m[li][j] + (1 - beta1) * g
                    v[li][j] = beta2 * v[li][j] + (1 - beta2) * g * g
                    mhat = m[li][j] / (1 - beta1**step)
                    vhat = v[li][j] / (1 - beta2**step)
                    params[li][j] -= (lr * mhat / (np.sqrt(vhat) + eps)).astype(np.float32)
        acc = accuracy(params, xte32, yte)
        print(f"epoch {epoch + 1:2d}  lr {lr:.2e}  test accuracy {acc:.4f}  ({time.time() - start:.0f} s)", flush=True)

    # Round to the stored precision, then measure the accuracy of exactly
    # what is written, in float64 (as the Rust reference computes).
    def rounded(a):
        return [float(f"{float(z):.{args.digits}g}") for z in a.ravel()]

    stored = [(rounded(w), rounded(b)) for w, b in params]
    params64 = [
        (np.array(w, dtype=np.float64).reshape(pw.shape), np.array(b, dtype=np.float64))
        for (w, b), (pw, _) in zip(stored, params)
    ]
    acc64 = accuracy(params64, xte.astype(np.float64) * scale, yte)
    print(f"stored model: float64 test accuracy {acc64:.4f}")

    layers = []
    for li, ((w, b), (pw, _)) in enumerate(zip(stored, params)):
        layers.append({"type": "dense", "inputs": int(pw.shape[1]), "outputs": int(pw.shape[0]), "weights": w, "bias": b})
        if li < len(stored) - 1:
            layers.append({"type": "relu"})
    model = {
        "format": "dash-model",
        "version": 1,
        "name": "secureml_mlp",
        "description": "SecureML MLP 784-128-128-10 with ReLU, trained on the MNIST training set by scripts/train_mlp.py",
        "input": {"shape": [784], "min": 0, "max": 255, "scale": scale},
        "layers": layers,
        "metrics": {"float_test_accuracy": acc64, "test_images": int(len(yte))},
        "training": {
            "script": "scripts/train_mlp.py",
            "seed": args.seed,
            "epochs": args.epochs,
            "batch": args.batch,
            "optimizer": "adam",
            "learning_rate": args.lr,
            "weight_decay": args.weight_decay,
            "numpy": np.__version__,
        },
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(model, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes) in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
