"""rec.fresh_pool (revision 0026): the exploration slots read the 10,000 newest items from one compact table, and
rank exactly as the walk over rec.items they replace; mapping a new vector updates the pool.

Real embedded Postgres + pgvector: the planted data, trained, plus 10,200 older items with random collaborative
vectors (some without one), so that the 10,000-newest window, the 2,000 cut and items created since the refresh
all take part.
"""

from __future__ import annotations

import numpy as np
import pytest

from _retrieval_data import planted_database
from recplatform import db
from recplatform.retrieval import sql

RANK_FRESH = ("SELECT item_id, score FROM rec._rank_fresh(%s, %s::vector, %s, %s, %s, %s, NULL, %s, %s::interval, "
              "'exploration')")


@pytest.fixture(scope="module")
def pooled(services_settings):
    settings, dataset, cold = planted_database(services_settings, "pool")
    with db.transaction(settings) as conn:
        collab, dim = conn.execute("SELECT space_id, dimension FROM rec.embedding_models "
                                   "WHERE kind = 'collaborative' AND is_active").fetchone()
        conn.execute("""
            INSERT INTO rec.items (item_id, title, year, genres, content_hash, created_at)
            SELECT 'x' || g, 'Old item ' || g, 1950 + g % 70, ARRAY[(ARRAY['Drama','Comedy','Action'])[1 + g % 3]],
                   'h' || g, now() - interval '1 day' - g * interval '1 second'
            FROM generate_series(0, 10199) g""")
        conn.execute("""
            INSERT INTO rec.item_embeddings (space_id, item_id, embedding, content_hash)
            SELECT %s, 'x' || g, (SELECT array_agg(random() - 0.5) FROM generate_series(1, %s) d WHERE g IS NOT NULL)::vector,
                   'mapped'
            FROM generate_series(0, 10199) g WHERE g %% 20 <> 7""", (collab, dim))
        conn.execute("SELECT rec.refresh_item_priors()")
    with db.transaction(settings) as conn:  # created after the refresh: newer than the pool, no prior yet
        conn.execute("""
            INSERT INTO rec.items (item_id, title, year, genres, content_hash)
            SELECT 'new' || g, 'New item ' || g, 2020, ARRAY['Drama'], 'n' || g FROM generate_series(0, 29) g""")
        conn.execute("""
            INSERT INTO rec.item_embeddings (space_id, item_id, embedding, content_hash)
            SELECT %s, 'new' || g, (SELECT array_agg(random() - 0.5) FROM generate_series(1, %s) d WHERE g IS NOT NULL)::vector,
                   'mapped'
            FROM generate_series(0, 29) g WHERE g %% 3 <> 0""", (collab, dim))
    return settings, dataset, collab, dim


def ranked(conn, collab, query, params, *, walk: bool):
    with conn.transaction(force_rollback=True):
        if walk:
            conn.execute("SET LOCAL rec.fresh_pool = 'off'")
        return conn.execute(RANK_FRESH, (collab, query, *params)).fetchall()


def test_pool_holds_the_ten_thousand_newest_with_their_vectors(pooled):
    settings, _, collab, _ = pooled
    with db.connect(settings, autocommit=True) as conn:
        n, spaces, top, missing = conn.execute(
            "SELECT count(*), count(DISTINCT space_id), max(newness), count(*) FILTER (WHERE embedding IS NULL) "
            "FROM rec.fresh_pool").fetchone()
        assert (n, spaces, top) == (10_000, 1, 10_000) and missing > 0
        differing = conn.execute("""
            SELECT count(*) FROM rec.fresh_pool f JOIN rec.item_embeddings e USING (space_id, item_id)
            WHERE f.embedding IS DISTINCT FROM e.embedding""").fetchone()[0]
        newest = conn.execute("SELECT item_id FROM rec.items WHERE created_at < (SELECT min(refreshed_at) "
                              "FROM rec.item_priors) ORDER BY created_at DESC, item_id DESC LIMIT 10000").fetchall()
        pool = conn.execute("SELECT item_id FROM rec.fresh_pool ORDER BY newness").fetchall()
    assert differing == 0 and pool == newest


