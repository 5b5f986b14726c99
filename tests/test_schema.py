"""The rec schema: migrations up and down, per-space HNSW indexes, dimension checks, the read-only role."""

import psycopg
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


def test_rec_reader_can_read_but_not_write(db_settings):
    with db.connect(db_settings) as conn:
        conn.execute("INSERT INTO rec.items (item_id, title, content_hash) VALUES ('i1', 'A', 'h')")
        conn.commit()
    reader_url = db_settings.postgres_url.replace("postgres@", "rec_reader@")
    with psycopg.connect(reader_url, autocommit=True) as conn:
        assert conn.execute("SELECT title FROM rec.items").fetchall() == [("A",)]
        for statement in ("INSERT INTO rec.items (item_id, title, content_hash) VALUES ('x', 'B', 'h')",
                          "UPDATE rec.items SET title = 'B'",
                          "DELETE FROM rec.items",
                          "CREATE TABLE public.evil (x int)",
                          "CREATE TABLE rec.evil (x int)"):
            with pytest.raises(psycopg.Error):
                conn.execute(statement)
        with pytest.raises(psycopg.Error):
            conn.execute("SELECT * FROM public.alembic_version")


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
