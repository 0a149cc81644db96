#!/usr/bin/env python3
"""Train a small CNN with PyTorch on real MNIST images, export it to ONNX, run it privately.

    python dash-py/examples/train_mnist.py [--train 4000] [--test 200] [--epochs 4]

Needs torch (CPU is enough), numpy and the dashgc module (`pip install ./dash-py`);
`torch.onnx.export` may also want the `onnx` package. Everything runs in under a
minute on 2 cores.

Data: the repository bundles the MNIST *test* set only (data/mnist/, 10,000
images; the training set is not committed). The network trains on the first
--train of those images and is scored on --test images taken from the last
5,000, so training and scoring images never overlap.

Steps: train (Adam, cross-entropy, inputs x/255 as dashgc's input_scale
declares), export to ONNX, load with dashgc (quantised with proved ranges),
print the costs, run private inference locally on the test images (garble,
evaluate, decode and verify each) with a progress line, compare with the
float model, then run a few images through a Server and a Client on loopback.
"""

import argparse
import gzip
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MNIST = REPO / "data" / "mnist"


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        magic = struct.unpack(">I", f.read(4))[0]
        dims = struct.unpack(">" + "I" * (magic & 0xFF), f.read(4 * (magic & 0xFF)))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(dims)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=4000, help="training images (from the start of the set)")
    ap.add_argument("--test", type=int, default=100, help="images run privately (from the last 5,000)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="where to write the ONNX file (default: a temporary one)")
    args = ap.parse_args()
    if not 0 < args.train <= 5000 or not 0 < args.test <= 5000:
        ap.error("--train and --test take 1 to 5,000 images each (they come from disjoint halves of the set)")

    import torch
    import torch.nn as nn

    import dashgc

    torch.manual_seed(args.seed)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    images = read_idx(MNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    train_x, train_y = images[: args.train], labels[: args.train]
    test_x, test_y = images[5000 : 5000 + args.test], labels[5000 : 5000 + args.test]

    # DeepSecure's shape, narrower: one strided convolution, two dense layers, ReLU.
    net = nn.Sequential(
        nn.Conv2d(1, 5, kernel_size=5, stride=2),  # 5 x 12 x 12
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 12 * 12, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    t0 = time.perf_counter()
    x = torch.from_numpy(train_x.copy()).float().unsqueeze(1) / 255.0
    y = torch.from_numpy(train_y)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 100):
            idx = perm[i : i + 100]
            opt.zero_grad()
            loss = loss_fn(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss.item():.3f}")
    net.eval()
    with torch.no_grad():
        float_pred = net(torch.from_numpy(test_x.copy()).float().unsqueeze(1) / 255.0).argmax(1).numpy()
    print(f"trained on {args.train} images in {time.perf_counter() - t0:.1f} s; "
          f"float accuracy on {args.test} held-out images: {100 * (float_pred == test_y).mean():.1f} %")

    out = args.out or Path(tempfile.mkdtemp()) / "mnist_cnn.onnx"
    dummy = torch.zeros(1, 1, 28, 28)
    try:
        torch.onnx.export(net, (dummy,), str(out), dynamo=False, opset_version=13,
                          input_names=["input"], output_names=["logits"])
    except TypeError:  # a torch without the `dynamo` argument
        torch.onnx.export(net, (dummy,), str(out), opset_version=13, input_names=["input"], output_names=["logits"])
    print(f"exported {out} ({out.stat().st_size} bytes)")

    model = dashgc.Model.load(out, input_scale=1 / 255, input_range=(0, 255))
    costs = model.costs()
    print(f"{model!r}\ncosts: {costs['ciphertexts']} ciphertexts, {costs['bytes_per_image'] / 1e6:.2f} MB of material "
          f"and {costs['online_bytes_per_image'] / 1e3:.1f} KB online per image, CRT base {costs['base']}")

    def progress(done: int, total: int) -> None:
        if done % 25 == 0 or done == total:
            print(f"private inference: {done}/{total} images", flush=True)

    batch = test_x[:, None]  # (N, 1, 28, 28) uint8 pixels: the integers the model declares
    result = dashgc.infer(model, batch, progress=progress)
    private = result.predictions
    assert (result.outputs == model.eval_plain(batch)).all(), "garbled outputs differ from the integer network"
    t = result.timings
    print(f"private accuracy {100 * (private == test_y).mean():.1f} % (float {100 * (float_pred == test_y).mean():.1f} %, "
          f"same prediction on {100 * (private == float_pred).mean():.1f} % of images); every output label verified")
    print(f"per image: garble {1e3 * t['garble'] / args.test:.1f} ms, evaluate {1e3 * t['evaluate'] / args.test:.1f} ms; "
          f"{result.bytes['material'] / args.test / 1e6:.2f} MB material")

    with dashgc.Server(model) as server, dashgc.Client(server.address, model) as client:
        remote = client.infer(batch[:10])
    assert (remote.outputs == result.outputs[:10]).all()
    print(f"client/server on {server.address}: 10 images, predictions {remote.predictions.tolist()}, "
          f"online {remote.bytes['online'] / 10 / 1e3:.1f} KB and {1e3 * remote.timings['online'] / 10:.1f} ms per image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
