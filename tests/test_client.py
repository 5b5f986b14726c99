"""RecClient against real Postgres+pgvector: same lists as the SQL functions, profiles, explanations, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

from recplatform import db
from recplatform.client import (Explanation, InvalidRequestError, RecClient, Recommendation, UnknownItemError,
                                UnknownUserError)

from _retrieval_data import planted_database


@pytest.fixture(scope="module")
def planted(services_settings):
    return planted_database(services_settings, "client")


@pytest.fixture(scope="module")
def client(planted):
    settings, _, _ = planted
    with RecClient(settings) as c:
        yield c


def sql_rows(settings, query, params=()):
    with db.connect(settings, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


@pytest.mark.parametrize("user, kwargs, sql_args", [
    ("u150", {}, "%s, 10"),
    ("u150", {"k": 7, "genres": ["Drama"], "years": (1980, 2020)}, "%s, 7, true, '{Drama}', 1980, 2020"),
    ("u5", {"k": 5, "strategy": "learned_map"}, "%s, 5, strategy => 'learned_map'"),
    ("u5", {"k": 5}, "%s, 5"),
    ("u200", {"k": 4, "exclude_seen": False, "years": 2001}, "%s, 4, false, NULL, 2001, 2001"),
])
def test_client_returns_exactly_what_the_sql_function_returns(planted, client, user, kwargs, sql_args):
    settings, _, _ = planted
    got = client.recommend(user, **kwargs)
    expected = sql_rows(settings, f"SELECT rank, item_id, title, score, source FROM rec.recommend({sql_args})", (user,))
    assert got == [Recommendation(*r) for r in expected]
    assert all(isinstance(r, Recommendation) for r in got) and len(got) == kwargs.get("k", 10)


def test_similar_items_match_sql(planted, client):
    settings, _, _ = planted
    expected = sql_rows(settings, "SELECT * FROM rec.similar_items('i7', 6)")
    assert client.similar_items("i7", 6) == [Recommendation(*r) for r in expected]


def test_profile_of_a_stored_cold_user_gets_that_users_list(planted, client):
    """An unstored profile with the same demographics as a stored cold user is served the same way."""
    settings, dataset, cold = planted
    user = dataset.users[dataset.users.user_id == "u6"].iloc[0]
    profile = {"age": int(user.age), "gender": user.gender, "occupation": user.occupation, "zip_code": user.zip_code}
    got = client.recommend_for_profile(**profile, k=10, strategy="neighbors_vote")
    stored = client.recommend("u6", k=10, strategy="neighbors_vote", exploration_share=0)
    assert [r.item_id for r in got] == [r.item_id for r in stored]
    assert {r.source for r in got} == {"demographic_neighbors"}
    assert [r.score for r in got] == pytest.approx([r.score for r in stored])


@pytest.mark.parametrize("strategy", ["neighbors_vote", "neighbors_taste", "learned_map"])
def test_profiles_with_different_demographics_get_lists_in_their_planted_direction(planted, client, strategy):
    settings, dataset, cold = planted
    from recplatform.datasets.synthetic import segment_of

    genres = {i: set(g) for i, g in sql_rows(settings, "SELECT item_id, genres FROM rec.items")}
    weights = dataset.truth["segment_genre_weights"]
    a = {"age": 19, "gender": "M", "occupation": "student", "zip_code": "10001"}
    b = {"age": 62, "gender": "F", "occupation": "retired", "zip_code": "94110"}
    seg_a, seg_b = segment_of(19, "M", "student"), segment_of(62, "F", "retired")
    assert seg_a in weights and seg_b in weights
    # 25 of ~210 warm users (the default 100 is half this small dataset); voters need the default minimum history
    # (50, tuned on ML-100K), capped at this deployment's median history (~30), so enough near users vote
    with db.transaction(settings) as conn:
        conn.execute("UPDATE rec.retrieval_defaults SET neighbors = 25 WHERE user_type = 'cold'")
    try:
        recs_a = [r.item_id for r in client.recommend_for_profile(**a, k=15, strategy=strategy, popularity_weight=0)]
        recs_b = [r.item_id for r in client.recommend_for_profile(**b, k=15, strategy=strategy, popularity_weight=0)]
    finally:
        with db.transaction(settings) as conn:
            conn.execute("UPDATE rec.retrieval_defaults SET neighbors = 100 WHERE user_type = 'cold'")
    assert set(recs_a) != set(recs_b)

    def fit(segment, recs):
        return np.mean([np.mean([weights[segment][g] for g in genres[i]]) for i in recs])

    # Each profile's list suits its own segment better than the other profile's list does.
    assert fit(seg_a, recs_a) + fit(seg_b, recs_b) > fit(seg_a, recs_b) + fit(seg_b, recs_a)


def test_profile_without_demographics_gets_popularity(client):
    got = client.recommend_for_profile(k=5)
    assert len(got) == 5 and {r.source for r in got} == {"popularity"}


def test_recommend_for_vector_and_wrong_dimension(planted, client):
    settings, _, _ = planted
    (vec,), = sql_rows(settings, "SELECT e.embedding FROM rec.item_embeddings e JOIN rec.embedding_models m "
                                 "ON m.space_id = e.space_id AND m.kind = 'content' AND m.is_active "
                                 "WHERE e.item_id = 'i3'")
    got = client.recommend_for_vector(vec.to_numpy(), 3)
    assert got[0].item_id == "i3"
    with pytest.raises(InvalidRequestError) as info:
        client.recommend_for_vector(np.ones(10), 3)
    assert info.value.argument == "query" and "dimension 10" in str(info.value) and "dimension 64" in str(info.value)


def test_explain(planted, client):
    settings, _, _ = planted
    top = client.recommend("u150", 1)[0]
    explanation = client.explain("u150", top.item_id)
    assert isinstance(explanation, Explanation) and explanation.source == "taste"
    history = {i for i, in sql_rows(settings, "SELECT item_id FROM rec.interactions WHERE user_id = 'u150'")}
    assert explanation.reasons and {r.ref_id for r in explanation.reasons} <= history
    cold = client.explain("u8", client.recommend("u8", 1, strategy="neighbors_vote")[0].item_id)
    assert cold.source == "demographic_neighbors" and all(r.reason == "neighbor_user" for r in cold.reasons)


@pytest.mark.parametrize("call, error, argument", [
    (lambda c: c.recommend("u150", 0), InvalidRequestError, "k"),
    (lambda c: c.recommend("u150", 1001), InvalidRequestError, "k"),
    (lambda c: c.recommend("u150", "10"), InvalidRequestError, "k"),
    (lambda c: c.recommend("u150", 5, genres=[3]), InvalidRequestError, "genres"),
    (lambda c: c.recommend("u150", 5, genres=[]), InvalidRequestError, "genres"),
    (lambda c: c.recommend("u150", 5, years=(2010, 1990)), InvalidRequestError, "years"),
    (lambda c: c.recommend("u150", 5, years="1990s"), InvalidRequestError, "years"),
    (lambda c: c.recommend("u150", 5, strategy="magic"), InvalidRequestError, "strategy"),
    (lambda c: c.recommend("u150", 5, popularity_weight=3.0), InvalidRequestError, "popularity_weight"),
    (lambda c: c.recommend_for_profile(age=300), InvalidRequestError, "age"),
    (lambda c: c.recommend_for_profile(gender="Q"), InvalidRequestError, "gender"),
    (lambda c: c.recommend_for_profile(age=30, gender="male"), InvalidRequestError, "gender"),
    (lambda c: c.recommend_for_profile(occupation="o" * 201), InvalidRequestError, "occupation"),
    (lambda c: c.recommend_for_profile(zip_code="02\x00139"), InvalidRequestError, "zip_code"),
    (lambda c: c.recommend("u1\x00"), InvalidRequestError, "user_id"),
    (lambda c: c.recommend("u" * 257), InvalidRequestError, "user_id"),
    (lambda c: c.similar_items("i\x003"), InvalidRequestError, "item_id"),
    (lambda c: c.explain("u150", "i\x003"), InvalidRequestError, "item_id"),
    (lambda c: c.recommend_for_vector(np.ones(64), exclude_user="u\x00"), InvalidRequestError, "exclude_user"),
    (lambda c: c.recommend("u150", 5, genres=["Dra\x00ma"]), InvalidRequestError, "genres"),
    (lambda c: c.similar_items("i3", 5, genres="Dra\x00ma"), InvalidRequestError, "genres"),
    (lambda c: c.recommend("u150", 5, genres=[f"g{n}" for n in range(100_000)]), InvalidRequestError, "genres"),
    (lambda c: c.recommend("u150", 5, genres=(f"g{n}" for n in range(10**12))), InvalidRequestError, "genres"),
    (lambda c: c.recommend("u150", 5, genres=["g" * 201]), InvalidRequestError, "genres"),
    (lambda c: c.recommend_for_vector(np.ones(1_000_000), 3), InvalidRequestError, "query"),
    (lambda c: c.recommend_for_vector(np.zeros(64), 3), InvalidRequestError, "query"),
    (lambda c: c.recommend_for_vector([float("nan")] * 64, 3), InvalidRequestError, "query"),
    (lambda c: c.recommend("nobody-here"), UnknownUserError, None),
    (lambda c: c.recommend("u1'; DROP TABLE rec.items; --"), UnknownUserError, None),
    (lambda c: c.similar_items("no-item"), UnknownItemError, None),
    (lambda c: c.similar_items("i1' OR '1'='1"), UnknownItemError, None),
    (lambda c: c.explain("u150", "no-item"), UnknownItemError, None),
    (lambda c: c.explain("no-user", "i1"), UnknownUserError, None),
])
def test_errors(planted, client, call, error, argument):
    settings, dataset, _ = planted
    with pytest.raises(error) as info:
        call(client)
    if argument is not None:
        assert info.value.argument == argument and argument in str(info.value)
    assert sql_rows(settings, "SELECT count(*) FROM rec.items")[0][0] == len(dataset.items)
    assert client.recommend("u150", 2)  # the client's connection survives an error


def test_a_hundred_genres_is_the_bound_and_allowed(client):
    """rec.limits().max_genres (100) names pass; the filter keeps the items with any of them."""
    genres = ["Drama"] + [f"not-a-genre-{n}" for n in range(99)]
    assert client.recommend("u150", 3, genres=genres) == client.recommend("u150", 3, genres=["Drama"])


def test_gender_q_is_refused_alike_by_ingestion_and_the_client(planted, client):
    from recplatform.ingest import ValidationError, upsert_users

    settings, _, _ = planted
    with pytest.raises(ValidationError) as stored:
        upsert_users([{"user_id": "q1", "gender": "Q"}], settings=settings)
    with pytest.raises(InvalidRequestError) as served:
        client.recommend_for_profile(gender="Q")
    assert stored.value.field == served.value.argument == "gender"
    assert "M, F, X" in str(stored.value) and "M, F, X" in str(served.value)


def test_cli_commands(planted, monkeypatch):
    """recplatform train / recommend / similar / explain on the same database (tables, JSON, errors)."""
    import json

    from typer.testing import CliRunner

    from recplatform.cli import app
    from recplatform.config import get_settings

    settings, _, _ = planted
    monkeypatch.setenv("RECPLATFORM_STATE_DIR", str(settings.state_dir))
    monkeypatch.setenv("RECPLATFORM_DATABASE_NAME", settings.database_name)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        result = runner.invoke(app, ["recommend", "u150", "-k", "3", "--json"])
        assert result.exit_code == 0, result.output
        rows = json.loads(result.output)
        expected = sql_rows(settings, "SELECT item_id FROM rec.recommend('u150', 3)")
        assert [r["item_id"] for r in rows] == [i for i, in expected]
        result = runner.invoke(app, ["recommend", "u150", "--genre", "Drama", "-k", "2"])
        assert result.exit_code == 0 and "taste" in result.output
        result = runner.invoke(app, ["similar", "i7", "-k", "2"])
        assert result.exit_code == 0 and "collaborative" in result.output
        result = runner.invoke(app, ["explain", "u150", rows[0]["item_id"]])
        assert result.exit_code == 0 and "history_item" in result.output
        result = runner.invoke(app, ["recommend", "nobody'; --"])
        assert result.exit_code == 1 and "unknown user_id" in result.output
        result = runner.invoke(app, ["recommend", "u150", "-k", "0"])
        assert result.exit_code == 1 and "k" in result.output
        result = runner.invoke(app, ["train", "--iterations", "2"])
        assert result.exit_code == 0, result.output
        assert "active" in result.output
        assert sql_rows(settings, "SELECT count(*) FROM rec.recommend('u150', 3)")[0][0] == 3
    finally:
        get_settings.cache_clear()


def test_client_where_no_server_answers_says_how_to_start_it(tmp_path, monkeypatch):
    """From a directory where `up` never ran: a RecClientError that says what the CLI says, not psycopg's error."""
    from typer.testing import CliRunner

    from recplatform.cli import app
    from recplatform.client import RecClientError, ServiceUnavailableError
    from recplatform.config import Settings, get_settings

    for key in [k for k in os.environ if k.startswith("RECPLATFORM_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    with RecClient() as client:
        with pytest.raises(ServiceUnavailableError) as info:
            client.recommend("u1")
        with pytest.raises(ServiceUnavailableError):
            client.add_users([{"user_id": "x", "age": 30}], online=False, enqueue=False)
    assert isinstance(info.value, RecClientError)
    message = str(info.value)
    assert "start it with `recplatform up`" in message and str(tmp_path / ".recplatform") in message
    cli = CliRunner().invoke(app, ["recommend", "u1"])
    assert cli.exit_code == 1 and "start it with `recplatform up`" in cli.output

    external = Settings(database_url="postgresql://app:s3cret@127.0.0.1:1/recs")
    with pytest.raises(ServiceUnavailableError) as info:
        RecClient(external).similar_items("i1")
    assert "s3cret" not in str(info.value) and "app:***@127.0.0.1:1" in str(info.value)
    assert "check RECPLATFORM_DATABASE_URL" in str(info.value)
    get_settings.cache_clear()
