"""Shared fixtures: the repository, the dashgc CLI, the bundled MNIST test set, models."""

import gzip
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MNIST_IMAGES = REPO / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
MNIST_LABELS = REPO / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz"


def read_idx_images(path: Path, limit: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 2051, f"{path} is not an IDX image file"
        n = min(n, limit)
        return np.frombuffer(f.read(n * rows * cols), dtype=np.uint8).reshape(n, rows, cols)


@pytest.fixture(scope="session")
def mnist() -> np.ndarray:
    """The first 64 bundled MNIST test images, (64, 28, 28) uint8."""
    return read_idx_images(MNIST_IMAGES, 64)


@pytest.fixture(scope="session")
def dashgc_bin() -> Path:
    """The dashgc command-line tool ($DASHGC_BIN, else built here in release mode)."""
    given = os.environ.get("DASHGC_BIN")
    if given:
        return Path(given)
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "-p", "dash-host", "--bin", "dashgc"], cwd=REPO, check=True
    )
    return REPO / "target" / "release" / "dashgc"


@pytest.fixture(scope="session")
def mlp():
    import dashgc

    return dashgc.Model.load(REPO / "models" / "secureml_mlp.json")


@pytest.fixture(scope="session")
def cnn():
    import dashgc

    return dashgc.Model.load(REPO / "models" / "deepsecure_cnn.onnx", input_scale=1 / 255, input_range=(0, 255))
