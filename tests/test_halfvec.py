"""halfvec storage per space: a halfvec HNSW index, the same filters and full-precision scores as vector."""

from __future__ import annotations

import numpy as np
import pytest
from pgvector import Vector

from recplatform import db
from recplatform.embedding import spaces

DIM = 16
GENRES = ["Drama", "Comedy", "Horror"]


def _load(settings, rng: np.random.Generator, n: int = 400) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    with db.transaction(settings) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO rec.items (item_id, title, year, genres, content_hash) VALUES (%s, %s, %s, %s, 'h')",
                        [(f"i{j}", f"item {j}", 1950 + j % 60, [GENRES[j % 3]]) for j in range(n)])
    return vectors


def _space(settings, name: str, storage: str, vectors: np.ndarray) -> int:
    space = spaces.register_space(settings, name, spaces.CONTENT, "test", DIM, params={"storage": storage})
    with db.transaction(settings) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO rec.item_embeddings (space_id, item_id, embedding, content_hash) "
                        "VALUES (%s, %s, %s, 'h')",
                        [(space.space_id, f"i{j}", Vector(v)) for j, v in enumerate(vectors)])
        cur.execute("ANALYZE rec.item_embeddings")
    spaces.activate(settings, space.space_id)
    return space.space_id


def _exact(vectors: np.ndarray, query: np.ndarray, k: int, keep=lambda j: True) -> list[str]:
    cos = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    order = [j for j in np.argsort(-cos, kind="stable") if keep(j)]
    return [f"i{j}" for j in order[:k]]


def test_halfvec_space_indexes_halfvec_and_ranks_like_vector(db_settings):
    rng = np.random.default_rng(11)
    vectors = _load(db_settings, rng)
    queries = rng.standard_normal((20, DIM)).astype(np.float32)
    calls = [("SELECT * FROM rec.recommend_for_vector(%s, 10)", lambda j: True),
             ("SELECT * FROM rec.recommend_for_vector(%s, 10, genres => '{Comedy}', min_year => 1960)",
              lambda j: j % 3 == 1 and 1950 + j % 60 >= 1960)]
    results = {}
    for storage in ("vector", "halfvec"):
        space_id = _space(db_settings, f"test/{storage}", storage, vectors)
        with db.connect(db_settings, autocommit=True) as conn:
            (indexdef,) = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s",
                                       (f"item_embeddings_hnsw_{space_id}",)).fetchone()
            assert f"{storage}_cosine_ops" in indexdef and f"::{storage}({DIM})" in indexdef
            results[storage] = [[conn.execute(query, (Vector(q),)).fetchall() for q in queries] for query, _ in calls]
    for (query, keep), got_vector, got_half in zip(calls, results["vector"], results["halfvec"]):
        for q, rows_vector, rows_half in zip(queries, got_vector, got_half):
            truth = _exact(vectors, q, 10, keep)
            assert [r[1] for r in rows_vector] == truth  # 400 rows: the graph search is exact here
            assert [r[1] for r in rows_half] == truth
            # Scores are the full-precision cosine, not the halfvec one: identical to the vector space's.
            assert [r[3] for r in rows_half] == pytest.approx([r[3] for r in rows_vector], abs=1e-12)
            assert all(r[4] == "vector" for r in rows_half)


def test_unknown_storage_is_refused(db_settings):
    with pytest.raises(ValueError, match="params.storage"):
        spaces.register_space(db_settings, "bad", spaces.CONTENT, "test", DIM, params={"storage": "float16"})
    with db.connect(db_settings, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM rec.embedding_models").fetchone()[0] == 0
