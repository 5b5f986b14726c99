"""SQL text used by the retrieval modules and the client, kept in one place (ranking lives in recplatform/sql).

Every statement binds values as parameters.
"""

# ----- training / fold-in --------------------------------------------------------------------------
# Interactions are numbered by an identity column: the highest id seen by a training is its watermark.
INTERACTION_WATERMARK = "SELECT coalesce(max(interaction_id), 0) FROM rec.interactions"
INTERACTIONS_SINCE = "SELECT count(*) FROM rec.interactions WHERE interaction_id > %s"
TRY_LOCK = "SELECT pg_try_advisory_lock(%s)"
LOCK_HOLDER = """
SELECT l.pid FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND ((l.classid::bigint << 32) | l.objid::bigint) = %s
"""
# Aggregating 10M interactions: enough memory for the hash aggregate and sorts (this transaction only).
TRAINING_WORK_MEM = "SET LOCAL work_mem = '256MB'"
UNLOCK = "SELECT pg_advisory_unlock(%s)"
ITEM_VECTORS = "SELECT e.item_id, e.embedding FROM rec.item_embeddings e WHERE e.space_id = %s ORDER BY e.item_id"
ITEM_VECTORS_FOR = "SELECT e.item_id, e.embedding FROM rec.item_embeddings e WHERE e.space_id = %s AND e.item_id = ANY(%s)"
ALL_ITEM_IDS = "SELECT i.item_id FROM rec.items i ORDER BY i.item_id"
OLD_COLLABORATIVE_SPACES = """
SELECT m.space_id FROM rec.embedding_models m
WHERE m.kind = 'collaborative' AND NOT m.is_active
  AND m.space_id NOT IN (SELECT space_id FROM rec.embedding_models WHERE kind = 'collaborative'
                         ORDER BY space_id DESC LIMIT %s)
"""
BUILDING_COLLABORATIVE_SPACES = """
SELECT m.space_id FROM rec.embedding_models m
WHERE m.kind = 'collaborative' AND NOT m.is_active
  AND coalesce(m.params->>'status', 'building') IN ('building', 'dropping')
ORDER BY m.space_id
"""
REFRESH_ITEM_PRIORS = "SELECT rec.refresh_item_priors()"
# Cold and onboarding users' precomputed neighbour votes (rec.cold_candidates): refresh some users; the rows past
# half their allowed age, oldest first (refreshed before serving stops reading them).
REFRESH_COLD_CANDIDATES = "SELECT rec.refresh_cold_candidates(%s::text[])"
AGING_COLD_CANDIDATES = """
SELECT c.user_id FROM rec.cold_candidates c JOIN rec.retrieval_defaults d ON d.user_type = 'cold'
WHERE c.computed_at < now() - d.candidates_max_age / 2
ORDER BY c.computed_at, c.user_id
LIMIT %s
"""
# For `status`: rows (the planner's estimate, no scan), rows past half their age, rows past it (both by index).
COLD_CANDIDATES_STATUS = """
SELECT greatest((SELECT reltuples FROM pg_class WHERE oid = 'rec.cold_candidates'::regclass), 0)::bigint,
       (SELECT count(*) FROM rec.cold_candidates c WHERE c.computed_at < now() - d.candidates_max_age / 2),
       (SELECT count(*) FROM rec.cold_candidates c WHERE c.computed_at < now() - d.candidates_max_age),
       d.candidates_max_age::text
FROM rec.retrieval_defaults d WHERE d.user_type = 'cold'
"""
ANALYZE_ITEM_PRIORS = "ANALYZE rec.item_priors, rec.fresh_pool"
# A taste is removed only when the removing fold-in saw the user's newest interaction (version guard).
DELETE_TASTE = """
DELETE FROM rec.user_embeddings t USING unnest(%(ids)s::text[], %(versions)s::int8[]) AS d(user_id, version)
WHERE t.space_id = %(space_id)s AND t.kind = 'taste' AND t.user_id = d.user_id
  AND coalesce(t.version, 0) <= d.version
"""
# Written only over a taste of the same or an older version (never older data over newer).
UPSERT_TASTE = """
INSERT INTO rec.user_embeddings AS t (space_id, user_id, kind, embedding, content_hash, version, embedded_at)
SELECT %(space_id)s, u.id, 'taste', u.vec, u.hash, u.version, now()
FROM unnest(%(ids)s::text[], %(vecs)b::vector[], %(hashes)s::text[], %(versions)s::int8[]) AS u(id, vec, hash, version)
ON CONFLICT (space_id, user_id, kind) DO UPDATE
SET embedding = excluded.embedding, content_hash = excluded.content_hash, version = excluded.version,
    embedded_at = excluded.embedded_at
WHERE t.version IS NULL OR excluded.version >= t.version
"""
NEWEST_INTERACTION_OF = """
SELECT x.user_id, max(x.interaction_id) FROM rec.interactions x WHERE x.user_id = ANY(%s) GROUP BY x.user_id
"""
USERS_SINCE = "SELECT DISTINCT x.user_id FROM rec.interactions x WHERE x.interaction_id > %s ORDER BY 1"
# Tastes older than their user's newest interaction; users with newer (positive) interactions than the
# training and no taste at all.
STALE_TASTES = """
WITH newest AS (
    SELECT x.user_id, max(x.interaction_id) AS newest, bool_or(x.weight * coalesce(x.rating, 1.0) > 0) AS positive
    FROM rec.interactions x GROUP BY x.user_id
)
SELECT n.user_id FROM newest n
LEFT JOIN rec.user_embeddings t ON t.space_id = %(space_id)s AND t.kind = 'taste' AND t.user_id = n.user_id
WHERE (t.user_id IS NOT NULL AND coalesce(t.version, 0) < n.newest)
   OR (t.user_id IS NULL AND n.positive AND n.newest > %(watermark)s)
ORDER BY n.user_id
LIMIT %(limit)s
"""

