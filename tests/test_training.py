"""Training and fold-in against real Postgres: the SQL strengths and batched solver, one training at a time,
versioned tastes, new items mapped without a retrain, and maths that survives non-positive strengths."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from typer.testing import CliRunner

from recplatform import db
from recplatform.datasets.synthetic import generate_interaction_blocks, generate_synthetic
from recplatform.embedding import spaces
from recplatform.ingest import add_interactions, upsert_items
from recplatform.retrieval import als, item_map, taste, training
from recplatform.retrieval.storage import load_interactions
from recplatform.workers import enqueue

from _retrieval_data import load_dataset

ACTIVE_TASTE = ("SELECT t.embedding, t.version FROM rec.user_embeddings t JOIN rec.embedding_models m "
                "ON m.space_id = t.space_id AND m.is_active AND m.kind = 'collaborative' "
                "WHERE t.user_id = %s AND t.kind = 'taste'")


def rows(settings, query, params=()):
    with db.connect(settings, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture
def small(db_settings, monkeypatch):
    """A fresh database with 60 users, 40 items (content vectors from hashing:64) and their interactions."""
    monkeypatch.setenv("RECPLATFORM_MODEL", "hashing:64")
    from recplatform.config import get_settings

    get_settings.cache_clear()
    settings = db_settings.model_copy(update={"model": "hashing:64"})
    dataset = generate_synthetic(60, 40, seed=11, signal=1.5)
    load_dataset(settings, dataset)
    return settings, dataset


# ----- the maths at scale --------------------------------------------------------------------------------------
def test_batched_solver_equals_the_row_by_row_fold_in():
    rng = np.random.default_rng(0)
    n_rows, n_cols, f = 300, 80, 8
    lengths = rng.integers(0, 40, n_rows)  # some rows empty, lengths of every size
    u = np.repeat(np.arange(n_rows), lengths)
    i = np.concatenate([rng.choice(n_cols, k, replace=False) for k in lengths])
    s = rng.gamma(1.0, 1.0, len(u))
    data = als.to_csr(u, i, s, [f"u{n}" for n in range(n_rows)], [f"i{n}" for n in range(n_cols)])
    other = rng.normal(size=(n_cols, f))
    gram = other.T @ other
    old_batch = als.BATCH_ENTRIES
    try:
        als.BATCH_ENTRIES = 64  # force many batches, and rows longer than a batch
        got = als.solve_rows(other, gram, data, 0.5, 3.0)
    finally:
        als.BATCH_ENTRIES = old_batch
    base = gram + 0.5 * np.eye(f)
    for r in range(n_rows):
        idx, st = data.user_rows(r)
        want = als.fold_in(other[idx], st, base, 3.0) if len(idx) else np.zeros(f)
        np.testing.assert_allclose(got[r], want, rtol=1e-9, atol=1e-12)


def test_strengths_are_aggregated_in_sql_like_the_formula(db_settings):
    """weight × rating/rating_max × 2^(-Δt/half_life), Δt from the user's latest event, summed per pair."""
    t0 = datetime(2021, 1, 1, tzinfo=timezone.utc)
    with db.transaction(db_settings) as conn:  # the maths must hold for what the input CHECKs refuse: drop them here
        conn.execute("ALTER TABLE rec.interactions DROP CONSTRAINT IF EXISTS interactions_rating_range, "
                     "DROP CONSTRAINT IF EXISTS interactions_weight_range")
        conn.execute("INSERT INTO rec.users (user_id, content_hash) VALUES ('b', 'h'), ('a', 'h'), ('é', 'h')")
        conn.execute("INSERT INTO rec.items (item_id, title, content_hash) VALUES ('x', 'X', 'h'), ('y', 'Y', 'h')")
        events = [("a", "x", 5.0, 1.0, t0), ("a", "x", None, 2.0, t0 + timedelta(days=10)),
                  ("a", "y", 2.5, 1.0, t0 + timedelta(days=365)), ("b", "y", 4.0, 0.5, t0),
                  ("é", "x", 1.0, -3.0, t0)]  # a negative strength: the pair and the user are left out
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO rec.interactions (user_id, item_id, rating, weight, occurred_at) "
                            "VALUES (%s, %s, %s, %s, %s)", events)
    params = als.CollaborativeParams(half_life_days=100.0)
    with db.connect(db_settings, vector=False) as conn, conn.transaction():
        data = load_interactions(conn, params)
    assert data.user_ids == ["a", "b"] and data.item_ids == ["x", "y"]
    dense = np.zeros((2, 2))
    for r in range(2):
        idx, s = data.user_rows(r)
        dense[r, idx] = s
    decay = lambda days: 2.0 ** (-days / 100.0)  # noqa: E731
    want = np.array([[1.0 * decay(365) + 2.0 * decay(365 - 10), 0.5], [0.0, 0.5 * 0.8]])
    np.testing.assert_allclose(dense, want, rtol=1e-9)
    newest = dict(rows(db_settings, "SELECT user_id, max(interaction_id) FROM rec.interactions GROUP BY 1"))
    assert list(data.versions) == [newest["a"], newest["b"]]


