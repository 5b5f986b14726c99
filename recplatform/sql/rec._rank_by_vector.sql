-- Nearest items to p_query in space p_space (HNSW, iterative scan, exact fallback), optionally blended with
-- the popularity prior: score = (1 - w) * cosine_similarity + w * popularity.
CREATE OR REPLACE FUNCTION rec._rank_by_vector(p_space integer, p_query vector, p_k integer, p_seen text[], p_genres text[],
                                               p_min_year integer, p_max_year integer, p_pop_weight double precision,
                                               p_source text, p_exclude_item text DEFAULT NULL)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10
SET hnsw.iterative_scan = 'relaxed_order'
SET hnsw.ef_search = '100'
SET hnsw.max_scan_tuples = '20000'
AS $fn$
#variable_conflict use_column
DECLARE
    v_dim integer;
    v_n integer;
    v_ef integer;
    v_ids text[];
    v_dists double precision[];
    v_pop_ids text[];
    v_pops double precision[];
    v_filter text := ' AND NOT (e.item_id = ANY($2)) AND e.item_id IS DISTINCT FROM $7';
    v_from text := 'rec.item_embeddings e';
    v_sql constant text :=
        'WITH c AS MATERIALIZED (SELECT e.item_id, (e.embedding::vector(%1$s) <=> $1)::float8 AS dist'
        ' FROM %5$s'
        ' WHERE e.space_id = %2$s %3$s ORDER BY %4$s LIMIT $6)'
        ' SELECT array_agg(c.item_id ORDER BY c.dist, c.item_id), array_agg(c.dist ORDER BY c.dist, c.item_id) FROM c';
BEGIN
    SELECT m.dimension INTO v_dim FROM rec.embedding_models m WHERE m.space_id = p_space;
    IF v_dim IS NULL THEN
        RAISE EXCEPTION 'unknown embedding space %', p_space USING ERRCODE = '22023', COLUMN = 'space';
    END IF;
    IF p_query IS NULL THEN
        RAISE EXCEPTION 'query vector is NULL' USING ERRCODE = '22023', COLUMN = 'query';
    END IF;
    IF vector_dims(p_query) <> v_dim THEN
        RAISE EXCEPTION 'query vector has dimension % but embedding space % has dimension %',
            vector_dims(p_query), p_space, v_dim USING ERRCODE = '22023', COLUMN = 'query';
    END IF;
    v_n := CASE WHEN p_pop_weight > 0 THEN greatest(p_k * 4, 50) ELSE p_k END;
    -- ef_search trades latency for recall: rec.ef_search (default 300) for taste and item vectors;
    -- rec.ef_search_mapped (default 800) for query vectors that are averages or regressions (learned map,
    -- neighbours' mean taste), which sit between clusters where the graph needs a wider search.
    -- Operators tune them with ALTER DATABASE ... SET rec.ef_search = 400.
    IF p_source IN ('learned_map', 'demographic_neighbors') THEN
        v_ef := coalesce(nullif(current_setting('rec.ef_search_mapped', true), '')::integer, 800);
    ELSE
        v_ef := coalesce(nullif(current_setting('rec.ef_search', true), '')::integer, 300);
    END IF;
    PERFORM set_config('hnsw.ef_search', least(1000, greatest(v_ef, 2 * v_n))::text, true);
    PERFORM set_config('hnsw.max_scan_tuples', greatest(20000, 100 * v_n)::text, true);
    IF p_genres IS NOT NULL OR p_min_year IS NOT NULL OR p_max_year IS NOT NULL THEN
        -- item filters need the item row; without them the index scan runs alone
        v_from := 'rec.item_embeddings e JOIN rec.items i ON i.item_id = e.item_id';
        v_filter := v_filter || ' AND rec._item_matches(i.genres, i.year, $3, $4, $5)';
    END IF;
    -- HNSW with iterative scan: ORDER BY exactly the indexed expression.
    EXECUTE format(v_sql, v_dim, p_space, v_filter, format('e.embedding::vector(%s) <=> $1', v_dim), v_from)
        INTO v_ids, v_dists
        USING p_query, coalesce(p_seen, '{}'::text[]), p_genres, p_min_year, p_max_year, v_n, p_exclude_item;
    IF coalesce(cardinality(v_ids), 0) < v_n THEN
        -- Exact scan ("+ 0" keeps the planner off the index): returns all that qualify when fewer than n do.
        EXECUTE format(v_sql, v_dim, p_space, v_filter, format('(e.embedding::vector(%s) <=> $1) + 0', v_dim),
                       v_from)
            INTO v_ids, v_dists
            USING p_query, coalesce(p_seen, '{}'::text[]), p_genres, p_min_year, p_max_year, v_n, p_exclude_item;
    END IF;
    v_ids := coalesce(v_ids, '{}');
    v_dists := coalesce(v_dists, '{}');
    IF coalesce(p_pop_weight, 0) <= 0 THEN
        RETURN QUERY
        SELECT u.ord::integer, u.item_id, i.title, 1 - u.dist, p_source
        FROM unnest(v_ids, v_dists) WITH ORDINALITY AS u(item_id, dist, ord)
        JOIN rec.items i ON i.item_id = u.item_id
        WHERE u.ord <= p_k
        ORDER BY u.ord;
        RETURN;
    END IF;
    -- Popular candidates that the vector search did not return get their similarity by primary-key lookups.
    SELECT array_agg(c.item_id), array_agg(c.popularity) INTO v_pop_ids, v_pops
    FROM rec._popular_candidates(p_seen, p_genres, p_min_year, p_max_year, v_n, p_exclude_item) c;
    RETURN QUERY
    WITH cand AS (
        SELECT u.item_id, 1 - u.dist AS sim FROM unnest(v_ids, v_dists) AS u(item_id, dist)
        UNION ALL
        SELECT e.item_id, 1 - (e.embedding <=> p_query) FROM rec.item_embeddings e
        WHERE e.space_id = p_space AND e.item_id = ANY(v_pop_ids) AND NOT (e.item_id = ANY(v_ids))
    ), scored AS (
        SELECT c.item_id, (1 - p_pop_weight) * c.sim + p_pop_weight * coalesce(p.popularity, 0) AS s,
               coalesce(p.popularity, 0) AS popularity
        FROM cand c LEFT JOIN rec.item_priors p ON p.item_id = c.item_id
    )
    SELECT (row_number() OVER (ORDER BY s.s DESC, s.popularity DESC, s.item_id))::integer, s.item_id, i.title,
           s.s, p_source
    FROM scored s JOIN rec.items i ON i.item_id = s.item_id
    ORDER BY 1
    LIMIT p_k;
END
$fn$;
