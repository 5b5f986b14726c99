"""Read replicas: `up --replica` starts a streaming hot standby of the embedded primary; retrieval runs there.

A primary and its standby of their own (a private state directory), so stopping them disturbs no other test.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector import Vector

from recplatform import db, replica, services
from recplatform.client import RecClient, Recommendation
from recplatform.config import Settings

from _retrieval_data import planted_database


def _wait_caught_up(settings: Settings, timeout: float = 60.0) -> replica.ReplicaLag:
    """Poll until the standby has replayed everything the primary wrote (a wait, not an assertion on time)."""
    deadline = time.monotonic() + timeout
    while True:
        found = replica.lag(settings)
        if found.bytes == 0 or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.fixture(scope="module")
def standby():
    state = Path(tempfile.mkdtemp(prefix="recplat-replica-"))
    base = Settings(state_dir=state)
    services.up(base)
    try:
        settings, dataset, cold = planted_database(base, "replica")
        replica.start_replica(settings)
        yield settings, dataset, cold
    finally:
        services.down(base)
        shutil.rmtree(state, ignore_errors=True)


def _primary_rows(settings, query, params=()):
    with db.connect(settings, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def test_reads_default_to_the_started_standby(standby):
    settings, _, _ = standby
    assert settings.read_url == settings.replica_url != settings.postgres_url
    with db.connect(settings, autocommit=True, read=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO rec.items (item_id, title, content_hash) VALUES ('x', 'x', 'h')")
    with db.connect(settings, autocommit=True) as conn:  # writes: the primary
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False


def test_retrieval_functions_run_on_the_standby_with_the_primarys_results(standby):
    settings, dataset, _ = standby
    _wait_caught_up(settings)
    with RecClient(settings) as client:
        assert client._connection().execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        for user, kwargs, args in [("u150", {}, "%s, 10"), ("u5", {"k": 5}, "%s, 5"),
                                   ("u150", {"k": 7, "genres": ["Drama"]}, "%s, 7, true, '{Drama}'"),
                                   ("u5", {"k": 5, "strategy": "learned_map"}, "%s, 5, strategy => 'learned_map'")]:
            expected = _primary_rows(settings, f"SELECT rank, item_id, title, score, source FROM rec.recommend({args})",
                                     (user,))
            assert client.recommend(user, **kwargs) == [Recommendation(*r) for r in expected]
        expected = _primary_rows(settings, "SELECT * FROM rec.similar_items('i7', 6)")
        assert client.similar_items("i7", 6) == [Recommendation(*r) for r in expected]
        vector = np.linspace(-1, 1, 64, dtype=np.float32)
        expected = _primary_rows(settings, "SELECT * FROM rec.recommend_for_vector(%s, 5, space => 'content')",
                                 (Vector(vector),))
        assert client.recommend_for_vector(vector, 5) == [Recommendation(*r) for r in expected]
        assert len(expected) == 5


def test_a_new_item_becomes_visible_on_the_standby_and_the_lag_is_reported(standby):
    settings, _, _ = standby
    with db.transaction(settings) as conn:
        space_id = conn.execute("SELECT space_id FROM rec.item_embeddings WHERE item_id = 'i7' LIMIT 1").fetchone()[0]
        conn.execute("INSERT INTO rec.items (item_id, title, year, genres, content_hash) "
                     "VALUES ('i-new', 'A new item', 2001, '{Drama}', 'h')")
        conn.execute("INSERT INTO rec.item_embeddings (space_id, item_id, embedding, content_hash) "
                     "SELECT space_id, 'i-new', embedding, 'h' FROM rec.item_embeddings "
                     "WHERE item_id = 'i7' AND space_id = %s", (space_id,))
    found = _wait_caught_up(settings)
    assert found.bytes == 0 and found.seconds == 0.0 and "/" in found.replay_lsn
    with RecClient(settings) as client:
        # i-new shares i7's vector: the standby ranks it at the top of i7's neighbours.
        assert "i-new" in [r.item_id for r in client.similar_items("i7", 3, space="content")]
    (row,) = replica.replica_status(settings)
    assert row.name == "replica" and row.running and row.pid == replica.replica_pid(settings)
    assert row.detail.startswith("lag 0 bytes, 0.00s (replayed ")


def test_cli_up_replica_status_and_read_commands(standby, monkeypatch):
    """`up --replica` (idempotent here), `status` lists the standby, `recommend` reads the standby's rows."""
    import json

    from typer.testing import CliRunner

    from recplatform.cli import app
    from recplatform.config import get_settings

    settings, _, _ = standby
    monkeypatch.setenv("RECPLATFORM_STATE_DIR", str(settings.state_dir))
    monkeypatch.setenv("RECPLATFORM_DATABASE_NAME", settings.database_name)
    monkeypatch.setenv("COLUMNS", "400")
    get_settings.cache_clear()
    runner = CliRunner()
    pid = replica.replica_pid(settings)
    result = runner.invoke(app, ["up", "--replica"])
    assert result.exit_code == 0, result.output
    assert replica.replica_pid(settings) == pid  # the running standby is kept
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if row.lstrip("│ ").startswith("replica "))
    assert "running" in line and str(pid) in line and "lag" in line
    result = runner.invoke(app, ["recommend", "u150", "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    expected = _primary_rows(settings, "SELECT item_id FROM rec.recommend('u150', 3)")
    assert [r["item_id"] for r in json.loads(result.output)] == [i for i, in expected]


def test_stopping_the_standby_sends_reads_back_to_the_primary(standby):
    settings, _, _ = standby
    assert replica.stop_replica(settings)
    try:
        assert settings.read_url == settings.postgres_url
        with RecClient(settings) as client:
            assert client._connection().execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
            assert len(client.recommend("u150", 3)) == 3
    finally:
        replica.start_replica(settings)  # restarts from its data directory (no new base backup)
    assert replica.replica_pid(settings) and settings.read_url == settings.replica_url


def test_read_database_url_setting(tmp_path):
    settings = Settings(state_dir=tmp_path, database_url="postgresql+psycopg://u@primary/db",
                        read_database_url="postgres://u@replica/db")
    assert settings.read_url == "postgresql://u@replica/db"
    assert settings.postgres_url == "postgresql://u@primary/db"
    assert Settings(state_dir=tmp_path, database_url="postgresql://u@primary/db").read_url == "postgresql://u@primary/db"


def test_replica_needs_the_embedded_primary(tmp_path):
    with pytest.raises(RuntimeError, match="RECPLATFORM_READ_DATABASE_URL"):
        replica.start_replica(Settings(state_dir=tmp_path, database_url="postgresql://u@h/db"))
    with pytest.raises(RuntimeError, match="not running"):
        replica.start_replica(Settings(state_dir=tmp_path))


def test_memory_settings_are_sized_from_ram(tmp_path):
    settings = Settings(state_dir=tmp_path)
    gib = 1024 ** 3
    assert services.memory_settings(settings, 16 * gib) == {
        "shared_buffers": "4096MB", "effective_cache_size": "12288MB", "maintenance_work_mem": "2048MB"}
    assert services.memory_settings(settings, 1 * gib) == {
        "shared_buffers": "256MB", "effective_cache_size": "768MB", "maintenance_work_mem": "128MB"}
    big = services.memory_settings(settings, 512 * gib)
    assert big["shared_buffers"] == "16384MB" and big["maintenance_work_mem"] == "16384MB"
    chosen = Settings(state_dir=tmp_path, pg_shared_buffers="1GB")
    assert services.memory_settings(chosen, 16 * gib)["shared_buffers"] == "1GB"
    with pytest.raises(ValueError, match="RECPLATFORM_PG_MAINTENANCE_WORK_MEM"):
        services.memory_settings(Settings(state_dir=tmp_path, pg_maintenance_work_mem="lots"))
