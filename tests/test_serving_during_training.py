"""Issue 9 item 5: serving never waits for a training or for an old space being dropped.

Each test parks the maintenance step on a lock wait (a reader's open snapshot, which both a plain DROP INDEX and a
CREATE INDEX CONCURRENTLY must wait for) and then serves a request and writes a content vector from other
sessions under a statement timeout. With a plain DROP/CREATE INDEX inside the copy transaction, the pending
ACCESS EXCLUSIVE lock queues every later reader and writer of the table behind it and both time out.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from recplatform import db
from recplatform.datasets.synthetic import generate_synthetic
from recplatform.embedding import spaces
from recplatform.retrieval import training

from _retrieval_data import load_dataset

WAITING_MAINTENANCE = """
SELECT count(*) FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND query ~* '(CREATE|DROP) INDEX|DELETE FROM rec\\.embedding_models'
"""


@pytest.fixture
def trained(db_settings, monkeypatch):
    """A fresh database with 60 users, 40 items (content vectors from hashing:64), one collaborative space."""
    monkeypatch.setenv("RECPLATFORM_MODEL", "hashing:64")
    from recplatform.config import get_settings

    get_settings.cache_clear()
    settings = db_settings.model_copy(update={"model": "hashing:64"})
    load_dataset(settings, generate_synthetic(60, 40, seed=5, signal=1.5))
    training.train_collaborative_space(settings)
    return settings


def _serve_and_write(settings) -> list[tuple]:
    """One rec.recommend and one content-vector upsert, each allowed 5 s."""
    with db.connect(settings, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '5s'")
        served = conn.execute("SELECT item_id, source FROM rec.recommend('u1', 5)").fetchall()
        conn.execute("UPDATE rec.item_embeddings SET embedded_at = now() "
                     "WHERE space_id = rec.active_space_id('content') AND item_id = 'i1'")
    return served


def _while_parked(settings, step) -> tuple[list[tuple], dict]:
    """Run ``step`` in a thread while a reader holds a snapshot on the vector tables; serve once it waits."""
    result: dict = {}
    holder = db.connect(settings, vector=False)
    holder.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        holder.execute("SELECT count(*) FROM rec.item_embeddings").fetchone()  # snapshot + ACCESS SHARE, kept open
        holder.execute("SELECT count(*) FROM rec.user_embeddings").fetchone()

        def run():
            try:
                result["value"] = step()
            except BaseException as exc:  # reported by the test below
                result["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 120
        with db.connect(settings, autocommit=True, vector=False) as probe:
            while not probe.execute(WAITING_MAINTENANCE).fetchone()[0]:
                assert thread.is_alive() and time.monotonic() < deadline, result
                time.sleep(0.05)
        served = _serve_and_write(settings)  # the maintenance step is parked on the reader: serving must not be
    finally:
        holder.rollback()
        holder.close()
    thread.join(120)
    assert "error" not in result, result.get("error")
    return served, result


def test_a_recommend_completes_while_a_training_builds_its_space(trained):
    before = spaces.active_space(trained, spaces.COLLABORATIVE)
    served, result = _while_parked(trained, lambda: training.train_collaborative_space(trained))
    assert served and {source for _item, source in served} <= {"taste", "onboarding", "exploration"}
    after = spaces.active_space(trained, spaces.COLLABORATIVE)
    assert after.space_id == result["value"].space_id != before.space_id
    with db.connect(trained, autocommit=True, vector=False) as conn:
        # the new space's index exists and is valid, built concurrently after its vectors were written
        valid = conn.execute(
            "SELECT c.relname, x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
            "WHERE c.relname LIKE %s ORDER BY 1", (f"%hnsw_{after.space_id}%",)).fetchall()
        assert valid == [(f"item_embeddings_hnsw_{after.space_id}", True)]  # tastes get no HNSW index
        assert conn.execute("SELECT count(*) FROM rec.recommend('u1', 5)").fetchone()[0] == 5


def test_dropping_an_old_space_does_not_block_serving(trained):
    old = spaces.active_space(trained, spaces.COLLABORATIVE)
    training.train_collaborative_space(trained)  # `old` is now inactive: the one kept beside the active space
    with db.connect(trained, autocommit=True, vector=False) as conn:
        vectors = conn.execute("SELECT (SELECT count(*) FROM rec.item_embeddings WHERE space_id = %(s)s) + "
                               "(SELECT count(*) FROM rec.user_embeddings WHERE space_id = %(s)s) + "
                               "(SELECT count(*) FROM rec.item_neighbors WHERE space_id = %(s)s)",
                               {"s": old.space_id}).fetchone()[0]
    served, result = _while_parked(trained, lambda: spaces.drop_space(trained, old.space_id, batch=7))
    assert served and result["value"] == vectors > 7  # several batches
    with db.connect(trained, autocommit=True, vector=False) as conn:
        assert conn.execute("SELECT count(*) FROM rec.embedding_models WHERE space_id = %s",
                            (old.space_id,)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE %s",
                            (f"%hnsw_{old.space_id}%",)).fetchone()[0] == 0


def test_the_active_space_cannot_be_dropped(trained):
    active = spaces.active_space(trained, spaces.COLLABORATIVE)
    with pytest.raises(ValueError, match="is active"):
        spaces.drop_space(trained, active.space_id)
    assert spaces.active_space(trained, spaces.COLLABORATIVE).space_id == active.space_id


def test_a_space_left_building_by_a_killed_training_is_dropped_by_the_next_one(trained):
    """A training killed half-way leaves an inactive *building* space (vectors, maybe an invalid index)."""
    orphan = spaces.register_space(trained, "collaborative/killed", spaces.COLLABORATIVE, "als:f8", 9, "",
                                   {"indexes": "deferred"})
    with db.transaction(trained) as conn:
        conn.execute("INSERT INTO rec.item_embeddings (space_id, item_id, embedding, content_hash) "
                     "SELECT %s, item_id, array_fill(0.5, ARRAY[9])::vector, 'trained' FROM rec.items", (orphan.space_id,))
    new = training.train_collaborative_space(trained)
    with db.connect(trained, autocommit=True, vector=False) as conn:
        assert conn.execute("SELECT count(*) FROM rec.embedding_models WHERE space_id = %s",
                            (orphan.space_id,)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM rec.item_embeddings WHERE space_id = %s",
                            (orphan.space_id,)).fetchone()[0] == 0
    assert spaces.active_space(trained, spaces.COLLABORATIVE).space_id == new.space_id


def test_a_training_that_fails_while_writing_leaves_the_serving_space_alone(trained, monkeypatch):
    before = spaces.active_space(trained, spaces.COLLABORATIVE)
    registered = spaces.list_spaces(trained, spaces.COLLABORATIVE)

    def broken(*_args, **_kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(training, "copy_vectors", broken)
    with pytest.raises(OSError, match="disk full"):
        training.train_collaborative_space(trained)
    assert spaces.list_spaces(trained, spaces.COLLABORATIVE) == registered  # the new space was dropped
    assert spaces.active_space(trained, spaces.COLLABORATIVE).space_id == before.space_id
    with db.connect(trained, autocommit=True, vector=False) as conn:
        assert conn.execute("SELECT count(*) FROM rec.recommend('u1', 5)").fetchone()[0] == 5
