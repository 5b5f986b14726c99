"""Retrieval SQL functions against real Postgres+pgvector: planted tastes, exclusion, filters, roles, bad input.

One module-scoped database holds a synthetic dataset whose users' genre tastes the generator planted from their
demographics, embedded with the ``hashing:64`` encoder on the real templates, and a collaborative space
trained by ALS; 30 users keep only their demographics (cold start).
"""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from recplatform import db
from recplatform.retrieval import coldstart, taste, training

from _retrieval_data import load_dataset, planted_database

STRATEGIES = ["taste", "neighbors_vote", "neighbors_taste", "learned_map", "prompt", "popularity"]


@pytest.fixture(scope="module")
def planted(services_settings):
    return planted_database(services_settings, "retr")


def rows(settings, query, params=()):
    with db.connect(settings, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def item_genres(settings) -> dict[str, set[str]]:
    return {i: set(g) for i, g in rows(settings, "SELECT item_id, genres FROM rec.items")}


def affinity(weights: dict[str, float], genres: set[str]) -> float:
    return float(np.mean([weights[g] for g in genres])) if genres else 0.0


def test_training_stores_space_vectors_priors_and_map(planted):
    settings, dataset, cold = planted
    (space_id, dim, params), = rows(settings, "SELECT space_id, dimension, params FROM rec.embedding_models "
                                              "WHERE kind = 'collaborative' AND is_active")
    assert dim == params["factors"] + 1
    n_items = rows(settings, "SELECT count(*) FROM rec.item_embeddings WHERE space_id = %s", (space_id,))[0][0]
    assert n_items == len(dataset.items)  # trained items plus items mapped from content
    tastes = {r[0] for r in rows(settings, "SELECT user_id FROM rec.user_embeddings WHERE space_id = %s "
                                           "AND kind = 'taste'", (space_id,))}
    assert tastes == set(dataset.users.user_id) - cold
    assert rows(settings, "SELECT count(*) FROM rec.item_priors")[0][0] == len(dataset.items)
    assert rows(settings, "SELECT count(*) FROM rec.coldstart_maps WHERE is_active AND kind = "
                          "'demographic_to_taste'")[0][0] == 1
    # The per-space HNSW index exists (rebuilt after the bulk load).
    names = {r[0] for r in rows(settings, "SELECT indexname FROM pg_indexes WHERE schemaname = 'rec'")}
    assert f"item_embeddings_hnsw_{space_id}" in names


def test_fold_in_matches_training_user_step(planted):
    """refresh_user_taste recomputes the same vector that training stored (same formula, same factors)."""
    settings, dataset, cold = planted
    user = "u100"
    query = ("SELECT t.embedding FROM rec.user_embeddings t JOIN rec.embedding_models m ON m.space_id = t.space_id "
             "AND m.is_active AND m.kind = 'collaborative' WHERE t.user_id = %s AND t.kind = 'taste'")
    before = np.asarray(rows(settings, query, (user,))[0][0].to_numpy())
    assert taste.refresh_user_taste([user], settings) == 1
    after = np.asarray(rows(settings, query, (user,))[0][0].to_numpy())
    # taste vectors keep their norm (the onboarding path reads it as evidence): same direction, same length
    assert np.dot(before, after) / (np.linalg.norm(before) * np.linalg.norm(after)) > 0.98
    assert np.linalg.norm(after) == pytest.approx(np.linalg.norm(before), rel=0.05)


def test_warm_users_favour_their_planted_genres(planted):
    settings, dataset, cold = planted
    genres = item_genres(settings)
    prefs = dataset.truth["user_preferred_genres"]
    warm = [u for u in dataset.users.user_id if u not in cold][:60]
    hit_recs, hit_base = [], []
    for user in warm:
        recs = rows(settings, "SELECT item_id, source FROM rec.recommend(%s, 10, exploration_share => 0)", (user,))
        assert len(recs) == 10 and {s for _, s in recs} <= {"taste", "onboarding"}
        liked = set(prefs[user][:2])
        hit_recs.append(np.mean([bool(genres[i] & liked) for i, _ in recs]))
        hit_base.append(np.mean([bool(g & liked) for g in genres.values()]))
    assert np.mean(hit_recs) > np.mean(hit_base) + 0.15, (np.mean(hit_recs), np.mean(hit_base))


def test_cold_users_get_recommendations_in_their_planted_direction(planted):
    """Each cold user's list suits their own segment's planted genre weights better than other cold users' lists."""
    settings, dataset, cold = planted
    genres = item_genres(settings)
    segment = dataset.truth["user_segment"]
    weights = dataset.truth["segment_genre_weights"]
    users = sorted(cold)
    recs = {}
    for user in users:
        got = rows(settings, "SELECT item_id, source FROM rec.recommend(%s, 10, strategy => 'neighbors_vote', "
                             "popularity_weight => 0, exploration_share => 0)", (user,))
        assert len(got) == 10 and {s for _, s in got} == {"demographic_neighbors"}
        recs[user] = [i for i, _ in got]
    assert len({tuple(r) for r in recs.values()}) > len(users) // 2  # lists differ by demographics
    own, other = [], []
    for user in users:
        w = weights[segment[user]]
        own.append(np.mean([affinity(w, genres[i]) for i in recs[user]]))
        other.append(np.mean([np.mean([affinity(w, genres[i]) for i in recs[v]]) for v in users if v != user]))
    assert np.mean(own) > np.mean(other), (np.mean(own), np.mean(other))


def test_every_strategy_serves_cold_users_with_its_source(planted):
    settings, dataset, cold = planted
    expected = {"neighbors_vote": "demographic_neighbors", "neighbors_taste": "demographic_neighbors",
                "learned_map": "learned_map", "prompt": "demographic_prompt", "popularity": "popularity"}
    for strategy, source in expected.items():
        got = rows(settings, "SELECT item_id, source FROM rec.recommend('u1', 7, strategy => %s, "
                             "exploration_share => 0)", (strategy,))
        assert len(got) == 7 and {s for _, s in got} == {source}, strategy


def test_user_without_demographics_gets_popularity(planted):
    settings, dataset, cold = planted
    with db.transaction(settings) as conn:
        conn.execute("INSERT INTO rec.users (user_id, content_hash) VALUES ('nobody', 'h') ON CONFLICT DO NOTHING")
    got = rows(settings, "SELECT item_id, score, source FROM rec.recommend('nobody', 5, exploration_share => 0)")
    assert [s for *_, s in got] == ["popularity"] * 5
    top = rows(settings, "SELECT item_id FROM rec.item_priors ORDER BY popularity DESC, item_id LIMIT 5")
    assert [i for i, *_ in got] == [i for i, in top]


def test_exclusion_holds_when_user_has_seen_90_percent_of_a_genre(planted):
    settings, dataset, cold = planted
    genres = item_genres(settings)
    genre = "Western"
    in_genre = sorted(i for i, g in genres.items() if genre in g)
    user = "u200"
    already = {i for i, in rows(settings, "SELECT item_id FROM rec.interactions WHERE user_id = %s", (user,))}
    to_see = [i for i in in_genre if i not in already][: int(0.9 * len(in_genre)) - len(already & set(in_genre))]
    with db.transaction(settings) as conn:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO rec.interactions (user_id, item_id, rating) VALUES (%s, %s, 4)",
                            [(user, i) for i in to_see])
    taste.refresh_user_taste([user], settings)
    seen = {i for i, in rows(settings, "SELECT item_id FROM rec.interactions WHERE user_id = %s", (user,))}
    assert len(seen & set(in_genre)) >= 0.9 * len(in_genre) - 1
    qualifying = set(in_genre) - seen
    assert len(qualifying) >= 3
    for strategy in STRATEGIES:
        for k in (3, 100):
            got = rows(settings, "SELECT item_id FROM rec.recommend(%s, %s, genres => %s, strategy => %s)",
                       (user, k, [genre], strategy))
            ids = [i for i, in got]
            assert len(ids) == min(k, len(qualifying)), (strategy, k, len(ids), len(qualifying))
            assert not set(ids) & seen, strategy
            assert set(ids) <= qualifying, strategy
    # exclude_seen => false brings seen items back.
    got = rows(settings, "SELECT item_id FROM rec.recommend(%s, 100, false, %s)", (user, [genre]))
    assert len(got) == len(in_genre)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_filters_hold_for_every_strategy(planted, strategy):
    settings, dataset, cold = planted
    genres = item_genres(settings)
    years = dict(rows(settings, "SELECT item_id, year FROM rec.items"))
    for user in ("u2", "u150"):  # a cold user and a warm user
        got = rows(settings, "SELECT rank, item_id, score FROM rec.recommend(%s, 8, true, %s, 1990, 2015, %s)",
                   (user, ["Drama", "Comedy"], strategy))
        assert len(got) == 8
        assert [r for r, *_ in got] == list(range(1, 9))
        scores = [s for *_, s in got]
        assert scores == sorted(scores, reverse=True)
        for _, item, _ in got:
            assert genres[item] & {"Drama", "Comedy"} and 1990 <= years[item] <= 2015


