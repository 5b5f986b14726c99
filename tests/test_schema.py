"""The rec schema: migrations up and down, per-space HNSW indexes, dimension checks, the read-only role."""

import psycopg
from psycopg import sql
import pytest
from alembic.script import ScriptDirectory

from recplatform import db


def test_downgrade_then_upgrade(db_settings):
    assert db.current_revision(db_settings) is not None
    db.downgrade(db_settings, "base")
    assert db.current_revision(db_settings) is None
    with db.connect(db_settings, vector=False) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'rec'").fetchone()[0] == 0
    db.migrate(db_settings)
    with db.connect(db_settings) as conn:
        assert conn.execute("SELECT count(*) FROM rec.users").fetchone()[0] == 0


def test_downgrading_one_database_leaves_the_reader_its_other_databases(make_db):
    """The reader role is cluster-wide: a downgrade of one platform database must not revoke its CONNECT on
    another (DROP OWNED BY would: it also revokes privileges on shared objects such as databases)."""
    kept, downgraded = make_db("kept"), make_db("gone")
    db.downgrade(downgraded, "base")
    with psycopg.connect(kept.reader_url) as conn:
        assert conn.execute("SELECT count(*) FROM rec.items").fetchone()[0] == 0


def test_space_gets_typed_hnsw_index_and_rejects_wrong_dimension(db_settings):
    with db.connect(db_settings) as conn:
        space = conn.execute(
            "INSERT INTO rec.embedding_models (name, kind, model_ref, dimension) "
            "VALUES ('s', 'content', 'm', 3) RETURNING space_id").fetchone()[0]
        indexes = {r[0]: r[1] for r in conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'rec' AND indexdef LIKE '%hnsw%'")}
        assert f"item_embeddings_hnsw_{space}" in indexes
        assert "vector(3)" in indexes[f"item_embeddings_hnsw_{space}"]
        assert "vector_cosine_ops" in indexes[f"item_embeddings_hnsw_{space}"]
        assert f"user_embeddings_hnsw_{space}_demographic" in indexes
        assert f"user_embeddings_hnsw_{space}_taste" not in indexes  # tastes are read by id, never searched
        collab = conn.execute(
            "INSERT INTO rec.embedding_models (name, kind, model_ref, dimension) "
            "VALUES ('c', 'collaborative', 'als', 4) RETURNING space_id").fetchone()[0]
        hnsw = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%hnsw%'")}
        assert {n for n in hnsw if f"_{collab}" in n} == {f"item_embeddings_hnsw_{collab}"}
        conn.execute("INSERT INTO rec.items (item_id, title, content_hash) VALUES ('i1', 'A', 'h'), ('i2', 'B', 'h')")
        conn.execute("INSERT INTO rec.item_embeddings (space_id, item_id, embedding, content_hash) "
                     "VALUES (%s, 'i1', '[1,0,0]', 'h')", (space,))
        with pytest.raises(psycopg.errors.DataException, match="expected 3 dimensions"):
            conn.execute("INSERT INTO rec.item_embeddings (space_id, item_id, embedding, content_hash) "
                         "VALUES (%s, 'i2', '[1,0]', 'h')", (space,))
        conn.rollback()
        conn.execute("DELETE FROM rec.embedding_models")
        left = conn.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = 'rec' AND indexdef LIKE '%hnsw%'")
        assert left.fetchone()[0] == 0


LIFT_READ_ONLY = ("SET default_transaction_read_only = off", "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
DENIED = [
    "INSERT INTO rec.items (item_id, title, content_hash) VALUES ('x', 'B', 'h')",
    "UPDATE rec.items SET title = 'B'",
    "DELETE FROM rec.items",
    "TRUNCATE rec.interactions",
    "ALTER TABLE rec.items ADD COLUMN evil int",
    "CREATE TABLE public.evil (x int)",
    "CREATE TABLE rec.evil (x int)",
    "CREATE TEMP TABLE evil (x int)",
    "CREATE SCHEMA evil",
    "CREATE FUNCTION rec.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "SELECT nextval('rec.interactions_interaction_id_seq')",
    "SELECT * FROM public.alembic_version",
    "SELECT rec.refresh_item_priors()",
]


def _reader(settings, dbname=None):
    url = settings.reader_url if dbname is None else settings.reader_url.replace(
        f"/{settings.database_name}", f"/{dbname}", 1)
    return psycopg.connect(url, autocommit=True)


@pytest.mark.parametrize("statement", DENIED)
def test_rec_reader_writes_are_denied_by_privileges_whatever_the_session_sets(db_settings, statement):
    with db.connect(db_settings) as conn:
        conn.execute("INSERT INTO rec.items (item_id, title, content_hash) VALUES ('i1', 'A', 'h')")
        conn.commit()
    with _reader(db_settings) as conn:
        for lift in LIFT_READ_ONLY:
            conn.execute(lift)
        # The role may even change its own default: only the grants stand between it and a write.
        conn.execute(sql.SQL("ALTER ROLE rec_reader IN DATABASE {} SET default_transaction_read_only = off")
                     .format(sql.Identifier(db_settings.database_name)))
    with _reader(db_settings) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("off",)
        assert conn.execute("SELECT title FROM rec.items").fetchall() == [("A",)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
        with conn.transaction():  # inside an explicit read-write transaction too
            conn.execute("SET TRANSACTION READ WRITE")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with db.connect(db_settings) as conn:
        assert conn.execute("SELECT item_id, title FROM rec.items").fetchall() == [("i1", "A")]


def test_rec_reader_connects_only_to_the_platform_database(db_settings):
    for other in ("postgres", "template1"):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            _reader(db_settings, other)
    with _reader(db_settings) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (db_settings.database_name,)


def test_rec_reader_session_defaults_come_from_settings(db_settings):
    with _reader(db_settings) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("30s",)
        assert conn.execute("SHOW work_mem").fetchone() == ("16MB",)
    tuned = db_settings.model_copy(update={"reader_statement_timeout": "5min", "reader_work_mem": "8MB"})
    try:
        db.migrate(tuned)
        with _reader(db_settings) as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == ("5min",)
            assert conn.execute("SHOW work_mem").fetchone() == ("8MB",)
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SET statement_timeout = '50ms'; SELECT pg_sleep(5)")
    finally:
        db.migrate(db_settings)


def test_reader_settings_are_checked(monkeypatch):
    from recplatform.config import Settings, SettingsError

    for name, value in (("RECPLATFORM_READER_STATEMENT_TIMEOUT", "30s; DROP ROLE x"),
                        ("RECPLATFORM_READER_WORK_MEM", "lots")):
        monkeypatch.setenv(name, value)
        with pytest.raises(SettingsError):
            Settings()
        monkeypatch.delenv(name)


def test_cold_start_default_is_the_evaluated_best_and_downgrades(db_settings):
    query = "SELECT strategy, popularity_weight FROM rec.retrieval_defaults WHERE user_type = %s"
    with db.connect(db_settings) as conn:
        assert conn.execute(query, ("cold",)).fetchone() == ("neighbors_vote", 0.3)
        assert conn.execute(query, ("warm",)).fetchone() == ("taste", 0.0)
    db.downgrade(db_settings, "0002")
    with db.connect(db_settings) as conn:
        assert conn.execute(query, ("cold",)).fetchone() == ("neighbors_vote", 0.1)
    db.migrate(db_settings)
    assert db.current_revision(db_settings) == ScriptDirectory.from_config(db.alembic_config()).get_current_head()