def test_synthetic_blocks_are_skewed_and_sized():
    blocks = list(generate_interaction_blocks(500, 300, 20_000, seed=3, block_users=128))
    user = np.concatenate([b["user"] for b in blocks])
    item = np.concatenate([b["item"] for b in blocks])
    assert abs(len(user) - 20_000) < 500 and user.max() == 499 and item.max() < 300
    counts = np.sort(np.bincount(item, minlength=300))[::-1]
    assert counts[:30].sum() > 0.3 * len(item)  # popular items dominate (Zipf)
    for b in blocks:  # strictly increasing times within a user: no duplicate event keys
        order = np.lexsort((b["occurred_at"], b["user"]))
        same = b["user"][order][1:] == b["user"][order][:-1]
        assert np.all(np.diff(b["occurred_at"][order])[same] > 0)


# ----- item 10: non-positive strengths ------------------------------------------------------------------------
def test_users_without_positive_strength_are_skipped_in_training_and_fold_in(small):
    settings, _dataset = small
    when = datetime(2030, 1, 1, tzinfo=timezone.utc)
    with db.transaction(settings) as conn:  # what ingestion and the CHECK constraints refuse; the maths must hold anyway
        conn.execute("ALTER TABLE rec.interactions DROP CONSTRAINT IF EXISTS interactions_rating_range, "
                     "DROP CONSTRAINT IF EXISTS interactions_weight_range")
        conn.execute("INSERT INTO rec.interactions (user_id, item_id, rating, weight, occurred_at) VALUES "
                     "('u1', 'i1', 5, -1e300, %s), ('u2', 'i1', 0, 1, %s), ('u2', 'i2', 0, 1, %s)",
                     (when, when, when))
        conn.execute("DELETE FROM rec.interactions WHERE user_id IN ('u1', 'u2') AND occurred_at < %s", (when,))
    space = training.train_collaborative_space(settings)
    assert rows(settings, "SELECT count(*) FROM rec.user_embeddings WHERE space_id = %s AND user_id IN ('u1', 'u2')",
                (space.space_id,))[0][0] == 0
    assert taste.refresh_user_taste(["u1", "u2", "u3"], settings) == 1
    norms = rows(settings, "SELECT vector_norm(embedding) FROM rec.user_embeddings WHERE space_id = %s",
                 (space.space_id,))
    assert norms and all(np.isfinite(n) and n > 0 for (n,) in norms)  # taste vectors keep their norm (onboarding)
    assert all(np.isfinite(r[3]) for r in rows(settings, "SELECT * FROM rec.recommend('u3', 5)"))


# ----- item 6: one training at a time ---------------------------------------------------------------------------
def test_two_concurrent_trainings_never_overlap(small):
    settings, _ = small
    outcome: dict[str, object] = {}
    with db.connect(settings, autocommit=True, vector=False) as other:  # a training running elsewhere
        other.execute("SELECT pg_advisory_lock(%s)", (training.TRAIN_LOCK,))
        with pytest.raises(training.TrainingInProgressError, match="another collaborative training"):
            training.train_collaborative_space(settings)
        from recplatform.cli import app

        result = CliRunner().invoke(app, ["train"], env={"RECPLATFORM_DATABASE_NAME": settings.database_name,
                                                          "RECPLATFORM_STATE_DIR": str(settings.state_dir)})
        assert result.exit_code == 1 and "another collaborative training is running" in result.output
        from recplatform.workers.tasks import train_collaborative_space as task

        assert task.run() is None
        waiting = threading.Thread(target=lambda: outcome.update(
            space=training.train_collaborative_space(settings, wait=True)))
        waiting.start()
        time.sleep(1.0)
        assert waiting.is_alive() and spaces.active_space(settings, spaces.COLLABORATIVE) is None
        # the waiter holds no snapshot: the running training's CREATE INDEX CONCURRENTLY does not wait for it (a
        # waiter blocked in pg_advisory_lock did, while the training waited for its index: a hang, not an error)
        with db.connect(settings, autocommit=True, vector=False) as ddl:
            ddl.execute("SET statement_timeout = '20s'")
            ddl.execute("CREATE INDEX CONCURRENTLY items_title_while_waiting ON rec.items (title)")
            ddl.execute("DROP INDEX CONCURRENTLY rec.items_title_while_waiting")
        assert waiting.is_alive()
    waiting.join(120)  # the lock is released with the other connection: the waiting call trains now
    assert outcome["space"].is_active

    # two real trainings started together: one trains, the other is refused (and no activation interleaves)
    results: list[object] = []

    def run():
        try:
            results.append(training.train_collaborative_space(settings))
        except training.TrainingInProgressError as exc:
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    trained = [r for r in results if isinstance(r, spaces.Space)]
    assert len(trained) >= 1 and len(trained) + sum(isinstance(r, training.TrainingInProgressError)
                                                    for r in results) == 2
    assert spaces.active_space(settings, spaces.COLLABORATIVE).space_id == max(s.space_id for s in trained)


