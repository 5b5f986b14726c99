"""Feast against the real embedded Postgres: apply, online writes straight from the rec tables, online reads.

One database and one ``feast apply`` per module (apply and the Feast import are the slow part);
each test uses its own entity ids so the tests do not see each other's rows.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from recplatform import db, features, services
from recplatform.config import Settings
from recplatform.publish import ingest_and_publish

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def feast_settings(services_settings) -> Settings:
    """A migrated database of its own with the feature repository applied once."""
    settings = services_settings.model_copy(update={"database_name": f"feast_{os.getpid()}_{next(_ids)}"})
    services.ensure_database(settings)
    db.migrate(settings)
    features.apply(settings)
    yield settings
    features.close_stores()


def _prefix() -> str:
    return f"t{next(_ids)}-"


def _add_users(settings: Settings, rows: list[tuple]) -> None:
    with db.transaction(settings) as conn:
        conn.cursor().executemany(
            "INSERT INTO rec.users (user_id, age, gender, occupation, zip_code, content_hash) "
            "VALUES (%s, %s, %s, %s, %s, 'h')", rows)


def _add_items(settings: Settings, rows: list[tuple]) -> None:
    with db.transaction(settings) as conn:
        conn.cursor().executemany(
            "INSERT INTO rec.items (item_id, title, year, genres, description, content_hash) "
            "VALUES (%s, %s, %s, %s, %s, 'h')", rows)


def _add_interactions(settings: Settings, rows: list[tuple]) -> None:
    with db.transaction(settings) as conn:
        conn.cursor().executemany(
            "INSERT INTO rec.interactions (user_id, item_id, rating, occurred_at) VALUES (%s, %s, %s, %s)", rows)


def _tables(settings: Settings, schema: str) -> set[str]:
    with db.connect(settings, vector=False) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                            (schema,)).fetchall()
    return {r[0] for r in rows}


# ----- apply ----------------------------------------------------------------------------------------
def test_apply_is_idempotent_and_keeps_feast_out_of_public_and_rec(feast_settings):
    rec_before = _tables(feast_settings, "rec")
    first = features.apply(feast_settings)
    second = features.apply(feast_settings)
    for result in (first, second):
        assert result.feature_views == ["item_metadata", "item_popularity", "user_activity", "user_demographics"]
        assert result.entities == ["item", "user"]
        assert result.feature_services == ["item_features", "user_features"]
        assert result.deleted == []
    store = features.get_store(feast_settings)
    assert sorted(v.name for v in store.list_feature_views(allow_cache=False)) == first.feature_views
    assert _tables(feast_settings, "feast_online") == {
        f"recplatform_{name}" for name in first.feature_views}
    assert {"projects", "entities", "feature_views", "feature_services"} <= _tables(feast_settings, "feast_registry")
    assert _tables(feast_settings, "public") == {"alembic_version"}
    assert _tables(feast_settings, "rec") == rec_before


def test_apply_removes_objects_no_longer_in_the_repository(feast_settings):
    from feast import Entity, ValueType

    store = features.get_store(feast_settings)
    store.apply([Entity(name="stale_thing", join_keys=["stale_id"], value_type=ValueType.STRING)])
    assert "stale_thing" in {e.name for e in store.list_entities(allow_cache=False)}
    result = features.apply(feast_settings)
    assert result.deleted == ["Entity:stale_thing"]
    assert "stale_thing" not in {e.name for e in store.list_entities(allow_cache=False)}


def test_feature_store_yaml_takes_values_from_settings_with_escaping(tmp_path):
    password = 'p"w\\d:@/?&x'
    settings = Settings(state_dir=tmp_path,
                        database_url=f"postgresql://feast:{'p%22w%5Cd%3A%40%2F%3F%26x'}@db.example:6543/recs")
    config = features.repo_config(settings)
    for store_config in (config.online_store, config.offline_store):
        assert (store_config.host, store_config.port, store_config.database) == ("db.example", 6543, "recs")
        assert (store_config.user, store_config.password) == ("feast", password)
        assert store_config.sslmode == "prefer"
    assert config.online_store.db_schema == "feast_online"
    assert config.online_store.conn_type.value == "pool"
    connect = config.registry.sqlalchemy_config_kwargs["connect_args"]
    assert connect["password"] == password and connect["options"] == "-c search_path=feast_registry"


def test_unix_socket_host_is_passed_through(feast_settings):
    config = features.repo_config(feast_settings)
    assert config.online_store.host == str(feast_settings.pg_socket_dir)
    assert config.online_store.sslmode == "disable"


def test_one_store_per_process_and_database(feast_settings, services_settings):
    assert features.get_store(feast_settings) is features.get_store(feast_settings.model_copy())
    other = services_settings.model_copy(update={"database_name": f"feast_other_{os.getpid()}"})
    services.ensure_database(other)
    assert features.get_store(other) is not features.get_store(feast_settings)

    first = features.get_store(feast_settings)
    features.online_user_features(["anyone"], feast_settings)  # opens the online pool
    features.close_stores()
    assert features.get_store(feast_settings) is not first
    assert features.online_user_features(["anyone"], feast_settings)[0]["age"] is None
    with db.connect(other, vector=False) as conn:  # nothing of ours holds the other database open
        conn.execute("SELECT 1")
    with db.connect(feast_settings, vector=False) as conn:
        held = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                            (other.database_name,)).fetchone()[0]
    assert held == 0


# ----- online writes and reads ------------------------------------------------------------------------
def test_rows_are_servable_right_after_write_online(feast_settings):
    p = _prefix()
    _add_users(feast_settings, [(p + "u1", 24, "M", "technician", "85711"), (p + "u2", None, "F", None, None)])
    _add_items(feast_settings, [(p + "i1", "Toy Story (1995)", 1995, ["Animation", "Children's", "Comedy"], "toys"),
                                (p + "i2", "No Genre", None, [], None)])
    # Nothing is served before the write (no materialization happens behind our back).
    assert features.online_user_features([p + "u1"], feast_settings)[0]["age"] is None

    result = features.write_online(feast_settings, user_ids=[p + "u1", p + "u2"], item_ids=[p + "i1", p + "i2"])
    assert result.rows == {"item_metadata": 2, "item_popularity": 2, "user_activity": 2, "user_demographics": 2}

    u1, u2 = features.online_user_features([p + "u1", p + "u2"], feast_settings)
    assert list(u1)[:5] == ["user_id", "age", "gender", "occupation", "zip_code"]
    assert (u1["user_id"], u1["age"], u1["gender"], u1["occupation"], u1["zip_code"]) == (
        p + "u1", 24, "M", "technician", "85711")
    assert (u2["age"], u2["gender"], u2["occupation"]) == (None, "F", None)
    assert u1["n_interactions"] == 0 and u1["mean_rating"] is None and u1["last_interaction_at"] is None

    i1, i2 = features.online_item_features([p + "i1", p + "i2"], feast_settings)
    assert list(i1)[:5] == ["item_id", "title", "year", "genres", "description"]
    assert (i1["title"], i1["year"], i1["genres"], i1["description"]) == (
        "Toy Story (1995)", 1995, ["Animation", "Children's", "Comedy"], "toys")
    assert (i2["title"], i2["year"], i2["genres"]) == ("No Genre", None, [])


def test_write_online_only_touches_the_given_ids(feast_settings):
    p = _prefix()
    _add_users(feast_settings, [(p + "a", 30, "F", "writer", "10001"), (p + "b", 40, "M", "doctor", "20002")])
    features.write_online(feast_settings, user_ids=[p + "a"], item_ids=[])
    a, b = features.online_user_features([p + "a", p + "b"], feast_settings)
    assert a["occupation"] == "writer"
    assert b["occupation"] is None


def test_updates_reach_the_online_store_on_write_online(feast_settings):
    p = _prefix()
    _add_users(feast_settings, [(p + "u", 24, "M", "technician", "85711")])
    _add_items(feast_settings, [(p + "i", "Old Title", 1990, ["Drama"], "old")])
    features.write_online(feast_settings, user_ids=[p + "u"], item_ids=[p + "i"])
    with db.transaction(feast_settings) as conn:
        conn.execute("UPDATE rec.users SET age = 25, occupation = NULL, updated_at = now() WHERE user_id = %s",
                     (p + "u",))
        conn.execute("UPDATE rec.items SET title = 'New Title', genres = ARRAY['Comedy', 'Sci-Fi'], "
                     "updated_at = now() WHERE item_id = %s", (p + "i",))
    # The tables changed but the online store still serves the old values until the write.
    assert features.online_user_features([p + "u"], feast_settings)[0]["age"] == 24

    features.write_online(feast_settings, user_ids=[p + "u"], item_ids=[p + "i"])
    user = features.online_user_features([p + "u"], feast_settings)[0]
    item = features.online_item_features([p + "i"], feast_settings)[0]
    assert (user["age"], user["occupation"], user["zip_code"]) == (25, None, "85711")
    assert (item["title"], item["genres"], item["year"]) == ("New Title", ["Comedy", "Sci-Fi"], 1990)


def test_clearing_every_attribute_is_served_as_none(feast_settings):
    """Feast's write_to_online_store skips an all-null batch; the platform must not keep stale values."""
    p = _prefix()
    _add_users(feast_settings, [(p + "u", 70, "F", "retired", "12345")])
    features.write_online(feast_settings, user_ids=[p + "u"], item_ids=[])
    with db.transaction(feast_settings) as conn:
        conn.execute("UPDATE rec.users SET age = NULL, gender = NULL, occupation = NULL, zip_code = NULL "
                     "WHERE user_id = %s", (p + "u",))
    features.write_online(feast_settings, user_ids=[p + "u"], item_ids=[])
    user = features.online_user_features([p + "u"], feast_settings)[0]
    assert (user["age"], user["gender"], user["occupation"], user["zip_code"]) == (None, None, None, None)
    assert user["n_interactions"] == 0


