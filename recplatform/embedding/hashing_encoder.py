"""A fast deterministic text encoder for tests: signed hashes of words and character trigrams (``hashing:DIM``).

Texts that share words or word pieces get similar vectors, so unit tests can check "similar text → nearby vector"
without loading a transformer. Hashes are blake2b (stable across processes and Python runs, unlike ``hash()``).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)
_WORD_WEIGHT = 1.0
_TRIGRAM_WEIGHT = 0.35
_EMPTY_TOKEN = "\x00empty"


def parse_hashing_ref(model_ref: str) -> int | None:
    """The dimension of a ``hashing:DIM`` reference, None for any other reference."""
    if not model_ref.startswith("hashing:"):
        return None
    raw = model_ref.split(":", 1)[1]
    if not raw.isdigit() or not 2 <= int(raw) <= 65536:
        raise ValueError(f"model ref {model_ref!r}: DIM must be an integer between 2 and 65536")
    return int(raw)


def _hash(feature: str, dim: int) -> tuple[int, float]:
    digest = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little")
    return digest % dim, (1.0 if (digest >> 63) & 1 else -1.0)


@lru_cache(maxsize=200_000)
def _word_features(word: str, dim: int) -> tuple[tuple[int, float], ...]:
    index, sign = _hash("w:" + word, dim)
    features = [(index, sign * _WORD_WEIGHT)]
    padded = f"#{word}#"
    for i in range(len(padded) - 2):
        index, sign = _hash("c:" + padded[i : i + 3], dim)
        features.append((index, sign * _TRIGRAM_WEIGHT))
    return tuple(features)


def hashing_encode(texts: list[str], dim: int) -> np.ndarray:
    """Rows of unit L2 norm, float32, shape (len(texts), dim)."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        vector = out[row]
        for word in _WORD.findall(text.lower()):
            for index, value in _word_features(word, dim):
                vector[index] += value
        if not vector.any():  # empty text, or features that cancelled out exactly
            for index, value in _word_features(_EMPTY_TOKEN, dim):
                vector[index] += value
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out /= np.maximum(norms, 1e-12)
    return out
