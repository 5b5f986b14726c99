"""Whether bf16 autocast pays on this CPU: time fp32 against bf16 on one fixed sample batch at load, keep the faster.

CPUs with AVX-512 BF16 but no AMX tiles differ: bf16 ran ~2x fp32's speed for MiniLM on the reference AMD EPYC
and 0.75x on a Xeon (docs/pipeline.md), so ``embed_precision=auto`` measures there instead of guessing from flags.
bf16 is kept only when it is clearly faster and its pooled rows stay within ``MIN_COSINE`` of fp32's.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_SPEEDUP = 1.2  # bf16 must beat fp32 by this much (median of the rounds) to be kept
MIN_COSINE = 0.9999  # and agree with fp32 at least this well on every sample row
ROUNDS = 3
SAMPLE_ROWS = 64

# padded token ids and mask (int64) -> pooled rows, as in recplatform.embedding.encoder
Forward = Callable[[np.ndarray, np.ndarray], np.ndarray]

_WORDS = ("silent crimson hidden river kingdom promise garden horizon echo harbor mirror empire road storm lantern "
          "city story band misfits paper crime drama comedy family journey winter summer machine ocean").split()


@dataclass(frozen=True)
class Calibration:
    """What the load-time measurement found and chose."""

    precision: str  # "bf16" or "fp32"
    speedup: float  # fp32 seconds / bf16 seconds, median over the rounds
    min_cosine: float  # bf16 against fp32, worst sample row

    def describe(self) -> str:
        return f"auto: bf16 measured {self.speedup:.2f}x fp32 at min cosine {self.min_cosine:.6f}"


def sample_batch(tokenizer: Any, rows: int = SAMPLE_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """A fixed batch of item-card-like texts (~30 tokens each), padded: the same on every load."""
    texts = [f"Item {i}: " + " ".join(_WORDS[(i * 7 + j * 3) % len(_WORDS)] for j in range(20)) + "."
             for i in range(rows)]  # fmt: skip
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="np",
                        return_token_type_ids=False)  # fmt: skip
    return encoded["input_ids"].astype(np.int64), encoded["attention_mask"].astype(np.int64)


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def calibrate(fp32: Forward, bf16: Forward, ids: np.ndarray, mask: np.ndarray, rounds: int = ROUNDS) -> Calibration:
    """Warm both forwards up, then time them alternately ``rounds`` times; bf16 when fast and close enough."""
    reference, candidate = _unit(fp32(ids, mask)), _unit(bf16(ids, mask))  # warm-up (oneDNN builds its kernels)
    min_cosine = float(np.min(np.sum(reference * candidate, axis=1)))
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(rounds):
        for name, forward in (("fp32", fp32), ("bf16", bf16)):
            started = time.perf_counter()
            forward(ids, mask)
            times[name].append(time.perf_counter() - started)
    speedup = statistics.median(times["fp32"]) / max(statistics.median(times["bf16"]), 1e-9)
    chosen = "bf16" if speedup >= MIN_SPEEDUP and min_cosine >= MIN_COSINE else "fp32"
    return Calibration(precision=chosen, speedup=speedup, min_cosine=min_cosine)
