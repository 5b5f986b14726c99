"""rec schema: entities, interactions, embedding spaces and vectors, feature views, rec_reader role.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Embedding spaces may differ in dimension, so the vector columns are untyped ``vector`` and every space
gets its own *typed partial expression* HNSW index, created by ``rec.ensure_space_indexes(space_id)``
from a trigger on ``rec.embedding_models``:

    CREATE INDEX item_embeddings_hnsw_<id> ON rec.item_embeddings
        USING hnsw ((embedding::vector(<dim>)) vector_cosine_ops) WHERE space_id = <id>

A query uses it by repeating the cast and the predicate. The cast also rejects a vector of the wrong
dimension at insert time.
"""
from alembic import op
import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts():
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    ]


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute("CREATE SCHEMA IF NOT EXISTS rec")

    op.create_table(
        "users",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("age", sa.Integer),
        sa.Column("gender", sa.Text),
        sa.Column("occupation", sa.Text),
        sa.Column("zip_code", sa.Text),
        sa.Column("content_hash", sa.Text, nullable=False),
        *_ts(),
        sa.CheckConstraint("age IS NULL OR age BETWEEN 0 AND 120", name="users_age_range"),
        schema="rec",
    )
    op.create_table(
        "items",
        sa.Column("item_id", sa.Text, primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("year", sa.Integer),
        sa.Column("genres", sa.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'::text[]")),
        sa.Column("description", sa.Text),
        sa.Column("extra", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("content_hash", sa.Text, nullable=False),
        *_ts(),
        sa.CheckConstraint("length(btrim(title)) > 0", name="items_title_not_empty"),
        schema="rec",
    )
    op.create_table(
        "interactions",
        sa.Column("interaction_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.Text, sa.ForeignKey("rec.users.user_id", ondelete="CASCADE"), nullable=False),
        sa.Column("item_id", sa.Text, sa.ForeignKey("rec.items.item_id", ondelete="CASCADE"), nullable=False),
        sa.Column("rating", sa.Float),
        sa.Column("weight", sa.Float, nullable=False, server_default=sa.text("1.0")),
        sa.Column("event_type", sa.Text, nullable=False, server_default=sa.text("'rating'")),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("user_id", "item_id", "event_type", "occurred_at", name="interactions_event_key"),
        schema="rec",
    )
    op.create_index("interactions_user_seen", "interactions", ["user_id", "occurred_at"], schema="rec",
                    postgresql_include=["item_id", "rating", "weight"])
    op.create_index("interactions_item", "interactions", ["item_id"], schema="rec")

    op.create_table(
        "embedding_models",
        sa.Column("space_id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("model_ref", sa.Text, nullable=False),
        sa.Column("dimension", sa.Integer, nullable=False),
        sa.Column("template_version", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("params", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("activated_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("kind IN ('content', 'collaborative')", name="embedding_models_kind"),
        sa.CheckConstraint("dimension BETWEEN 1 AND 2000", name="embedding_models_dimension"),
        schema="rec",
    )
    op.create_index("embedding_models_one_active", "embedding_models", ["kind"], unique=True, schema="rec",
                    postgresql_where=sa.text("is_active"))

    op.create_table(
        "item_embeddings",
        sa.Column("space_id", sa.Integer, sa.ForeignKey("rec.embedding_models.space_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("item_id", sa.Text, sa.ForeignKey("rec.items.item_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("embedding", Vector(), nullable=False),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("embedded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema="rec",
    )
    op.create_table(
        "user_embeddings",
        sa.Column("space_id", sa.Integer, sa.ForeignKey("rec.embedding_models.space_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("user_id", sa.Text, sa.ForeignKey("rec.users.user_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("embedding", Vector(), nullable=False),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("embedded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("kind IN ('demographic', 'taste')", name="user_embeddings_kind"),
        schema="rec",
    )

    # Per-space HNSW indexes (see module docstring), created and dropped with the space.
    op.execute("""
    CREATE FUNCTION rec.ensure_space_indexes(p_space_id int) RETURNS void
    LANGUAGE plpgsql AS $fn$
    DECLARE
        d int;
        k text;
    BEGIN
        SELECT dimension INTO d FROM rec.embedding_models WHERE space_id = p_space_id;
        IF d IS NULL THEN
            RAISE EXCEPTION 'unknown embedding space %', p_space_id;
        END IF;
        EXECUTE format(
            'CREATE INDEX IF NOT EXISTS %I ON rec.item_embeddings '
            'USING hnsw ((embedding::vector(%s)) vector_cosine_ops) WHERE space_id = %s',
            'item_embeddings_hnsw_' || p_space_id, d, p_space_id);
        FOREACH k IN ARRAY ARRAY['demographic', 'taste'] LOOP
            EXECUTE format(
                'CREATE INDEX IF NOT EXISTS %I ON rec.user_embeddings '
                'USING hnsw ((embedding::vector(%s)) vector_cosine_ops) WHERE space_id = %s AND kind = %L',
                'user_embeddings_hnsw_' || p_space_id || '_' || k, d, p_space_id, k);
        END LOOP;
    END
    $fn$
    """)
    op.execute("""
    CREATE FUNCTION rec.embedding_models_indexes() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
    DECLARE
        k text;
    BEGIN
        IF TG_OP = 'INSERT' THEN
            PERFORM rec.ensure_space_indexes(NEW.space_id);
            RETURN NEW;
        END IF;
        EXECUTE format('DROP INDEX IF EXISTS rec.%I', 'item_embeddings_hnsw_' || OLD.space_id);
        FOREACH k IN ARRAY ARRAY['demographic', 'taste'] LOOP
            EXECUTE format('DROP INDEX IF EXISTS rec.%I', 'user_embeddings_hnsw_' || OLD.space_id || '_' || k);
        END LOOP;
        RETURN OLD;
    END
    $fn$
    """)
    op.execute("""
    CREATE TRIGGER embedding_models_indexes
        AFTER INSERT OR DELETE ON rec.embedding_models
        FOR EACH ROW EXECUTE FUNCTION rec.embedding_models_indexes()
    """)
    op.execute("REVOKE EXECUTE ON FUNCTION rec.ensure_space_indexes(int) FROM PUBLIC")

    # Interaction aggregates that Feast serves (item_popularity, user_activity) and ranking/novelty use.
    op.execute("""
    CREATE VIEW rec.item_popularity AS
    SELECT i.item_id,
           count(x.item_id)::bigint AS n_interactions,
           count(DISTINCT x.user_id)::bigint AS n_users,
           avg(x.rating)::double precision AS mean_rating,
           max(x.occurred_at) AS last_interaction_at,
           greatest(i.updated_at, max(x.occurred_at)) AS event_timestamp
    FROM rec.items i
    LEFT JOIN rec.interactions x ON x.item_id = i.item_id
    GROUP BY i.item_id, i.updated_at
    """)
    op.execute("""
    CREATE VIEW rec.user_activity AS
    SELECT u.user_id,
           count(x.item_id)::bigint AS n_interactions,
           avg(x.rating)::double precision AS mean_rating,
           max(x.occurred_at) AS last_interaction_at,
           greatest(u.updated_at, max(x.occurred_at)) AS event_timestamp
    FROM rec.users u
    LEFT JOIN rec.interactions x ON x.user_id = u.user_id
    GROUP BY u.user_id, u.updated_at
    """)

    # Read-only role for analytics tools: SELECT on rec (and EXECUTE on its retrieval functions), nothing else.
    # No password here: recplatform.db.migrate sets it after the upgrade (db.set_role_password, a SCRAM verifier
    # computed client-side), so it never appears in migration SQL.
    op.execute("""
    DO $do$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rec_reader') THEN
            CREATE ROLE rec_reader LOGIN;
        END IF;
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO rec_reader', current_database());
    END
    $do$
    """)
    op.execute("ALTER ROLE rec_reader SET default_transaction_read_only = on")
    op.execute("GRANT USAGE ON SCHEMA rec TO rec_reader")
    op.execute("GRANT SELECT ON ALL TABLES IN SCHEMA rec TO rec_reader")
    op.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA rec GRANT SELECT ON TABLES TO rec_reader")
    op.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS rec CASCADE")
    op.execute("""
    DO $do$
    BEGIN
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rec_reader') THEN
            -- Not DROP OWNED BY: it also revokes the role's privileges on shared objects, i.e. CONNECT on every
            -- other platform database of the server. What it had here went with schema rec.
            EXECUTE format('REVOKE ALL ON DATABASE %I FROM rec_reader', current_database());
            REVOKE ALL ON SCHEMA public FROM rec_reader;
            BEGIN
                DROP ROLE rec_reader;
            EXCEPTION WHEN dependent_objects_still_exist THEN
                RAISE NOTICE 'rec_reader still has privileges in another database; role kept';
            END;
        END IF;
    END
    $do$
    """)
