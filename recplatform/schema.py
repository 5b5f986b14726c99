"""The ``rec`` schema as SQLAlchemy Core tables: the reference Alembic autogenerate compares against.

Migrations under ``recplatform/migrations/versions`` create these tables; per-space HNSW indexes are created by the
SQL function ``rec.ensure_space_indexes(space_id)`` (fired by a trigger when a space is registered),
because each space has its own dimension: a partial expression index
``USING hnsw ((embedding::vector(DIM)) vector_cosine_ops) WHERE space_id = ID``.
"""

from __future__ import annotations

from pgvector.sqlalchemy import Vector
from sqlalchemy import (ARRAY, BigInteger, Boolean, CheckConstraint, Column, Computed, DateTime, Float, ForeignKey,
                        ForeignKeyConstraint, Identity, Index, Integer, MetaData, Table, Text, UniqueConstraint, func,
                        text)
from sqlalchemy.dialects.postgresql import INTERVAL, JSONB

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
    CheckConstraint("char_length(title) <= 1000", name="items_title_length"),  # input_limits.MAX_TITLE_LENGTH
    CheckConstraint("description IS NULL OR char_length(description) <= 10000", name="items_description_length"),
)
Index("items_newest", items.c.created_at.desc(), items.c.item_id.desc())  # fresh items, newest first (exploration)

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
    # recplatform.input_limits: a rating, when given, is in (0, 5]; a weight in (0, 1e6] (NaN fails both:
    # Postgres orders NaN above every number).
    CheckConstraint("rating IS NULL OR (rating > 0 AND rating <= 5)", name="interactions_rating_range"),
    CheckConstraint("weight > 0 AND weight <= 1e6", name="interactions_weight_range"),
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

# ----- retrieval (migrations 0002, 0004) ----------------------------------------------------------------
# The strategies rec.recommend knows, the one list: rec._check_request validates against it, the defaults below
# reference it, the client and the evaluation read it. ``serves_cold``: works for a user with no history
# (false for ``taste``, which needs the user's taste vector); ``position`` orders listings and error messages.
strategies = Table(
    "strategies", metadata,
    Column("name", Text, primary_key=True),
    Column("position", Integer, nullable=False, unique=True),
    Column("serves_cold", Boolean, nullable=False),
    Column("description", Text, nullable=False),
    UniqueConstraint("name", "serves_cold", name="strategies_name_serves_cold_key"),
)