def test_similar_items_and_vector_queries(planted):
    settings, dataset, cold = planted
    got = rows(settings, "SELECT item_id, source FROM rec.similar_items('i5', 10)")
    assert len(got) == 10 and "i5" not in [i for i, _ in got] and {s for _, s in got} == {"collaborative"}
    got = rows(settings, "SELECT item_id, source FROM rec.similar_items('i5', 10, space => 'content')")
    assert len(got) == 10 and {s for _, s in got} == {"content"}
    (vec,), = rows(settings, "SELECT e.embedding FROM rec.item_embeddings e JOIN rec.embedding_models m "
                             "ON m.space_id = e.space_id AND m.kind = 'content' AND m.is_active WHERE e.item_id = 'i9'")
    got = rows(settings, "SELECT item_id, score FROM rec.recommend_for_vector(%s, 5)", (vec,))
    assert got[0][0] == "i9" and got[0][1] == pytest.approx(1.0, abs=1e-5)


def test_explain_names_history_items_or_neighbours(planted):
    settings, dataset, cold = planted
    history = {i for i, in rows(settings, "SELECT item_id FROM rec.interactions WHERE user_id = 'u120'")}
    top = rows(settings, "SELECT item_id FROM rec.recommend('u120', 1)")[0][0]
    got = rows(settings, "SELECT source, reason, ref_id, similarity FROM rec.explain('u120', %s)", (top,))
    assert got and all(s == "taste" and r == "history_item" and ref in history for s, r, ref, _ in got)
    assert [g[3] for g in got] == sorted((g[3] for g in got), reverse=True)
    top = rows(settings, "SELECT item_id FROM rec.recommend('u3', 1, strategy => 'neighbors_vote')")[0][0]
    got = rows(settings, "SELECT source, reason, ref_id FROM rec.explain('u3', %s)", (top,))
    assert got and all(s == "demographic_neighbors" and r == "neighbor_user" for s, r, _ in got)
    for _, _, neighbour in got:
        assert rows(settings, "SELECT 1 FROM rec.interactions WHERE user_id = %s AND item_id = %s", (neighbour, top))


