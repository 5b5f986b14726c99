"""SQL text used by the retrieval modules and the client, kept in one place (ranking lives in recplatform/sql).

Every statement binds values as parameters; the only ``str.format`` fields are integer space ids.
"""

# ----- training / fold-in --------------------------------------------------------------------------
INTERACTIONS_ALL = """
SELECT x.user_id, x.item_id, x.rating, x.weight, extract(epoch FROM x.occurred_at)::float8
FROM rec.interactions x
"""
# Interactions are numbered by an identity column: the highest id seen by a training is its watermark.
INTERACTION_WATERMARK = "SELECT coalesce(max(interaction_id), 0) FROM rec.interactions"
INTERACTIONS_SINCE = "SELECT count(*) FROM rec.interactions WHERE interaction_id > %s"
TRY_LOCK = "SELECT pg_try_advisory_lock(%s)"
UNLOCK = "SELECT pg_advisory_unlock(%s)"
INTERACTIONS_OF_USERS = """
SELECT x.user_id, x.item_id, x.rating, x.weight, extract(epoch FROM x.occurred_at)::float8
FROM rec.interactions x WHERE x.user_id = ANY(%s)
"""
ITEM_VECTORS = "SELECT e.item_id, e.embedding FROM rec.item_embeddings e WHERE e.space_id = %s ORDER BY e.item_id"
ITEM_VECTORS_FOR = "SELECT e.item_id, e.embedding FROM rec.item_embeddings e WHERE e.space_id = %s AND e.item_id = ANY(%s)"
ALL_ITEM_IDS = "SELECT i.item_id FROM rec.items i ORDER BY i.item_id"
DROP_ITEM_INDEX = "DROP INDEX IF EXISTS rec.item_embeddings_hnsw_{space_id}"
DROP_TASTE_INDEX = "DROP INDEX IF EXISTS rec.user_embeddings_hnsw_{space_id}_taste"
DELETE_SPACE = "DELETE FROM rec.embedding_models WHERE space_id = %s"
OLD_COLLABORATIVE_SPACES = """
SELECT m.space_id FROM rec.embedding_models m
WHERE m.kind = 'collaborative' AND NOT m.is_active
  AND m.space_id NOT IN (SELECT space_id FROM rec.embedding_models WHERE kind = 'collaborative'
                         ORDER BY space_id DESC LIMIT %s)
"""
REFRESH_ITEM_PRIORS = "SELECT rec.refresh_item_priors()"
DELETE_TASTE = "DELETE FROM rec.user_embeddings WHERE space_id = %s AND kind = 'taste' AND user_id = ANY(%s)"
UPSERT_TASTE = """
INSERT INTO rec.user_embeddings (space_id, user_id, kind, embedding, content_hash, embedded_at)
VALUES (%s, %s, 'taste', %s, %s, now())
ON CONFLICT (space_id, user_id, kind) DO UPDATE
SET embedding = EXCLUDED.embedding, content_hash = EXCLUDED.content_hash, embedded_at = now()
"""

# ----- cold-start maps -------------------------------------------------------------------------------
DEACTIVATE_MAPS = """
UPDATE rec.coldstart_maps SET is_active = false
WHERE kind = %s AND source_space_id = %s AND target_space_id = %s AND is_active
"""
INSERT_MAP = """
INSERT INTO rec.coldstart_maps (kind, source_space_id, target_space_id, source_dimension, target_dimension,
                                is_active, params)
VALUES (%s, %s, %s, %s, %s, true, %s::jsonb) RETURNING map_id
"""
INSERT_MAP_ROW = "INSERT INTO rec.coldstart_map_rows (map_id, out_index, weights, bias) VALUES (%s, %s, %s, %s)"
DEMOGRAPHIC_AND_TASTE = """
SELECT d.user_id, d.embedding, t.embedding
FROM rec.user_embeddings d
JOIN rec.user_embeddings t ON t.user_id = d.user_id AND t.space_id = %s AND t.kind = 'taste'
WHERE d.space_id = %s AND d.kind = 'demographic'
ORDER BY d.user_id
"""

# ----- client ------------------------------------------------------------------------------------------
RECOMMEND = """
SELECT rank, item_id, title, score, source
FROM rec.recommend(%(user_id)s, %(k)s, %(exclude_seen)s, %(genres)s, %(min_year)s, %(max_year)s, %(strategy)s,
                   %(popularity_weight)s, %(content_weight)s)
"""
RECOMMEND_FOR_DEMOGRAPHIC = """
SELECT rank, item_id, title, score, source
FROM rec.recommend_for_demographic_vector(%(vector)s, %(k)s, %(strategy)s, %(genres)s, %(min_year)s, %(max_year)s,
                                          %(popularity_weight)s)
"""
RECOMMEND_FOR_VECTOR = """
SELECT rank, item_id, title, score, source
FROM rec.recommend_for_vector(%(vector)s, %(k)s, %(genres)s, %(min_year)s, %(max_year)s, %(space)s, %(exclude_user)s)
"""
SIMILAR_ITEMS = """
SELECT rank, item_id, title, score, source
FROM rec.similar_items(%(item_id)s, %(k)s, %(genres)s, %(min_year)s, %(max_year)s, %(space)s)
"""
EXPLAIN = """
SELECT source, reason, ref_id, label, similarity, weight FROM rec.explain(%(user_id)s, %(item_id)s, %(k)s)
"""
ACTIVE_CONTENT_SPACE = """
SELECT space_id, model_ref, dimension, template_version FROM rec.embedding_models
WHERE kind = 'content' AND is_active
"""

# ----- limits and strategies (recplatform.retrieval.limits) --------------------------------------------
LIMITS = "SELECT max_k, min_year, max_year, max_genre_length, max_genres FROM rec.limits()"
STRATEGIES = "SELECT name, serves_cold FROM rec.strategies ORDER BY position"
