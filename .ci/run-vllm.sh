#!/usr/bin/env bash
# The real-vLLM stage: vLLM's CPU build in its own environment, then tests/vllm against it.
#
#   bash .ci/run-vllm.sh [VENV]        (default: .venv-vllm)
#
# One appliance with one real engine over a tiny model the tests build serves the stage; it takes
# a few minutes on two cores. The core test run never collects tests/vllm.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-vllm}"

began=$(date +%s)
bash .ci/setup-vllm.sh "$VENV"
echo "== real-vLLM environment: $(( $(date +%s) - began )) s"
"$VENV/bin/python" -m pytest -p no:cacheprovider -s --durations=0 tests/vllm \
    tests/reference/reference_encoder.py