# ----- item 7: taste updates are never lost ---------------------------------------------------------------------
def test_an_older_fold_in_never_overwrites_a_newer_taste(small):
    settings, _ = small
    training.train_collaborative_space(settings)
    space = spaces.active_space(settings, spaces.COLLABORATIVE)
    with db.connect(settings) as late:  # a fold-in that read the history before new interactions arrived ...
        old = taste.fold_in_users(late, space, ["u5"])
        late.commit()
    add_interactions([{"user_id": "u5", "item_id": f"i{n}", "rating": 5,
                       "occurred_at": datetime(2030, 1, 1, tzinfo=timezone.utc)} for n in range(20, 30)],
                     settings=settings)
    assert taste.refresh_user_taste(["u5"], settings) == 1  # ... a newer refresh commits first
    (newer, version), = rows(settings, ACTIVE_TASTE, ("u5",))
    assert old.versions[0] < version
    with db.transaction(settings) as conn:  # ... then the late one writes
        assert taste.write_tastes(conn, space, old) == 0
    (now, now_version), = rows(settings, ACTIVE_TASTE, ("u5",))
    assert now_version == version and np.allclose(newer.to_numpy(), now.to_numpy())


def test_interactions_during_a_training_reach_the_new_space(small):
    """A user who interacts while a training runs is folded into the new space once it is activated."""
    settings, _ = small
    with db.transaction(settings) as conn:  # u7 has no history when the trainings read theirs
        conn.execute("DELETE FROM rec.interactions WHERE user_id = 'u7'")
    first = training.train_collaborative_space(settings)
    result: dict[str, object] = {}
    holder = db.connect(settings, vector=False)
    try:
        with holder.transaction():  # blocks the activation (FOR UPDATE), not fold-ins (their FK checks share)
            holder.execute("SELECT 1 FROM rec.embedding_models WHERE space_id = %s FOR NO KEY UPDATE",
                           (first.space_id,))
            thread = threading.Thread(target=lambda: result.update(space=training.train_collaborative_space(settings)))
            thread.start()
            deadline = time.monotonic() + 120
            while len(spaces.list_spaces(settings, spaces.COLLABORATIVE)) < 2:  # the training has read its data
                assert time.monotonic() < deadline and thread.is_alive()
                time.sleep(0.05)
            # a cold user's first interactions arrive meanwhile
            add_interactions([{"user_id": "u7", "item_id": f"i{n}", "rating": 5,
                               "occurred_at": datetime(2030, 1, 1, tzinfo=timezone.utc)} for n in range(1, 6)],
                             settings=settings)
            taste.refresh_user_taste(["u7"], settings)  # the worker's refresh: into the space active now
            assert rows(settings, ACTIVE_TASTE, ("u7",))
    finally:
        holder.close()
    thread.join(120)
    assert result["space"].space_id != first.space_id and spaces.active_space(
        settings, spaces.COLLABORATIVE).space_id == result["space"].space_id
    (_vec, version), = rows(settings, ACTIVE_TASTE, ("u7",))
    assert version == rows(settings, "SELECT max(interaction_id) FROM rec.interactions WHERE user_id = 'u7'")[0][0]
    # served from their own history (5 items: the onboarding path, rec.retrieval_defaults.switch_after), not as cold
    assert {r[4] for r in rows(settings, "SELECT * FROM rec.recommend('u7', 5)")} == {"onboarding"}