# ----- items mapped from content (item_map.py) ----------------------------------------------------------
# Items whose current content vector has no collaborative vector (or, for the ids asked for, only a mapped one).
ITEMS_TO_MAP = """
SELECT c.item_id, c.embedding
FROM rec.item_embeddings c
JOIN rec.items i ON i.item_id = c.item_id AND i.content_hash = c.content_hash
LEFT JOIN rec.item_embeddings e ON e.space_id = %(collab)s AND e.item_id = c.item_id
WHERE c.space_id = %(content)s
  AND (%(ids)s::text[] IS NULL OR c.item_id = ANY(%(ids)s::text[]))
  AND (e.item_id IS NULL OR (%(ids)s::text[] IS NOT NULL AND e.content_hash = 'mapped'))
ORDER BY c.item_id
"""
ACTIVE_MAP_ROWS = """
SELECT r.weights, r.bias FROM rec.coldstart_maps m JOIN rec.coldstart_map_rows r ON r.map_id = m.map_id
WHERE m.kind = %s AND m.source_space_id = %s AND m.target_space_id = %s AND m.is_active
ORDER BY r.out_index
"""
TRAINED_AND_CONTENT = """
SELECT c.embedding, e.embedding
FROM rec.item_embeddings e JOIN rec.item_embeddings c ON c.item_id = e.item_id AND c.space_id = %s
WHERE e.space_id = %s AND e.content_hash = 'trained'
ORDER BY e.item_id
"""
# the items' rows in the fresh pool (rec._rank_fresh) take the new vectors too; the count of vectors written
UPSERT_MAPPED_ITEMS = """
WITH written AS (
    INSERT INTO rec.item_embeddings AS e (space_id, item_id, embedding, content_hash, embedded_at)
    SELECT %(space_id)s, t.id, t.vec, 'mapped', now()
    FROM unnest(%(ids)s::text[], %(vecs)b::vector[]) AS t(id, vec)
    ON CONFLICT (space_id, item_id) DO UPDATE SET embedding = excluded.embedding, embedded_at = excluded.embedded_at
    WHERE e.content_hash = 'mapped'
    RETURNING e.item_id, e.embedding
), pooled AS (
    UPDATE rec.fresh_pool f SET embedding = w.embedding FROM written w
    WHERE f.space_id = %(space_id)s AND f.item_id = w.item_id
)
SELECT count(*) FROM written
"""

# ----- tuning ------------------------------------------------------------------------------------------
STORE_TUNING = """
UPDATE rec.retrieval_defaults SET popularity_weight = %s, item_item_weight = %s, tuning = %s::jsonb, updated_at = now(),
       note = 'recplatform tune: chosen on a validation split of this deployment''s interactions'
WHERE user_type = 'warm'
"""
COPY_ITEM_NEIGHBORS = "COPY rec.item_neighbors (space_id, item_id, source_ids, weights) FROM STDIN"
TUNED_ALS = "SELECT tuning->'als' FROM rec.retrieval_defaults WHERE user_type = 'warm'"

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
                   %(popularity_weight)s, %(content_weight)s, %(exploration_share)s)
"""
NEW_FOR_YOU = """
SELECT rank, item_id, title, score, source
FROM rec.new_for_you(%(user_id)s, %(k)s, %(genres)s, %(min_year)s, %(max_year)s, %(exclude_seen)s)
"""
RETRIEVAL_DEFAULTS = """
SELECT user_type, strategy, popularity_weight, neighbors, content_weight, evidence_weight, evidence_from,
       switch_after, exploration_share, fresh_max_interactions, fresh_max_age::text, neighbor_min_interactions,
       overlap_weight, evidence_n0, exploration_min_ratio, candidates_max_age::text, item_item_weight, tuning, note,
       updated_at
FROM rec.retrieval_defaults ORDER BY user_type
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