# Default strategy and parameters per user type. A cold row's ``serves_cold`` is true (NULL for warm), so the
# foreign key (strategy, serves_cold) admits only strategies that serve cold users there.
retrieval_defaults = Table(
    "retrieval_defaults", metadata,
    Column("user_type", Text, primary_key=True),
    Column("strategy", Text, ForeignKey("rec.strategies.name", name="retrieval_defaults_strategy_fkey"),
           nullable=False),
    Column("popularity_weight", Float, nullable=False, server_default=text("0")),
    Column("neighbors", Integer, nullable=False, server_default=text("100")),
    Column("content_weight", Float, nullable=False, server_default=text("0")),
    Column("note", Text, nullable=False, server_default=text("''")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("serves_cold", Boolean, Computed("NULLIF(user_type = 'cold', false)", persisted=True)),
    # onboarding (users with at least one but fewer than switch_after distinct items): the cold prior updated by
    # evidence_weight * x_u.y_i once they have evidence_from items; exploration: the share of a list given to
    # fresh items (fewer than fresh_max_interactions users, or younger than fresh_max_age); tuning: what chose
    # the values (`recplatform tune` / the evaluation), with its validation score
    Column("evidence_weight", Float, nullable=False, server_default=text("0")),
    Column("evidence_from", Integer, nullable=False, server_default=text("1")),
    Column("switch_after", Integer, nullable=False, server_default=text("1")),
    Column("exploration_share", Float, nullable=False, server_default=text("0")),
    Column("fresh_max_interactions", Integer, nullable=False, server_default=text("5")),
    Column("fresh_max_age", INTERVAL),
    Column("tuning", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # demographic neighbours (cold and onboarding votes) are users with at least neighbor_min_interactions
    # items (read from the cold row); onboarding re-weights each neighbour by 1 + overlap_weight * (items it
    # shares with the user) and grows the evidence weight as evidence_weight * n / (n + evidence_n0)
    Column("neighbor_min_interactions", Integer, nullable=False, server_default=text("5")),
    Column("overlap_weight", Float, nullable=False, server_default=text("0")),
    Column("evidence_n0", Float, nullable=False, server_default=text("0")),
    # exploration: a fresh item takes its slot only when its similarity to the user's query vector is at least
    # exploration_min_ratio times that of the main list's k-th item (0 = always)
    Column("exploration_min_ratio", Float, nullable=False, server_default=text("0")),
    # precomputed neighbour votes (rec.cold_candidates) serve cold and onboarding users while younger than this
    # (read from the cold row); NULL: always vote live
    Column("candidates_max_age", INTERVAL, server_default=text("'1 day'")),
    # warm taste lists add item_item_weight * (the item-to-item weights from the user's items, rec.item_neighbors)
    # to the taste dot product (warm row; 0 = taste alone); the onboarding row's adds it to the onboarding score
    # from evidence_from items on
    Column("item_item_weight", Float, nullable=False, server_default=text("0")),
    CheckConstraint("user_type IN ('warm', 'cold', 'onboarding')", name="retrieval_defaults_user_type_check"),
    CheckConstraint("(user_type = 'onboarding') = (strategy = 'onboarding')",
                    name="retrieval_defaults_onboarding_check"),
    CheckConstraint("evidence_weight BETWEEN 0 AND 100", name="retrieval_defaults_evidence_weight_check"),
    CheckConstraint("evidence_from >= 1", name="retrieval_defaults_evidence_from_check"),
    CheckConstraint("switch_after >= 1", name="retrieval_defaults_switch_after_check"),
    CheckConstraint("exploration_share BETWEEN 0 AND 1", name="retrieval_defaults_exploration_share_check"),
    CheckConstraint("fresh_max_interactions >= 0", name="retrieval_defaults_fresh_max_interactions_check"),
    CheckConstraint("neighbor_min_interactions BETWEEN 1 AND 1000",
                    name="retrieval_defaults_neighbor_min_interactions_check"),
    CheckConstraint("overlap_weight BETWEEN 0 AND 1000", name="retrieval_defaults_overlap_weight_check"),
    CheckConstraint("evidence_n0 BETWEEN 0 AND 10000", name="retrieval_defaults_evidence_n0_check"),
    CheckConstraint("exploration_min_ratio BETWEEN 0 AND 10", name="retrieval_defaults_exploration_min_ratio_check"),
    CheckConstraint("item_item_weight BETWEEN 0 AND 100", name="retrieval_defaults_item_item_weight_check"),
    CheckConstraint("popularity_weight BETWEEN 0 AND 1", name="retrieval_defaults_popularity_weight_check"),
    CheckConstraint("neighbors BETWEEN 1 AND 1000", name="retrieval_defaults_neighbors_check"),
    CheckConstraint("content_weight BETWEEN 0 AND 1", name="retrieval_defaults_content_weight_check"),
    ForeignKeyConstraint(["strategy", "serves_cold"], ["rec.strategies.name", "rec.strategies.serves_cold"],
                         name="retrieval_defaults_cold_strategy_fkey"),
)

# Figures about the deployment's interactions that defaults are relative to, refreshed with the item priors
# (rec.refresh_item_priors): ``history_median`` = median number of distinct items of users with interactions
# (demographic neighbours need least(neighbor_min_interactions, greatest(5, history_median)) items).
deployment_stats = Table(
    "deployment_stats", metadata,
    Column("name", Text, primary_key=True),
    Column("value", Float, nullable=False),
    Column("refreshed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

item_priors = Table(
    "item_priors", metadata,
    Column("item_id", Text, ForeignKey("rec.items.item_id", ondelete="CASCADE"), primary_key=True),
    Column("n_users", BigInteger, nullable=False),
    Column("popularity", Float, nullable=False),
    Column("refreshed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # rank by (created_at, item_id) descending at the refresh, 1 = newest (rec._rank_fresh's "10,000 newest" cut)
    Column("newness", Integer),
)
Index("item_priors_rank", item_priors.c.popularity.desc(), item_priors.c.item_id)

# The 10,000 newest items at the last priors refresh (rec.refresh_fresh_pool, run by rec.refresh_item_priors), with
# their users and their vector in the active collaborative space, for the exploration slots (rec._rank_fresh): one
# compact table read in newness order instead of three probes per item. Mapping a new item's collaborative vector
# (retrieval/item_map.py) updates its row; a pool of another space than the active one is not read.
fresh_pool = Table(
    "fresh_pool", metadata,
    Column("space_id", Integer, ForeignKey("rec.embedding_models.space_id", ondelete="CASCADE"), primary_key=True),
    Column("item_id", Text, ForeignKey("rec.items.item_id", ondelete="CASCADE"), primary_key=True),
    Column("newness", Integer, nullable=False),  # rec.item_priors.newness at the refresh: 1 = newest
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("n_users", BigInteger, nullable=False),
    Column("embedding", Vector()),  # NULL: the item had no collaborative vector at the refresh
)
Index("fresh_pool_newness", fresh_pool.c.space_id, fresh_pool.c.newness)

# Precomputed demographic-neighbour votes of cold and onboarding users (rec.refresh_cold_candidates, run by the
# worker when it embeds a user and by reconcile when a row ages): the best-voted items, normalised votes descending,
# before seen items and filters (removed when served). ``complete``: every voted item is listed. A row is used only
# while its space, demographic content hash, neighbourhood size and voter minimum match and it is younger than
# the cold row's candidates_max_age; otherwise the vote is computed live (docs/retrieval.md, Precomputed votes).
cold_candidates = Table(
    "cold_candidates", metadata,
    Column("user_id", Text, ForeignKey("rec.users.user_id", ondelete="CASCADE"), primary_key=True),
    Column("space_id", Integer, ForeignKey("rec.embedding_models.space_id", ondelete="CASCADE"), nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("neighbors", Integer, nullable=False),
    Column("voter_skip", Integer, nullable=False),
    Column("item_ids", ARRAY(Text), nullable=False),
    Column("votes", ARRAY(Float), nullable=False),
    Column("complete", Boolean, nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("cold_candidates_computed_at", "computed_at"),
)

# Item-to-item weights of a collaborative space (EASE on its most-interacted items, written by the training with
# the space, dropped with it): per target item, the items whose weight towards it was kept (each source keeps its
# largest |weights|) and those weights. Warm lists add, for each candidate, the sum of the weights from the user's
# items (rec._item_item_scores; docs/retrieval.md).
item_neighbors = Table(
    "item_neighbors", metadata,
    Column("space_id", Integer, ForeignKey("rec.embedding_models.space_id", ondelete="CASCADE"), primary_key=True),
    Column("item_id", Text, ForeignKey("rec.items.item_id", ondelete="CASCADE"), primary_key=True),
    Column("source_ids", ARRAY(Text), nullable=False),
    Column("weights", ARRAY(Float), nullable=False),
)

coldstart_maps = Table(
    "coldstart_maps", metadata,
    Column("map_id", Integer, Identity(always=False), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("source_space_id", Integer, ForeignKey("rec.embedding_models.space_id", ondelete="CASCADE"),
           nullable=False),
    Column("target_space_id", Integer, ForeignKey("rec.embedding_models.space_id", ondelete="CASCADE"),
           nullable=False),
    Column("source_dimension", Integer, nullable=False),
    Column("target_dimension", Integer, nullable=False),
    Column("is_active", Boolean, nullable=False, server_default=text("false")),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("kind IN ('demographic_to_taste', 'content_to_item')", name="coldstart_maps_kind_check"),
    Index("coldstart_maps_one_active", "kind", "source_space_id", "target_space_id", unique=True,
          postgresql_where=text("is_active")),
)

coldstart_map_rows = Table(
    "coldstart_map_rows", metadata,
    Column("map_id", Integer, ForeignKey("rec.coldstart_maps.map_id", ondelete="CASCADE"), primary_key=True),
    Column("out_index", Integer, primary_key=True),
    Column("weights", Vector(), nullable=False),
    Column("bias", Float, nullable=False, server_default=text("0")),
)

# ----- batch recommendations (recplatform.batch; the task API's recommend_batch) -------------------------------
batch_runs = Table(
    "batch_runs", metadata,
    Column("run_id", Text, primary_key=True),
    Column("status", Text, nullable=False, server_default=text("'running'")),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("total", Integer, nullable=False, server_default=text("0")),
    Column("done", Integer, nullable=False, server_default=text("0")),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('running', 'done')", name="batch_runs_status_check"),
    CheckConstraint("done BETWEEN 0 AND total", name="batch_runs_done_check"),
)

# The users of a run, fixed when the run is created (a segment is resolved once); done_at marks the written ones.
batch_run_users = Table(
    "batch_run_users", metadata,
    Column("run_id", Text, ForeignKey("rec.batch_runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Text, primary_key=True),
    Column("done_at", DateTime(timezone=True)),
)

batch_recommendations = Table(
    "batch_recommendations", metadata,
    Column("run_id", Text, ForeignKey("rec.batch_runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Text, primary_key=True),
    Column("rank", Integer, primary_key=True),
    Column("item_id", Text, nullable=False),
    Column("score", Float, nullable=False),
    Column("source", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# ----- datasets loaded into this database (recplatform.ingest.catalogues) ---------------------------------------
# One row per catalogue a `load` or the demo brought in: loading a second, different one is refused unless asked for,
# so that two catalogues never mix silently (cold-start lists blending Star Wars with synthetic titles).
datasets = Table(
    "datasets", metadata,
    Column("catalogue", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("source", Text, nullable=False, server_default=text("''")),
    Column("first_loaded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_loaded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# ----- the task outbox (recplatform.outbox) ---------------------------------------------------------------------
# Celery messages an ingestion implies, written in its transaction; a worker's relay sends them and deletes the row.
task_outbox = Table(
    "task_outbox", metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("task", Text, nullable=False),
    Column("args", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("kwargs", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("queue", Text, nullable=False, server_default=text("'default'")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
