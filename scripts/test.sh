#!/usr/bin/env bash
# Set up a fresh virtual environment and run the test suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0            # the CPU build; a bare `torch` would pull several GB of CUDA
pip install -q -e ".[dev]"
export LOWLIGHT_EDGE_WEIGHTS="${LOWLIGHT_EDGE_WEIGHTS:-$(cd .. && pwd)/shared/weights}"
export LOWLIGHT_EDGE_DATA="${LOWLIGHT_EDGE_DATA:-$(cd .. && pwd)/shared/data}"  # eval/ and calib/ images
# NNCF compiles its torch extension on first use (about 2 min on 2 cores): more than its 60 s default wait.
export NNCF_EXTENSION_LOAD_TIMEOUT="${NNCF_EXTENSION_LOAD_TIMEOUT:-900}"
python -m pytest -q "$@"