def test_new_interactions_make_a_cold_user_onboarding_then_warm(planted):
    settings, dataset, cold = planted
    user = "u30"
    assert {s for *_, s in rows(settings, "SELECT * FROM rec.recommend(%s, 3, exploration_share => 0)", (user,))} \
        == {"demographic_neighbors"}
    with db.transaction(settings) as conn:
        conn.execute("INSERT INTO rec.interactions (user_id, item_id, rating) VALUES (%s, 'i1', 5), (%s, 'i2', 4)",
                     (user, user))
    assert taste.refresh_user_taste([user], settings) == 1
    got = rows(settings, "SELECT item_id, source FROM rec.recommend(%s, 5, exploration_share => 0)", (user,))
    assert {s for _, s in got} == {"onboarding"} and not {"i1", "i2"} & {i for i, _ in got}
    with db.transaction(settings) as conn:  # past the switch point the taste vector serves alone
        conn.execute("UPDATE rec.retrieval_defaults SET switch_after = 2 WHERE user_type = 'onboarding'")
    try:
        got = rows(settings, "SELECT item_id, source FROM rec.recommend(%s, 5, exploration_share => 0)", (user,))
        assert {s for _, s in got} == {"taste"}
    finally:
        with db.transaction(settings) as conn:
            conn.execute("UPDATE rec.retrieval_defaults SET switch_after = 21 WHERE user_type = 'onboarding'")
    with db.transaction(settings) as conn:
        conn.execute("DELETE FROM rec.interactions WHERE user_id = %s", (user,))
    taste.refresh_user_taste([user], settings)


