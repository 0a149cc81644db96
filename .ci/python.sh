#!/usr/bin/env bash
# The Python module as a user installs it: a fresh virtual environment,
# `pip install ./dash-py` (maturin as PEP 517 backend builds the abi3
# wheel), then the pytest suite in dash-py/tests against the dashgc CLI.
# The PyTorch training example (dash-py/examples/train_mnist.py) is not run
# here: PyPI's torch wheel for Linux pulls the CUDA libraries (about 5 GB,
# minutes to install); see dash-py/README.md to run it by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

# The CLI the tests compare with (already built by .ci/protocol.sh: a no-op
# there; it also leaves dash-host built as the wheel's build wants it).
cargo build --release -p dash-host --bin dashgc

venv="target/ci-python-venv"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check ./dash-py pytest numpy
"$venv/bin/python" -c 'import dashgc; print("dashgc", dashgc.__version__, "from", dashgc.__file__)'

# From outside the source tree, so `import dashgc` is the installed wheel.
repo="$(pwd)"
(cd "$venv" && DASHGC_BIN="$repo/target/release/dashgc" "$repo/$venv/bin/python" -m pytest -q "$repo/dash-py/tests")