@pytest.mark.parametrize(("max_interactions", "genres", "min_year", "max_age"), [
    (5, None, None, None),
    (1000, None, None, None),  # every item counts: the 2,000 newest are scored
    (5, ["Drama"], None, None),
    (1000, ["Comedy"], 1990, None),
    (0, None, None, "2 days"),  # only the age rule admits items
])  # fmt: skip
def test_pool_ranks_exactly_like_the_walk(pooled, max_interactions, genres, min_year, max_age):
    settings, dataset, collab, dim = pooled
    rng = np.random.default_rng(max_interactions)
    with db.connect(settings, autocommit=True) as conn:
        warm = [r[0] for r in conn.execute("SELECT user_id FROM rec.user_embeddings WHERE space_id = %s "
                                           "AND kind = 'taste' ORDER BY user_id LIMIT 3", (collab,))]
        queries = [conn.execute("SELECT rec._fresh_query(%s, %s)::text", (u, collab)).fetchone()[0] for u in warm]
        queries += [None]  # no query vector: newest first
        ids = [r[0] for r in conn.execute("SELECT item_id FROM rec.items")]
        for query in queries:
            seen = list(rng.choice(ids, size=300, replace=False)) + ["new4", "x3"]
            params = (25, seen, genres, min_year, max_interactions, max_age)
            by_pool = ranked(conn, collab, query, params, walk=False)
            by_walk = ranked(conn, collab, query, params, walk=True)
            assert len(by_pool) == 25
            assert [i for i, _ in by_pool] == [i for i, _ in by_walk]
            np.testing.assert_allclose([s if s is not None else np.nan for _, s in by_pool],
                                       [s if s is not None else np.nan for _, s in by_walk], rtol=1e-6)
            assert not {i for i, _ in by_pool} & set(seen)
        with conn.transaction(force_rollback=True):  # and the pool is what was read: made stale, only new items pass
            conn.execute("UPDATE rec.fresh_pool SET n_users = n_users + 1000, created_at = created_at - interval '9 days'")
            stale = conn.execute(RANK_FRESH, (collab, queries[0], *params)).fetchall()
            assert {i for i, _ in stale} <= {f"new{g}" for g in range(30)}


def test_mapping_a_vector_updates_its_pool_row(pooled):
    settings, _, collab, dim = pooled
    with db.connect(settings) as conn:
        with conn.transaction(force_rollback=True):
            item = conn.execute("SELECT item_id FROM rec.fresh_pool WHERE embedding IS NULL "
                                "ORDER BY newness LIMIT 1").fetchone()[0]
            vec = np.random.default_rng(0).normal(size=dim).astype(np.float32)
            written = conn.execute(sql.UPSERT_MAPPED_ITEMS, {"space_id": collab, "ids": [item],
                                                             "vecs": [vec]}).fetchone()[0]
            pooled_vec = conn.execute("SELECT embedding FROM rec.fresh_pool WHERE space_id = %s AND item_id = %s",
                                      (collab, item)).fetchone()[0]
            assert written == 1 and pooled_vec is not None
            np.testing.assert_allclose(pooled_vec.to_numpy(), vec, rtol=1e-6)


def test_a_pool_of_another_space_is_not_read(pooled):
    """Between a training's activation and its priors refresh the pool belongs to the old space: the walk serves."""
    settings, _, collab, _ = pooled
    with db.connect(settings, autocommit=True) as conn:
        query = conn.execute("SELECT rec._fresh_query(user_id, %s)::text FROM rec.user_embeddings "
                             "WHERE space_id = %s AND kind = 'taste' LIMIT 1", (collab, collab)).fetchone()[0]
        params = (10, [], None, None, 5, None)
        expected = ranked(conn, collab, query, params, walk=True)
        with conn.transaction(force_rollback=True):
            # the pool now claims another space (any content space id will do): rec._rank_fresh must not use it
            other = conn.execute("SELECT space_id FROM rec.embedding_models WHERE kind = 'content' LIMIT 1").fetchone()[0]
            conn.execute("UPDATE rec.fresh_pool SET space_id = %s, embedding = NULL", (other,))
            assert conn.execute(RANK_FRESH, (collab, query, *params)).fetchall() == expected