def test_defaults_table_drives_the_strategy(planted):
    settings, dataset, cold = planted
    with db.transaction(settings) as conn:
        conn.execute("UPDATE rec.retrieval_defaults SET strategy = 'learned_map' WHERE user_type = 'cold'")
    try:
        assert {s for *_, s in rows(settings, "SELECT * FROM rec.recommend('u4', 5, exploration_share => 0)")} \
            == {"learned_map"}
    finally:
        with db.transaction(settings) as conn:
            conn.execute("UPDATE rec.retrieval_defaults SET strategy = 'neighbors_vote' WHERE user_type = 'cold'")


def test_coldstart_map_is_applied_in_sql_like_numpy(planted):
    settings, dataset, cold = planted
    fit = coldstart.fit_demographic_map(settings)
    assert fit.map_id is not None and fit.n_users >= len(dataset.users) - len(cold)
    (demo,), = rows(settings, "SELECT e.embedding FROM rec.user_embeddings e JOIN rec.embedding_models m "
                              "ON m.space_id = e.space_id AND m.kind = 'content' AND m.is_active "
                              "WHERE e.user_id = 'u1' AND e.kind = 'demographic'")
    (mapped,), = rows(settings, "SELECT rec.apply_map(%s, %s)", (fit.map_id, demo))
    weights = rows(settings, "SELECT weights, bias FROM rec.coldstart_map_rows WHERE map_id = %s ORDER BY out_index",
                   (fit.map_id,))
    w = np.stack([np.asarray(r[0].to_numpy()) for r in weights])
    expected = w @ np.asarray(demo.to_numpy()) + np.array([r[1] for r in weights])
    np.testing.assert_allclose(np.asarray(mapped.to_numpy()), expected, rtol=1e-4, atol=1e-5)


