"""embed_precision=auto on CPUs with AVX-512 BF16 and no AMX: bf16 is measured against fp32 at load, kept only when
clearly faster and within 1e-4 cosine; the token budget defaults per device."""

from __future__ import annotations

import time

import numpy as np
import pytest

from recplatform.config import get_settings
from recplatform.embedding import clear_encoder_cache, load_encoder, loader
from recplatform.embedding.calibration import MIN_COSINE, calibrate, sample_batch
from recplatform.embedding.encoder import default_batch_tokens

ROWS = np.random.default_rng(0).normal(size=(8, 16))


def _forward(seconds: float, rows: np.ndarray):
    def forward(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        time.sleep(seconds)
        return rows

    return forward


IDS = MASK = np.ones((8, 4), dtype=np.int64)


def test_bf16_kept_when_much_faster_and_close():
    found = calibrate(_forward(0.03, ROWS), _forward(0.002, ROWS + 1e-6), IDS, MASK)
    assert found.precision == "bf16" and found.speedup > 3 and found.min_cosine > 0.999999
    assert found.describe().startswith("auto: bf16 measured")


def test_fp32_kept_when_bf16_is_slower():
    found = calibrate(_forward(0.002, ROWS), _forward(0.02, ROWS), IDS, MASK)
    assert found.precision == "fp32" and found.speedup < 0.5


def test_fp32_kept_when_bf16_drifts_even_if_faster():
    drifted = ROWS + np.random.default_rng(1).normal(scale=0.2, size=ROWS.shape)
    found = calibrate(_forward(0.03, ROWS), _forward(0.002, drifted), IDS, MASK)
    assert found.precision == "fp32" and found.speedup > 3 and found.min_cosine < MIN_COSINE


@pytest.mark.parametrize(("flags", "amx", "expected"), [
    ({"avx512f", "avx512_bf16"}, False, "measure"),
    ({"avx512f", "avx512_bf16", "amx_bf16"}, True, "bf16"),
    ({"avx512f", "avx2"}, False, "fp32"),
])  # fmt: skip
def test_auto_precision_on_cpu_follows_the_bf16_instructions(monkeypatch, flags, amx, expected):
    import torch

    monkeypatch.setattr(loader, "cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert loader.pick_precision("auto", "cpu") == expected
    assert loader.pick_precision("fp32", "cpu") == "fp32"  # asked for, never measured


def test_sample_batch_is_fixed_and_card_sized():
    class Tokenizer:  # whitespace "tokens", enough to check shape and determinism
        def __call__(self, texts, **kwargs):
            width = max(len(t.split()) for t in texts)
            ids = np.array([[1] * len(t.split()) + [0] * (width - len(t.split())) for t in texts])
            return {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64)}

    ids, mask = sample_batch(Tokenizer())
    again, _ = sample_batch(Tokenizer())
    assert ids.shape[0] == 64 and 20 <= ids.shape[1] <= 64 and ids.dtype == np.int64 and mask.all()
    np.testing.assert_array_equal(ids, again)


def test_token_budget_defaults_per_device_and_follows_the_setting(monkeypatch):
    assert (default_batch_tokens("cpu"), default_batch_tokens("cuda:0")) == (4096, 16384)
    clear_encoder_cache()
    get_settings.cache_clear()
    try:
        assert load_encoder("hashing:16").batch_tokens == 4096
        monkeypatch.setenv("RECPLATFORM_EMBED_BATCH_TOKENS", "512")
        get_settings.cache_clear()
        clear_encoder_cache()
        assert load_encoder("hashing:16").batch_tokens == 512
    finally:
        monkeypatch.delenv("RECPLATFORM_EMBED_BATCH_TOKENS")
        get_settings.cache_clear()
        clear_encoder_cache()


@pytest.mark.slow
def test_auto_on_this_cpu_says_what_it_measured(monkeypatch):
    """The real model: auto resolves to fp32 or bf16, and where it measured, the choice meets the cosine bar."""
    monkeypatch.delenv("RECPLATFORM_MODEL", raising=False)
    monkeypatch.delenv("RECPLATFORM_EMBED_PRECISION", raising=False)
    get_settings.cache_clear()
    encoder = load_encoder(None, "cpu")
    assert encoder.precision in {"fp32", "bf16"}
    if loader.pick_precision("auto", "cpu") == "measure":
        assert encoder.precision_source.startswith("auto: bf16 measured")
        cosine = float(encoder.precision_source.rsplit(" ", 1)[1])
        assert encoder.precision == "fp32" or cosine >= MIN_COSINE