def test_unknown_ids_give_none_values(feast_settings):
    p = _prefix()
    user = features.online_user_features([p + "nobody"], feast_settings)[0]
    item = features.online_item_features([p + "nothing"], feast_settings)[0]
    assert user["user_id"] == p + "nobody"
    assert all(v is None for k, v in user.items() if k != "user_id")
    assert item["item_id"] == p + "nothing"
    assert all(v is None for k, v in item.items() if k != "item_id")
    assert set(user) >= {"age", "gender", "occupation", "zip_code", "n_interactions", "mean_rating"}
    assert set(item) >= {"title", "year", "genres", "description", "n_interactions", "n_users", "mean_rating"}
    assert features.online_user_features([], feast_settings) == []


def test_popularity_and_activity_reflect_interactions(feast_settings):
    p = _prefix()
    _add_users(feast_settings, [(p + f"u{n}", 20 + n, "F", "student", "00000") for n in range(3)])
    _add_items(feast_settings, [(p + "hit", "Hit", 2000, ["Action"], None), (p + "flop", "Flop", 2001, [], None)])
    t0 = datetime(1998, 3, 1, tzinfo=timezone.utc)
    _add_interactions(feast_settings, [
        (p + "u0", p + "hit", 5.0, t0),
        (p + "u1", p + "hit", 3.0, t0 + timedelta(days=1)),
        (p + "u1", p + "hit", 4.0, t0 + timedelta(days=2)),  # same user again: 3 interactions, 2 users
        (p + "u2", p + "flop", 1.0, t0 + timedelta(days=3)),
    ])
    users = [p + f"u{n}" for n in range(3)]
    features.write_online(feast_settings, user_ids=users, item_ids=[p + "hit", p + "flop"])
    hit, flop = features.online_item_features([p + "hit", p + "flop"], feast_settings)
    assert (hit["n_interactions"], hit["n_users"], hit["mean_rating"]) == (3, 2, pytest.approx(4.0))
    assert hit["last_interaction_at"] == t0 + timedelta(days=2)
    assert (flop["n_interactions"], flop["n_users"], flop["mean_rating"]) == (1, 1, pytest.approx(1.0))
    u0, u1, _ = features.online_user_features(users, feast_settings)
    assert (u0["n_interactions"], u1["n_interactions"], u1["mean_rating"]) == (1, 2, pytest.approx(3.5))
    assert u1["last_interaction_at"] == t0 + timedelta(days=2)

    # A late interaction with an old timestamp still counts after the next write for that item.
    _add_interactions(feast_settings, [(p + "u0", p + "flop", 5.0, t0 - timedelta(days=100))])
    features.write_online(feast_settings, user_ids=[p + "u0"], item_ids=[p + "flop"])
    flop = features.online_item_features([p + "flop"], feast_settings)[0]
    assert (flop["n_interactions"], flop["n_users"], flop["mean_rating"]) == (2, 2, pytest.approx(3.0))
    assert flop["last_interaction_at"] == t0 + timedelta(days=3)
    assert features.online_user_features([p + "u0"], feast_settings)[0]["n_interactions"] == 2


