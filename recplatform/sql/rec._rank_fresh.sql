-- Fresh items among the 10,000 newest (fewer than p_max_interactions users, or created within p_max_age, or
-- without priors yet: added since the priors were last refreshed) that pass the filters and are unseen; of those
-- the 2000 newest are ranked for a query vector in the collaborative space (an exact scan over at most 2000
-- vectors), or newest first without one. The 10,000 newest items at the last priors refresh are kept in
-- rec.fresh_pool with their users, creation time and collaborative vector (rec.refresh_fresh_pool; mapping a new
-- item's vector updates its row), so the scan reads one compact table in newness order instead of probing
-- rec.items, rec.item_priors and rec.item_embeddings per item: the a items created since the refresh are all
-- newer than the pool (and all fresh: no prior yet), and a pooled item ranked r is among today's 10,000 newest when
-- r <= 10,000 - a. Filters probe rec.items for the live genres and year. Without a pool for p_collab (before the
-- first refresh, or p_collab NULL) or once 10,000 items were created since the refresh, rec.items is walked
-- newest first (index items_newest) with one primary-key probe of rec.item_priors per item, which stops after
-- 2000 matches and never reads more than 10,000 items (an old long-tail item is not "new"). Both give the same
-- list; SET rec.fresh_pool = 'off' walks (the benchmark's baseline arm). The query vector is computed once by the
-- caller.
CREATE OR REPLACE FUNCTION rec._rank_fresh(p_collab integer, p_query vector, p_k integer, p_seen text[], p_genres text[],
                                p_min_year integer, p_max_year integer, p_max_interactions integer,
                                p_max_age interval, p_source text)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
#variable_conflict use_column
DECLARE
    v_refreshed timestamptz;
    v_since integer;
    v_filtered constant boolean := p_genres IS NOT NULL OR p_min_year IS NOT NULL OR p_max_year IS NOT NULL;
BEGIN
    p_seen := coalesce(p_seen, '{}');
    SELECT p.refreshed_at INTO v_refreshed FROM rec.item_priors p LIMIT 1;
    SELECT count(*) INTO v_since FROM (SELECT 1 FROM rec.items n WHERE n.created_at >= v_refreshed LIMIT 10000) a;
    IF v_refreshed IS NOT NULL AND v_since < 10000 AND current_setting('rec.fresh_pool', true) IS DISTINCT FROM 'off'
       AND EXISTS (SELECT 1 FROM rec.fresh_pool f WHERE f.space_id = p_collab) THEN
        RETURN QUERY
        WITH recent AS MATERIALIZED (
            SELECT n.item_id, n.created_at,
                   (SELECT 1 - (x.embedding <=> p_query) FROM rec.item_embeddings x
                    WHERE p_query IS NOT NULL AND x.space_id = p_collab AND x.item_id = n.item_id) AS sim
            FROM rec.items n
            WHERE n.created_at >= v_refreshed AND NOT (n.item_id = ANY(p_seen))
              AND rec._item_matches(n.genres, n.year, p_genres, p_min_year, p_max_year)
              AND NOT EXISTS (SELECT 1 FROM rec.fresh_pool f WHERE f.space_id = p_collab AND f.item_id = n.item_id)
            ORDER BY n.created_at DESC, n.item_id DESC
            LIMIT 2000
        ), pooled AS (
            SELECT f.item_id, f.created_at,
                   CASE WHEN p_query IS NULL THEN NULL
                        WHEN f.embedding IS NOT NULL THEN 1 - (f.embedding <=> p_query)
                        ELSE (SELECT 1 - (x.embedding <=> p_query) FROM rec.item_embeddings x
                              WHERE x.space_id = p_collab AND x.item_id = f.item_id) END AS sim
            FROM rec.fresh_pool f
            WHERE f.space_id = p_collab AND f.newness <= 10000 - v_since
              AND (f.n_users < p_max_interactions OR (p_max_age IS NOT NULL AND f.created_at > now() - p_max_age))
              AND NOT (f.item_id = ANY(p_seen))
              AND (NOT v_filtered OR EXISTS (
                  SELECT 1 FROM rec.items i WHERE i.item_id = f.item_id
                    AND rec._item_matches(i.genres, i.year, p_genres, p_min_year, p_max_year)))
            ORDER BY f.newness
            LIMIT 2000 - (SELECT count(*) FROM recent)
        ), top AS (
            SELECT s.item_id, s.sim,
                   (row_number() OVER (ORDER BY s.sim DESC NULLS LAST, s.created_at DESC, s.item_id))::integer AS rank
            FROM (SELECT * FROM recent UNION ALL SELECT * FROM pooled) s
            ORDER BY 3
            LIMIT p_k
        )
        SELECT t.rank, t.item_id, i.title, t.sim, p_source
        FROM top t JOIN rec.items i ON i.item_id = t.item_id
        ORDER BY t.rank;
        RETURN;
    END IF;
    RETURN QUERY
    WITH fresh AS (
        SELECT i.item_id, i.title, i.created_at
        FROM (SELECT n.item_id, n.title, n.created_at, n.genres, n.year FROM rec.items n
              ORDER BY n.created_at DESC, n.item_id DESC LIMIT 10000) i
        -- OFFSET 0 keeps this a per-row probe beside the ordered index scan (not a hash join over all priors)
        WHERE (NOT EXISTS (SELECT 1 FROM rec.item_priors p WHERE p.item_id = i.item_id
                           AND p.n_users >= p_max_interactions OFFSET 0)
               OR (p_max_age IS NOT NULL AND i.created_at > now() - p_max_age))
          AND NOT (i.item_id = ANY(p_seen))
          AND rec._item_matches(i.genres, i.year, p_genres, p_min_year, p_max_year)
        ORDER BY i.created_at DESC, i.item_id DESC
        LIMIT 2000
    ), scored AS (
        SELECT f.item_id, f.title, f.created_at,
               CASE WHEN p_query IS NULL OR e.embedding IS NULL THEN NULL ELSE 1 - (e.embedding <=> p_query) END AS sim
        FROM fresh f
        LEFT JOIN LATERAL (SELECT x.embedding FROM rec.item_embeddings x
                           WHERE x.space_id = p_collab AND x.item_id = f.item_id OFFSET 0) e ON true
    )
    SELECT (row_number() OVER (ORDER BY s.sim DESC NULLS LAST, s.created_at DESC, s.item_id))::integer, s.item_id,
           s.title, s.sim, p_source
    FROM scored s
    ORDER BY 1
    LIMIT p_k;
END
$fn$;
