"""Local inference (both parties in this process) against the dashgc CLI and the plaintext network."""

import json
import subprocess
import threading
import time

import numpy as np
import pytest

import dashgc
from conftest import MNIST_IMAGES, MNIST_LABELS, REPO


def cli_run(dashgc_bin, model_path, n, *extra):
    """`dashgc run --json --per-image` on the first n bundled MNIST images: the JSON object it prints."""
    out = subprocess.run(
        [
            str(dashgc_bin), "run", "--model", str(model_path), "--mnist", str(MNIST_IMAGES), str(MNIST_LABELS),
            "--limit", str(n), "--garbled-only", "--json", "--per-image", "--device", "cpu", *extra,
        ],
        cwd=REPO, check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_unplanned_circuit_equals_dashgc_run_no_plan(dashgc_bin, mnist):
    """`plan=False` is `dashgc run --no-plan`: the bigger circuit, the same integers as the planned one."""
    n = 3
    path = REPO / "models" / "deepsecure_cnn.onnx"
    unplanned = dashgc.Model.load(path, plan=False)
    planned = dashgc.Model.load(path)
    report = cli_run(dashgc_bin, path, n, "--no-plan")
    assert report["ciphertexts_per_image"] == unplanned.costs()["ciphertexts"]
    assert planned.costs()["ciphertexts"] < unplanned.costs()["ciphertexts"]
    got = dashgc.infer(unplanned, mnist[:n])
    assert [r["garbled_output"] for r in report["per_image"]] == got.outputs.tolist()
    assert got.outputs.tolist() == dashgc.infer(planned, mnist[:n]).outputs.tolist()


@pytest.mark.parametrize("name", ["secureml_mlp.json", "deepsecure_cnn.onnx"])
def test_local_inference_equals_dashgc_run(dashgc_bin, mnist, name):
    n = 6
    model = dashgc.Model.load(REPO / "models" / name)
    result = dashgc.infer(model, mnist[:n])
    report = cli_run(dashgc_bin, REPO / "models" / name, n)
    assert report["images"] == n and report["garbled_equals_plaintext"] and report["tamper_rejected"]
    per_image = report["per_image"]
    assert [r["garbled_prediction"] for r in per_image] == result.predictions.tolist()
    assert [r["garbled_output"] for r in per_image] == result.outputs.tolist()
    assert report["crt_moduli"] == model.base
    assert report["ciphertexts_per_image"] == model.costs()["ciphertexts"]
    assert report["garbled_bytes_per_image"] == model.costs()["bytes_per_image"]


def test_result_arrays_and_plaintext_twin(cnn, mnist):
    images = mnist[:5].reshape(5, 1, 28, 28)
    result = dashgc.infer(cnn, images)
    assert len(result) == result.images == 5
    assert result.outputs.dtype == np.int64 and result.outputs.shape == (5, cnn.output_len)
    assert result.predictions.dtype == np.int64 and result.predictions.shape == (5,)
    np.testing.assert_array_equal(result.outputs, cnn.eval_plain(images))
    np.testing.assert_array_equal(result.predictions, result.outputs.argmax(axis=1))
    np.testing.assert_allclose(result.logits, result.outputs / cnn.output_scale)
    # The quantised logits track the float model's (same arg-max on these digits).
    assert (result.logits.argmax(axis=1) == cnn.eval_float(images).argmax(axis=1)).all()
    costs = cnn.costs()
    assert result.bytes["material"] == 5 * costs["bytes_per_image"]
    assert result.bytes["online"] > 0
    assert costs["ciphertexts"] == sum(costs["layer_ciphertexts"]) > 0
    assert costs["base"] == cnn.base and len(costs["base"]) >= 3
    t = result.timings
    assert set(t) == {"garble", "evaluate", "encode_decode", "total"}
    assert 0 < t["garble"] + t["evaluate"] + t["encode_decode"] <= t["total"]


def test_accepts_any_integer_dtype_and_flat_images(mlp, mnist):
    x = mnist[:2]
    want = mlp.eval_plain(x)
    for images in (x.astype(np.int64), x.astype(np.uint16), x.reshape(2, 784), x.tolist()):
        np.testing.assert_array_equal(mlp.eval_plain(images), want)
    np.testing.assert_array_equal(dashgc.infer(mlp, x.astype(np.int32)).outputs, want)


def test_progress_callable_and_tqdm_like(mlp, mnist):
    calls = []
    dashgc.infer(mlp, mnist[:3], progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]

    class Bar:
        n = 0

        def update(self, k=1):
            self.n += k

    bar = Bar()
    dashgc.infer(mlp, mnist[:4], progress=bar)
    assert bar.n == 4

    def boom(done, total):
        raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):
        dashgc.infer(mlp, mnist[:2], progress=boom)
    with pytest.raises(TypeError, match="progress"):
        dashgc.infer(mlp, mnist[:1], progress=3)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((2, 28, 28), np.float32), "integer array"),
        (np.zeros((2, 28, 28), np.bool_), "integer array"),
        (np.zeros((2, 27, 27), np.uint8), "shape"),
        (np.zeros((28, 28), np.uint8), "pass a batch"),
        (np.zeros((0, 784), np.uint8), "shape|no images"),
        (np.full((1, 784), 256, np.int16), "outside the model's input range"),
        (np.full((1, 784), -1, np.int64), "outside the model's input range"),
        (np.full((1, 784), 2**64 - 1, np.uint64), "outside the model's input range"),
    ],
)
def test_bad_images_raise_value_error(mlp, bad, match):
    with pytest.raises(ValueError, match=match):
        dashgc.infer(mlp, bad)
    with pytest.raises(ValueError, match=match):
        mlp.eval_plain(bad)


def test_input_range_and_scale_are_the_models(mlp, cnn):
    assert cnn.input_range == (0, 255) and cnn.input_scale == pytest.approx(1 / 255)
    assert cnn.input_shape == [1, 28, 28] and cnn.output_len == 10
    assert mlp.input_range == (0, 255) and mlp.output_len == 10
    assert len(cnn.model_hash) == 64 and cnn.model_hash != mlp.model_hash
    assert repr(cnn).startswith("<dashgc.Model") and "ciphertexts per image" in repr(cnn)


def test_infer_releases_the_gil(mnist):
    # One MiniONN-MNIST image takes hundreds of milliseconds of Rust. A
    # Python thread keeps running meanwhile only if the GIL is released:
    # held, the longest pause between its iterations would be about the
    # whole inference.
    model = dashgc.Model.load(REPO / "models" / "minionn_mnist.onnx")
    done = threading.Event()
    stamps = []

    def ticker():
        while not done.is_set():
            stamps.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    start = time.perf_counter()
    dashgc.infer(model, mnist[:1])
    took = time.perf_counter() - start
    done.set()
    t.join()
    inside = [s for s in stamps if start <= s <= start + took]
    longest = max(np.diff([start] + inside + [start + took]))
    assert took > 0.1, f"the inference was too short ({took:.3f} s) to tell"
    assert longest < 0.4 * took, f"the Python thread stalled {longest:.3f} s of {took:.3f} s"