def test_materialize_refreshes_everything(feast_settings):
    p = _prefix()
    _add_users(feast_settings, [(p + "u", 61, "M", "retired", "55555")])
    _add_items(feast_settings, [(p + "i", "Catch Up", 1977, ["Western"], "late")])
    _add_interactions(feast_settings, [(p + "u", p + "i", 2.0, datetime(1997, 1, 1, tzinfo=timezone.utc))])
    result = features.materialize(feast_settings)
    with db.connect(feast_settings, vector=False) as conn:
        n_users, n_items = conn.execute("SELECT (SELECT count(*) FROM rec.users), (SELECT count(*) FROM rec.items)"
                                        ).fetchone()
    assert result.rows == {"item_metadata": n_items, "item_popularity": n_items,
                           "user_activity": n_users, "user_demographics": n_users}
    user = features.online_user_features([p + "u"], feast_settings)[0]
    item = features.online_item_features([p + "i"], feast_settings)[0]
    assert (user["occupation"], user["n_interactions"]) == ("retired", 1)
    assert (item["genres"], item["n_users"], item["mean_rating"]) == (["Western"], 1, pytest.approx(2.0))


def test_feast_offline_store_reads_the_rec_tables(feast_settings):
    """The PostgreSQLSource definitions are valid for Feast's own offline path (historical retrieval)."""
    import pandas as pd

    p = _prefix()
    _add_users(feast_settings, [(p + "u", 33, "F", "engineer", "94110")])
    store = features.get_store(feast_settings)
    entity_df = pd.DataFrame({"user_id": [p + "u"], "event_timestamp": [datetime.now(timezone.utc)]})
    frame = store.get_historical_features(
        entity_df=entity_df,
        features=["user_demographics:age", "user_demographics:occupation", "user_activity:n_interactions"],
    ).to_df()
    row = frame.iloc[0]
    assert (int(row["age"]), row["occupation"], int(row["n_interactions"])) == (33, "engineer", 0)
    assert _tables(feast_settings, "public") == {"alembic_version"}


