"""Hostile strings that reach the dynamic SQL (``EXECUTE format(...)`` in recplatform/sql) run nothing.

Unlike unknown ids, which are refused before any query is built, these are *stored*: a warm and a cold user
whose ids are SQL, an item whose id is SQL, and genres full of quotes and backslashes that items really carry.
So every ranking path (taste, neighbour votes, neighbour taste, learned map, prompt, popularity, vectors,
similar items, explain) runs its dynamic SQL with them, through the client and as ``rec_reader``. Results
must equal those of the same calls with the twin genre ``Comedy`` (the hostile genres sit on exactly the
items that have it), and every table must be intact afterwards.
"""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from recplatform import db
from recplatform.client import InvalidRequestError, RecClient

from _retrieval_data import load_dataset

WARM = "'; DROP TABLE rec.items; --"
COLD = "x'); DELETE FROM rec.users; --"
ITEM = "i'||(SELECT pg_sleep(5))||'\\"
GENRES = ["') OR true --", "Com'edy\\' OR '1'='1", "%I %L %s $1 $$; TRUNCATE rec.interactions; $$", "\\\\'\"--"]
STRATEGIES = ["neighbors_vote", "neighbors_taste", "learned_map", "prompt", "popularity"]
TABLES = ["users", "items", "interactions", "item_embeddings", "user_embeddings", "embedding_models"]


@pytest.fixture(scope="module")
def hostile(services_settings):
    """A trained database where u3 is WARM, u4 is COLD (no interactions), i2 is ITEM, and every Comedy item
    also carries every hostile genre."""
    import os

    from recplatform import services
    from recplatform.datasets.synthetic import generate_synthetic
    from recplatform.retrieval import coldstart, training

    settings = services_settings.model_copy(update={"database_name": f"inj_{os.getpid()}"})
    services.ensure_database(settings)
    db.migrate(settings)
    data = generate_synthetic(80, 60, seed=4)
    rename_user = {"u3": WARM, "u4": COLD}
    data.users["user_id"] = data.users.user_id.replace(rename_user)
    data.interactions["user_id"] = data.interactions.user_id.replace(rename_user)
    data.items["item_id"] = data.items.item_id.replace({"i2": ITEM})
    data.interactions["item_id"] = data.interactions.item_id.replace({"i2": ITEM})
    data.items["genres"] = [g + GENRES if "Comedy" in g else g for g in data.items.genres]
    assert data.interactions.item_id.eq(ITEM).any()
    load_dataset(settings, data, cold_users={COLD})
    training.train_collaborative_space(settings)
    coldstart.fit_demographic_map(settings)
    return settings, data, _counts(settings)


def _counts(settings) -> dict[str, int]:
    with db.connect(settings, autocommit=True) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM rec.{t}").fetchone()[0] for t in TABLES}  # fixed names


def _calls(settings, client: RecClient) -> list[tuple[str, list, list]]:
    """(what, results with each hostile genre, result with Comedy) for every path that builds dynamic SQL."""
    with db.connect(settings, autocommit=True) as conn:
        vector = np.asarray(conn.execute(
            "SELECT e.embedding FROM rec.item_embeddings e JOIN rec.embedding_models m ON m.space_id = e.space_id "
            "AND m.kind = 'content' AND m.is_active WHERE e.item_id = %s", (ITEM,)).fetchone()[0].to_numpy())
    calls = {
        "warm taste": lambda g: client.recommend(WARM, 8, genres=g),
        "warm, seen kept": lambda g: client.recommend(WARM, 8, genres=g, exclude_seen=False),
        "similar to the hostile item": lambda g: client.similar_items(ITEM, 8, genres=g),
        "similar, content space": lambda g: client.similar_items(ITEM, 8, genres=g, space="content"),
        "vector, excluding the warm user": lambda g: client.recommend_for_vector(vector, 8, genres=g,
                                                                                   exclude_user=WARM),
        "profile": lambda g: client.recommend_for_profile(age=30, gender="F", occupation="writer", k=8, genres=g),
        **{f"cold {s}": (lambda s: lambda g: client.recommend(COLD, 8, genres=g, strategy=s))(s)
           for s in STRATEGIES},
    }
    return [(what, [call([g]) for g in GENRES], call(["Comedy"])) for what, call in calls.items()]


def test_hostile_genres_ids_and_users_reach_the_dynamic_sql_and_run_nothing(hostile):
    settings, data, before = hostile
    comedy = set(data.items.item_id[[("Comedy" in g) for g in data.items.genres]])
    with RecClient(settings) as client:
        for what, hostile_results, twin in _calls(settings, client):
            assert twin, what
            assert {r.item_id for r in twin} <= comedy, what
            for genre, got in zip(GENRES, hostile_results):
                assert [(r.item_id, r.source) for r in got] == [(r.item_id, r.source) for r in twin], (what, genre)
                np.testing.assert_allclose([r.score for r in got], [r.score for r in twin], rtol=1e-6)
        assert ITEM not in {r.item_id for r in client.similar_items(ITEM, 20)}
        seen = set(data.interactions.item_id[data.interactions.user_id == WARM])
        assert not seen & {r.item_id for r in client.recommend(WARM, 20)}
        top = client.recommend(WARM, 1)[0].item_id
        assert client.explain(WARM, top).source == "taste"
        assert client.explain(COLD, client.recommend(COLD, 1, strategy="neighbors_vote")[0].item_id).reasons
        # a genre with a NUL cannot be sent at all: named before it reaches the server
        with pytest.raises(InvalidRequestError) as info:
            client.recommend(WARM, 5, genres=["Comedy\x00') OR true --"])
        assert info.value.argument == "genres"
    assert _counts(settings) == before


def test_the_same_calls_as_rec_reader_in_raw_sql(hostile):
    settings, data, before = hostile
    with psycopg.connect(settings.reader_url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        for genre in GENRES:
            for query, args in [
                ("SELECT item_id, score FROM rec.recommend(%s, 8, true, %s)", (WARM,)),
                ("SELECT item_id, score FROM rec.recommend(%s, 8, true, %s, strategy => 'neighbors_vote')", (COLD,)),
                ("SELECT item_id, score FROM rec.recommend(%s, 8, true, %s, strategy => 'popularity')", (COLD,)),
                ("SELECT item_id, score FROM rec.similar_items(%s, 8, %s)", (ITEM,)),
            ]:
                got = conn.execute(query, (*args, [genre])).fetchall()
                twin = conn.execute(query, (*args, ["Comedy"])).fetchall()
                assert got and [i for i, _ in got] == [i for i, _ in twin], (query, genre)
    assert _counts(settings) == before
