#!/usr/bin/env bash
# Set up a fresh virtual environment and run the main job: compile a model (default iat_student).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0
pip install -q -e .
export LOWLIGHT_EDGE_WEIGHTS="${LOWLIGHT_EDGE_WEIGHTS:-$(cd .. && pwd)/shared/weights}"
export LOWLIGHT_EDGE_DATA="${LOWLIGHT_EDGE_DATA:-$(cd .. && pwd)/shared/data}"  # eval/ and calib/ images
python -m export "${@:-iat_student}"
