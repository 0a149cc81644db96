#!/usr/bin/env python3
"""Overhead of the Python module: `dashgc.infer` against `dashgc run` on the same model and images.

    python dash-py/examples/overhead.py [--model models/deepsecure_cnn.onnx] [--images 100] [--rounds 3]

Both run the same per-image engine code (dash_host::inference::infer_one:
garble under fresh keys, encode, evaluate, decode and verify). Compared,
per round, alternating the two so that background load hits both alike:

* python: wall time of the `dashgc.infer(model, images)` call (numpy
  checks, the GIL released per image, results turned into numpy arrays);
* cli: the garble + evaluate + encode/decode seconds that `dashgc run
  --garbled-only --json` reports for the same images (its own per-image
  loop; its quantisation, plaintext pass, forged-label check and process
  start are not counted; its whole wall time is printed too).

Prints one line per round and the medians; the overhead is
python / cli - 1. Needs the dashgc module installed and the CLI built
(`cargo build --release -p dash-host --bin dashgc`, or --dashgc PATH).
"""

import argparse
import gzip
import json
import platform
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
LABELS = REPO / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=REPO / "models" / "deepsecure_cnn.onnx")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dashgc", type=Path, default=REPO / "target" / "release" / "dashgc")
    args = ap.parse_args()

    import dashgc

    with gzip.open(IMAGES, "rb") as f:
        _, n, rows, cols = struct.unpack(">IIII", f.read(16))
        images = np.frombuffer(f.read(args.images * rows * cols), np.uint8).reshape(args.images, rows, cols)
    t = time.perf_counter()
    model = dashgc.Model.load(args.model)
    load_s = time.perf_counter() - t
    cmd = [
        str(args.dashgc), "run", "--model", str(args.model), "--mnist", str(IMAGES), str(LABELS),
        "--limit", str(args.images), "--garbled-only", "--json", "--per-image", "--device", "cpu",
    ]
    print(f"model {args.model.name}, {args.images} images, CPU {cpu_name()}, Model.load {load_s:.2f} s")
    py_s, cli_s, cli_wall_s = [], [], []
    for r in range(args.rounds):
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
        cli_wall = time.perf_counter() - t
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        cli = report["garble_seconds"] + report["eval_seconds"] + report["encode_decode_seconds"]

        t = time.perf_counter()
        result = dashgc.infer(model, images)
        py = time.perf_counter() - t

        cli_out = [im["garbled_output"] for im in report["per_image"]]
        if cli_out != result.outputs.tolist():
            print("the module's outputs differ from dashgc run's", file=sys.stderr)
            return 1
        py_s.append(py)
        cli_s.append(cli)
        cli_wall_s.append(cli_wall)
        print(f"round {r + 1}: python {py:.3f} s, cli {cli:.3f} s (process wall {cli_wall:.3f} s), "
              f"overhead {100 * (py / cli - 1):+.1f} %")
    py, cli = statistics.median(py_s), statistics.median(cli_s)
    print(f"median: python {py:.3f} s ({1e3 * py / args.images:.1f} ms/image), cli {cli:.3f} s "
          f"({1e3 * cli / args.images:.1f} ms/image), overhead {100 * (py / cli - 1):+.1f} %; "
          f"cli process wall {statistics.median(cli_wall_s):.3f} s")
    ratios = sorted(p / c - 1 for p, c in zip(py_s, cli_s))
    print(f"per-round overhead: median {100 * statistics.median(ratios):+.1f} %, "
          f"range {100 * ratios[0]:+.1f} % to {100 * ratios[-1]:+.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
