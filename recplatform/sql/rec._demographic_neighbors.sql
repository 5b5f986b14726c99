-- Nearest established users to a demographic vector (HNSW over kind='demographic' vectors of the content space).
-- p_require: 'interactions' (at least neighbor_min_interactions items, from the cold row of
-- rec.retrieval_defaults, capped at the deployment's median history length (rec.deployment_stats, at least 5):
-- a user who is onboarding does not vote for others; when fewer than p_n users have that
-- many, the nearest users with at least 5 vote instead) or 'taste' (a taste vector in p_collab).
CREATE OR REPLACE FUNCTION rec._demographic_neighbors(p_content integer, p_collab integer, p_demo vector, p_self text,
                                                      p_n integer, p_require text)
RETURNS TABLE(user_id text, similarity double precision)
LANGUAGE plpgsql STABLE ROWS 100
SET hnsw.iterative_scan = 'relaxed_order'
SET hnsw.ef_search = '100'
SET hnsw.max_scan_tuples = '20000'
AS $fn$
#variable_conflict use_column
DECLARE
    v_dim integer;
    v_ids text[];
    v_dists double precision[];
    v_warm text;
    v_skip integer;
    v_sql constant text :=
        'WITH c AS MATERIALIZED (SELECT u.user_id, (u.embedding::vector(%1$s) <=> $1)::float8 AS dist'
        ' FROM rec.user_embeddings u WHERE u.space_id = %2$s AND u.kind = ''demographic'''
        ' AND u.user_id IS DISTINCT FROM $2 AND %3$s ORDER BY %4$s LIMIT $3)'
        ' SELECT array_agg(c.user_id ORDER BY c.dist, c.user_id), array_agg(c.dist ORDER BY c.dist, c.user_id) FROM c';
BEGIN
    SELECT m.dimension INTO v_dim FROM rec.embedding_models m WHERE m.space_id = p_content;
    IF vector_dims(p_demo) <> v_dim THEN
        RAISE EXCEPTION 'demographic vector has dimension % but content space % has dimension %',
            vector_dims(p_demo), p_content, v_dim USING ERRCODE = '22023', COLUMN = 'demographic';
    END IF;
    IF p_require = 'taste' THEN
        v_warm := format('EXISTS (SELECT 1 FROM rec.user_embeddings t WHERE t.space_id = %s AND t.user_id = u.user_id'
                         ' AND t.kind = ''taste'' OFFSET 0)', p_collab);
    ELSE
        -- OFFSET keeps this a per-row probe (not a semi-join over all interactions) beside the index scan; OFFSET
        -- m - 1: an m-th interaction exists
        v_warm := 'EXISTS (SELECT 1 FROM rec.interactions x WHERE x.user_id = u.user_id OFFSET $4)';
    END IF;
    v_skip := rec._voter_skip();
    PERFORM set_config('hnsw.ef_search', least(1000, greatest(64, 2 * p_n))::text, true);
    -- Most users with a demographic vector are warm: over-fetch 2n by the bare index scan, keep the warm ones
    -- (one primary-key probe each); only when that leaves fewer than n, filter inside the iterative scan.
    EXECUTE format(v_sql, v_dim, p_content, 'true', format('u.embedding::vector(%s) <=> $1', v_dim))
        INTO v_ids, v_dists USING p_demo, p_self, 2 * p_n, v_skip;
    IF p_require = 'taste' THEN
        SELECT array_agg(n.user_id ORDER BY n.ord), array_agg(n.dist ORDER BY n.ord) INTO v_ids, v_dists
        FROM (SELECT w.user_id, w.dist, w.ord FROM unnest(v_ids, v_dists) WITH ORDINALITY AS w(user_id, dist, ord)
              WHERE EXISTS (SELECT 1 FROM rec.user_embeddings t WHERE t.space_id = p_collab
                            AND t.user_id = w.user_id AND t.kind = 'taste' OFFSET 0)
              ORDER BY w.ord LIMIT p_n) n;
    ELSE
        SELECT array_agg(n.user_id ORDER BY n.ord), array_agg(n.dist ORDER BY n.ord) INTO v_ids, v_dists
        FROM (SELECT w.user_id, w.dist, w.ord FROM unnest(v_ids, v_dists) WITH ORDINALITY AS w(user_id, dist, ord)
              WHERE EXISTS (SELECT 1 FROM rec.interactions x WHERE x.user_id = w.user_id OFFSET v_skip)
              ORDER BY w.ord LIMIT p_n) n;
    END IF;
    IF coalesce(cardinality(v_ids), 0) < p_n THEN
        EXECUTE format(v_sql, v_dim, p_content, v_warm, format('u.embedding::vector(%s) <=> $1', v_dim))
            INTO v_ids, v_dists USING p_demo, p_self, p_n, v_skip;
    END IF;
    IF coalesce(cardinality(v_ids), 0) < p_n THEN
        EXECUTE format(v_sql, v_dim, p_content, v_warm, format('(u.embedding::vector(%s) <=> $1) + 0', v_dim))
            INTO v_ids, v_dists USING p_demo, p_self, p_n, v_skip;
    END IF;
    IF p_require <> 'taste' AND v_skip > 4 AND coalesce(cardinality(v_ids), 0) < p_n THEN
        -- too few users with the configured history (a small or young deployment): the nearest users that have
        -- at least 5 interactions vote instead (mixing the two sets would put far-away heavy users first)
        EXECUTE format(v_sql, v_dim, p_content, v_warm, format('u.embedding::vector(%s) <=> $1', v_dim))
            INTO v_ids, v_dists USING p_demo, p_self, p_n, 4;
    END IF;
    RETURN QUERY SELECT u.user_id, 1 - u.dist FROM unnest(v_ids, v_dists) AS u(user_id, dist);
END
$fn$;