def test_rec_reader_can_call_every_retrieval_function_but_write_nothing(planted):
    """With the read-only default lifted, the public functions still work and every write is denied by grants."""
    settings, dataset, cold = planted
    with psycopg.connect(settings.reader_url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        (vec,), = conn.execute("SELECT e.embedding::text FROM rec.item_embeddings e JOIN rec.embedding_models m "
                               "ON m.space_id = e.space_id AND m.kind = 'content' AND m.is_active "
                               "WHERE e.item_id = 'i5'").fetchall()
        assert len(conn.execute("SELECT item_id, source FROM rec.recommend('u150', 5)").fetchall()) == 5
        assert len(conn.execute("SELECT * FROM rec.recommend('u5', 5, strategy => 'neighbors_vote')").fetchall()) == 5
        assert conn.execute("SELECT count(*) FROM rec.similar_items('i5', 3)").fetchone()[0] == 3
        assert conn.execute("SELECT count(*) FROM rec.recommend_for_vector(%s::vector, 3)", (vec,)).fetchone()[0] == 3
        assert conn.execute("SELECT count(*) FROM rec.recommend_for_demographic_vector(%s::vector, 3)",
                            (vec,)).fetchone()[0] == 3
        top = conn.execute("SELECT item_id FROM rec.recommend('u150', 1)").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM rec.explain('u150', %s)", (top,)).fetchone()[0] >= 1
        assert conn.execute("SELECT max_k, max_genres FROM rec.limits()").fetchone() == (1000, 100)
        for statement in ("INSERT INTO rec.items (item_id, title, content_hash) VALUES ('x', 'x', 'x')",
                          "UPDATE rec.retrieval_defaults SET strategy = 'prompt'",
                          "DELETE FROM rec.user_embeddings",
                          "SELECT rec.refresh_item_priors()",
                          "CREATE TEMP TABLE scratch AS SELECT 1"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    assert rows(settings, "SELECT strategy FROM rec.retrieval_defaults WHERE user_type = 'cold'")[0][0] != "prompt"


@pytest.mark.parametrize("query, params, column, words", [
    ("SELECT * FROM rec.recommend('u150', 0)", (), "k", "between 1 and 1000"),
    ("SELECT * FROM rec.recommend('u150', 1001)", (), "k", "between 1 and 1000"),
    ("SELECT * FROM rec.recommend('u150', NULL)", (), "k", "NULL"),
    ("SELECT * FROM rec.recommend('u150', 5, true, '{}')", (), "genres", "non-empty"),
    ("SELECT * FROM rec.recommend('u150', 5, true, ARRAY[NULL]::text[])", (), "genres", "NULL"),
    ("SELECT * FROM rec.recommend('u150', 5, true, ARRAY['Drama', ' '])", (), "genres", "empty"),
    ("SELECT * FROM rec.recommend('u150', 5, true, NULL, 2010, 1990)", (), "min_year", "greater than max_year"),
    ("SELECT * FROM rec.recommend('u150', 5, true, NULL, -4)", (), "min_year", "between 0 and 3000"),
    ("SELECT * FROM rec.recommend('u150', 5, strategy => 'best')", (), "strategy", "'best'"),
    ("SELECT * FROM rec.recommend('u150', 5, popularity_weight => 2)", (), "popularity_weight", "between 0 and 1"),
    ("SELECT * FROM rec.recommend('no-such-user')", (), "user_id", "unknown user_id"),
    ("SELECT * FROM rec.similar_items('no-such-item')", (), "item_id", "unknown item_id"),
    ("SELECT * FROM rec.similar_items('i5', 5, space => 'pixels')", (), "space", "content or collaborative"),
    ("SELECT * FROM rec.explain('u150', 'nope')", (), "item_id", "unknown item_id"),
    ("SELECT * FROM rec.recommend_for_vector('[1,2,3]'::vector, 5)", (), "query", "dimension 3 but embedding space"),
    ("SELECT * FROM rec.recommend_for_demographic_vector('[1,2,3]'::vector, 5)", (), "demographic", "dimension 3"),
    ("SELECT * FROM rec.recommend_for_vector(array_fill(0, ARRAY[64])::vector, 5)", (), "query", "non-zero length"),
    ("SELECT * FROM rec.recommend_for_vector(NULL::vector, 5)", (), "query", "non-zero length"),
    ("SELECT * FROM rec.recommend_for_demographic_vector(array_fill(0, ARRAY[64])::vector, 5)", (), "demographic",
     "non-zero length"),
    ("SELECT * FROM rec.recommend('u150', 5, true, %s)", ([f"g{n}" for n in range(100_000)],), "genres",
     "at most 100"),
    ("SELECT * FROM rec.similar_items('i5', 5, %s)", ([f"g{n}" for n in range(101)],), "genres", "at most 100"),
])
def test_bad_input_is_rejected_naming_the_argument(planted, query, params, column, words):
    settings, dataset, cold = planted
    with pytest.raises(psycopg.Error) as info:
        rows(settings, query, params)
    assert info.value.diag.column_name == column
    assert words in info.value.diag.message_primary
    if column == "query" and "dimension" in words:
        assert "dimension 64" in info.value.diag.message_primary  # names both dimensions


@pytest.mark.parametrize("evil", ["u1'; DROP TABLE rec.items; --", "' OR '1'='1", "u1\"; SELECT pg_sleep(5); --",
                                  "$$; DELETE FROM rec.users; $$"])
def test_ids_that_look_like_sql_match_nothing(planted, evil):
    settings, dataset, cold = planted
    with pytest.raises(psycopg.Error) as info:
        rows(settings, "SELECT * FROM rec.recommend(%s, 5)", (evil,))
    assert info.value.diag.column_name == "user_id"
    with pytest.raises(psycopg.Error) as info:
        rows(settings, "SELECT * FROM rec.similar_items(%s, 5)", (evil,))
    assert info.value.diag.column_name == "item_id"
    assert rows(settings, "SELECT count(*) FROM rec.items")[0][0] == len(dataset.items)
    assert rows(settings, "SELECT count(*) FROM rec.users")[0][0] >= len(dataset.users)


def test_content_blend_for_warm_users(planted):
    """content_weight 1 ranks by the mean content embedding of the history; 0.5 mixes; defaults row drives it.
    (Every user with a taste vector is warm here, and exploration is off: the warm path alone.)"""
    settings, dataset, cold = planted
    with db.transaction(settings) as conn:
        conn.execute("UPDATE rec.retrieval_defaults SET switch_after = 1, exploration_share = 0")
    try:
        _content_blend(settings)
    finally:
        with db.transaction(settings) as conn:
            conn.execute("UPDATE rec.retrieval_defaults SET switch_after = 21, exploration_share = 0.1")


def _content_blend(settings):
    user = "u140"
    (content_taste,), = rows(settings, "SELECT avg(e.embedding) FROM rec.item_embeddings e JOIN rec.embedding_models m "
                                       "ON m.space_id = e.space_id AND m.kind = 'content' AND m.is_active "
                                       "WHERE e.item_id IN (SELECT item_id FROM rec.interactions WHERE user_id = %s)",
                          (user,))
    pure_content = rows(settings, "SELECT item_id, score FROM rec.recommend_for_vector(%s, 10, exclude_user => %s)",
                        (content_taste, user))
    got = rows(settings, "SELECT item_id, score, source FROM rec.recommend(%s, 10, content_weight => 1, "
                         "popularity_weight => 0)", (user,))
    assert [i for i, *_ in got] == [i for i, _ in pure_content]
    assert [s for _, s, _ in got] == pytest.approx([s for _, s in pure_content], abs=1e-6)
    assert {src for *_, src in got} == {"taste"}
    taste_only = [i for i, in rows(settings, "SELECT item_id FROM rec.recommend(%s, 10)", (user,))]
    mixed = [i for i, in rows(settings, "SELECT item_id FROM rec.recommend(%s, 10, content_weight => 0.5)", (user,))]
    assert len(mixed) == 10 and mixed != taste_only
    with db.transaction(settings) as conn:
        conn.execute("UPDATE rec.retrieval_defaults SET content_weight = 1 WHERE user_type = 'warm'")
    try:
        by_default = rows(settings, "SELECT item_id FROM rec.recommend(%s, 10, popularity_weight => 0)", (user,))
        assert [i for i, in by_default] == [i for i, _ in pure_content]
    finally:
        with db.transaction(settings) as conn:
            conn.execute("UPDATE rec.retrieval_defaults SET content_weight = 0 WHERE user_type = 'warm'")
    with pytest.raises(psycopg.Error) as info:
        rows(settings, "SELECT * FROM rec.recommend(%s, 5, content_weight => 1.5)", (user,))
    assert info.value.diag.column_name == "content_weight"


def test_training_runs_when_due_and_once_at_a_time(db_settings):
    """No space yet → train; then only after `retrain_after_interactions` new interactions; never concurrently."""
    from datetime import datetime, timezone

    from recplatform.datasets.synthetic import generate_synthetic
    from recplatform.ingest import add_interactions
    from recplatform.retrieval.training import TRAIN_LOCK

    settings = db_settings.model_copy(update={"retrain_after_interactions": 5})
    load_dataset(settings, generate_synthetic(40, 30, seed=5))
    first = training.train_if_due(settings)
    assert first is not None and training.new_interactions(settings) == 0
    assert training.train_if_due(settings) is None  # nothing new

    when = datetime(2030, 1, 1, tzinfo=timezone.utc)
    add_interactions([{"user_id": "u1", "item_id": f"i{n}", "rating": 5, "occurred_at": when} for n in range(1, 5)],
                     settings=settings)
    assert training.new_interactions(settings) == 4
    assert training.train_if_due(settings) is None  # below the threshold

    add_interactions([{"user_id": "u2", "item_id": "i1", "rating": 4, "occurred_at": when}],
                     settings=settings)
    with db.connect(settings, autocommit=True, vector=False) as other:  # a training running elsewhere
        other.execute("SELECT pg_advisory_lock(%s)", (TRAIN_LOCK,))
        assert training.train_if_due(settings) is None
    second = training.train_if_due(settings)
    assert second is not None and second.space_id != first.space_id
    assert training.new_interactions(settings) == 0
