"""benchmarks/gpu_check.sh on the CPU (issue 12 §6: kept tested up to the GPU-only step): the whole path runs,
starting its own embedded Postgres, encoding with the real model, writing every card to pgvector and comparing
with sentence-transformers; only the device and the item count differ on the GPU machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu", "--items", "96", "--sample",
                          "32", "--repeats", "1", "--out", str(out)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHON": sys.executable})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["items"] == 96 and report["target_e2e_items_per_s"] == 20000
    arms = {r["arm"]: r for r in report["results"]}
    assert {"st", "enc", "e2e → pgvector"} <= set(arms)
    assert arms["e2e → pgvector"]["items"] == 96 and report["e2e_items_per_s"] > 0
    # the project's encoder gives sentence-transformers' vectors (same model, fp32 on the CPU)
    assert arms["enc"]["min_cosine_vs_st"] >= 0.999
    assert "end to end:" in run.stdout
