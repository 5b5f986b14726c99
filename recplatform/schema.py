"""The ``rec`` schema as SQLAlchemy Core tables: the reference Alembic autogenerate compares against.

Migrations under ``migrations/versions`` create these tables; per-space HNSW indexes are created by the
SQL function ``rec.ensure_space_indexes(space_id)`` (fired by a trigger when a space is registered),
because each space has its own dimension: a partial expression index
``USING hnsw ((embedding::vector(DIM)) vector_cosine_ops) WHERE space_id = ID``.
"""

from __future__ import annotations

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "rec"
metadata = MetaData(schema=SCHEMA)

CONTENT, COLLABORATIVE = "content", "collaborative"
DEMOGRAPHIC, TASTE = "demographic", "taste"


def _timestamps() -> list[Column]:
    return [
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


users = Table(
    "users", metadata,
    Column("user_id", Text, primary_key=True),
    Column("age", Integer),
    Column("gender", Text),
    Column("occupation", Text),
    Column("zip_code", Text),
    Column("content_hash", Text, nullable=False),
    *_timestamps(),
    CheckConstraint("age IS NULL OR age BETWEEN 0 AND 120", name="users_age_range"),
)

items = Table(
    "items", metadata,
    Column("item_id", Text, primary_key=True),
    Column("title", Text, nullable=False),
    Column("year", Integer),
    Column("genres", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    Column("description", Text),
    Column("extra", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("content_hash", Text, nullable=False),
    *_timestamps(),
    CheckConstraint("length(btrim(title)) > 0", name="items_title_not_empty"),
)

interactions = Table(
    "interactions", metadata,
    Column("interaction_id", BigInteger, Identity(), primary_key=True),
    Column("user_id", Text, ForeignKey("rec.users.user_id", ondelete="CASCADE"), nullable=False),
    Column("item_id", Text, ForeignKey("rec.items.item_id", ondelete="CASCADE"), nullable=False),
    Column("rating", Float),
    Column("weight", Float, nullable=False, server_default=text("1.0")),
    Column("event_type", Text, nullable=False, server_default=text("'rating'")),
    Column("occurred_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("user_id", "item_id", "event_type", "occurred_at", name="interactions_event_key"),
    Index("interactions_user_seen", "user_id", "occurred_at", postgresql_include=["item_id", "rating", "weight"]),
    Index("interactions_item", "item_id"),
)

embedding_models = Table(
    "embedding_models", metadata,
    Column("space_id", Integer, Identity(), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("model_ref", Text, nullable=False),
    Column("dimension", Integer, nullable=False),
    Column("template_version", Text, nullable=False, server_default=text("''")),
    Column("is_active", Boolean, nullable=False, server_default=text("false")),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("activated_at", DateTime(timezone=True)),
    CheckConstraint("kind IN ('content', 'collaborative')", name="embedding_models_kind"),
    CheckConstraint("dimension BETWEEN 1 AND 2000", name="embedding_models_dimension"),
    Index("embedding_models_one_active", "kind", unique=True, postgresql_where=text("is_active")),
)

item_embeddings = Table(
    "item_embeddings", metadata,
    Column("space_id", Integer, ForeignKey("rec.embedding_models.space_id", ondelete="CASCADE"), primary_key=True),
    Column("item_id", Text, ForeignKey("rec.items.item_id", ondelete="CASCADE"), primary_key=True),
    Column("embedding", Vector(), nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("embedded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

user_embeddings = Table(
    "user_embeddings", metadata,
    Column("space_id", Integer, ForeignKey("rec.embedding_models.space_id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Text, ForeignKey("rec.users.user_id", ondelete="CASCADE"), primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("embedding", Vector(), nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("embedded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("version", BigInteger),  # taste vectors: the newest interaction id they include (migration 0004)
    CheckConstraint("kind IN ('demographic', 'taste')", name="user_embeddings_kind"),
)