# ----- MovieLens ------------------------------------------------------------------------------------------
@pytest.mark.movielens
def test_movielens_user_1_and_item_1_from_feast(ml100k_path, services_settings):
    from recplatform import datasets
    settings = services_settings.model_copy(update={"database_name": f"feast_ml_{os.getpid()}"})
    services.ensure_database(settings)
    db.migrate(settings)
    try:
        _check_movielens(ml100k_path, settings, datasets)
    finally:
        features.close_stores()


def _check_movielens(ml100k_path, settings, datasets) -> None:
    features.apply(settings)
    data = datasets.load_movielens(ml100k_path)
    ingest_and_publish(data.users, data.items, data.interactions, source=str(ml100k_path), settings=settings,
                       online=True, enqueue=False)

    user = features.online_user_features(["1"], settings)[0]
    assert (user["age"], user["gender"], user["occupation"], user["zip_code"]) == (24, "M", "technician", "85711")
    item = features.online_item_features(["1"], settings)[0]
    assert item["title"] == "Toy Story (1995)"
    assert sorted(item["genres"]) == ["Animation", "Children's", "Comedy"]

    # Popularity served by Feast equals a count straight from the raw u.data file.
    counts = Counter(line.split("\t")[1] for line in (ml100k_path / "u.data").read_text().splitlines() if line)
    assert item["n_interactions"] == counts["1"]
    users = features.online_user_features([str(n) for n in range(1, 944)], settings)
    assert all(u["age"] is not None for u in users)
    assert sum(u["n_interactions"] for u in users) == 100_000


def test_feature_server_serves_the_online_store_over_http(feast_settings):
    """`recplatform features serve` runs Feast's HTTP server with the connection values of the settings."""
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    p = _prefix()
    _add_users(feast_settings, [(p + "a", 33, "M", "artist", "02139")])
    features.write_online(feast_settings, user_ids=[p + "a"], item_ids=[])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "RECPLATFORM_STATE_DIR": str(feast_settings.state_dir),
           "RECPLATFORM_DATABASE_NAME": feast_settings.database_name}
    server = subprocess.Popen([sys.executable, "-m", "recplatform.cli", "features", "serve", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "the feature server did not answer within 90 s"
                time.sleep(0.5)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/get-online-features", method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"feature_service": "user_features", "entities": {"user_id": [p + "a"]}}).encode())
        body = json.load(urllib.request.urlopen(request, timeout=30))
        served = dict(zip(body["metadata"]["feature_names"], (r["values"][0] for r in body["results"])))
        assert (served["age"], served["gender"], served["occupation"], served["zip_code"]) == (33, "M", "artist", "02139")
    finally:
        server.terminate()
        server.wait(timeout=30)