def test_reconcile_finds_tastes_whose_refresh_was_lost(small, services_settings):
    settings, _ = small
    training.train_collaborative_space(settings)
    assert taste.stale_users(settings) == []
    add_interactions([{"user_id": "u9", "item_id": "i3", "rating": 4,
                       "occurred_at": datetime(2030, 1, 1, tzinfo=timezone.utc)}], settings=settings)  # no message
    assert taste.stale_users(settings) == ["u9"]
    broker = settings.model_copy(update={"broker_url": f"redis+socket://{services_settings.redis_socket}"
                                                      "?virtual_host=14"})
    result = enqueue.reconcile_spaces(broker, register=False)
    assert result.stale_tastes == 1
    app = enqueue.app_for(broker)
    with app.connection_for_write() as conn:
        message = conn.SimpleQueue("default", no_ack=True).get(timeout=5)
    assert message.headers["task"] == "recplatform.refresh_user_taste" and message.payload[0] == [["u9"]]
    taste.refresh_user_taste(["u9"], settings)  # what the worker does with it
    assert taste.stale_users(settings) == []


# ----- items 8 and 9: new items and training order --------------------------------------------------------------
NEW_ITEM = {"item_id": "fresh", "title": "The Frozen Harbor", "year": 2030, "genres": ["Drama", "Romance"],
            "description": "A quiet drama about a lonely robot in a forgotten village."}


def test_a_new_item_gets_a_collaborative_vector_from_the_worker_without_retraining(small):
    settings, _ = small
    space = training.train_collaborative_space(settings)
    upsert_items([NEW_ITEM], settings=settings)
    from recplatform.workers.tasks import embed_items

    embed_items.run(["fresh"])  # the worker's task: content vector, then the collaborative one
    (hash_,), = rows(settings, "SELECT content_hash FROM rec.item_embeddings WHERE space_id = %s "
                               "AND item_id = 'fresh'", (space.space_id,))
    assert hash_ == "mapped" and spaces.active_space(settings, spaces.COLLABORATIVE).space_id == space.space_id
    served = [r[1] for r in rows(settings, "SELECT * FROM rec.recommend('u12', 1000, true, NULL, NULL, NULL, "
                                           "'taste')")]
    assert "fresh" in served  # warm users can be recommended it


def test_training_before_the_content_embeddings_maps_items_once_they_arrive(db_settings, monkeypatch):
    """A training that ran before the load's content embeddings finished: items without interactions had no
    vector and there was no content map; once their content vectors exist they are mapped (worker or reconcile)."""
    monkeypatch.setenv("RECPLATFORM_MODEL", "hashing:64")
    from recplatform.config import get_settings

    get_settings.cache_clear()
    settings = db_settings.model_copy(update={"model": "hashing:64"})
    dataset = generate_synthetic(60, 40, seed=12, signal=1.5)
    dataset.interactions = dataset.interactions[~dataset.interactions.item_id.isin(["i38", "i39", "i40"])]
    content = load_dataset(settings, dataset)
    with db.transaction(settings) as conn:  # the embeddings of this load have not finished yet
        conn.execute("DELETE FROM rec.item_embeddings WHERE space_id = %s", (content.space_id,))
    space = training.train_collaborative_space(settings)
    have = {r[0] for r in rows(settings, "SELECT item_id FROM rec.item_embeddings WHERE space_id = %s",
                               (space.space_id,))}
    assert not {"i38", "i39", "i40"} & have
    from recplatform.embedding import pipeline
    from recplatform.workers.tasks import embed_items

    pipeline.embed_ids("item", [f"i{n}" for n in range(1, 39)], settings)  # embedded without mapping (--local)
    embed_items.run(["i39", "i40"])  # two of the late items through the worker
    mapped = {r[0] for r in rows(settings, "SELECT item_id FROM rec.item_embeddings WHERE space_id = %s "
                                           "AND content_hash = 'mapped'", (space.space_id,))}
    assert mapped == {"i39", "i40"}
    assert rows(settings, "SELECT count(*) FROM rec.coldstart_maps WHERE kind = 'content_to_item' AND is_active "
                          "AND target_space_id = %s", (space.space_id,))[0][0] == 1
    # i38 (and any item nobody interacted with) were embedded without mapping (--local): reconcile maps them
    unmapped = {r[0] for r in rows(settings, "SELECT i.item_id FROM rec.items i WHERE NOT EXISTS (SELECT 1 FROM "
                                             "rec.item_embeddings e WHERE e.space_id = %s AND e.item_id = i.item_id)",
                                   (space.space_id,))}
    assert "i38" in unmapped
    assert enqueue.reconcile_spaces(settings, register=False).mapped_items == len(unmapped)
    assert item_map.map_items(settings) == 0
