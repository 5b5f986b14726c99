-- Fresh items among the 10,000 newest (fewer than p_max_interactions users, or created within p_max_age, or
-- without priors yet: added since the priors were last refreshed) that pass the filters and are unseen; of those
-- the 2000 newest are ranked for a query vector in the collaborative space (an exact scan over at most 2000
-- vectors), or newest first without one. Where fresh items are few (at most 10,000 with fewer than
-- p_max_interactions users, the usual case) they are read from the index item_priors_n_users, which also holds
-- each item's newness rank at the last refresh (1 = newest): the a items created since then are all newer, so an
-- item ranked r is among today's 10,000 newest when r <= 10,000 - a, decided in the index without visiting the
-- item. The items created since the refresh (items_newest; created_at defaults to the insert's time, so an item
-- without a prior is one of them) join them. Otherwise (many fresh items, or 10,000 new since the refresh)
-- rec.items is walked newest first (index items_newest) with one primary-key probe of rec.item_priors per item,
-- which stops after 2000 matches and never reads more than 10,000 items (an old long-tail item is not "new").
-- The query vector is computed once by the caller.
CREATE OR REPLACE FUNCTION rec._rank_fresh(p_collab integer, p_query vector, p_k integer, p_seen text[], p_genres text[],
                                p_min_year integer, p_max_year integer, p_max_interactions integer,
                                p_max_age interval, p_source text)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
#variable_conflict use_column
DECLARE
    v_refreshed timestamptz;
    v_few integer;
    v_since integer;
    v_cut_at timestamptz;
    v_cut_id text;
BEGIN
    p_seen := coalesce(p_seen, '{}');
    SELECT p.refreshed_at INTO v_refreshed FROM rec.item_priors p LIMIT 1;
    SELECT count(*) INTO v_few
    FROM (SELECT 1 FROM rec.item_priors p WHERE p.n_users < p_max_interactions LIMIT 10001) f;
    SELECT count(*) INTO v_since FROM (SELECT 1 FROM rec.items n WHERE n.created_at >= v_refreshed LIMIT 10000) a;
    IF v_refreshed IS NOT NULL AND v_few <= 10000 AND v_since < 10000 THEN
        IF p_max_age IS NOT NULL THEN
            -- the 10,000th newest item: items created within p_max_age but older than it are not "new"
            SELECT n.created_at, n.item_id INTO v_cut_at, v_cut_id
            FROM rec.items n ORDER BY n.created_at DESC, n.item_id DESC OFFSET 9999 LIMIT 1;
        END IF;
        RETURN QUERY
        WITH cand AS (
            SELECT p.item_id FROM rec.item_priors p
            WHERE p.n_users < p_max_interactions AND p.newness <= 10000 - v_since
            UNION
            SELECT n.item_id FROM rec.items n
            WHERE n.created_at >= v_refreshed
              AND NOT EXISTS (SELECT 1 FROM rec.item_priors p WHERE p.item_id = n.item_id)
            UNION
            SELECT n.item_id FROM rec.items n WHERE p_max_age IS NOT NULL AND n.created_at > now() - p_max_age
              AND (v_cut_at IS NULL OR (n.created_at, n.item_id) >= (v_cut_at, v_cut_id))
        ), fresh AS (
            SELECT i.item_id, i.title, i.created_at
            -- OFFSET 0: one primary-key probe per candidate (not a scan of rec.items)
            FROM cand c CROSS JOIN LATERAL (SELECT n.item_id, n.title, n.created_at, n.genres, n.year FROM rec.items n
                                            WHERE n.item_id = c.item_id OFFSET 0) i
            WHERE NOT (i.item_id = ANY(p_seen))
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
        SELECT (row_number() OVER (ORDER BY s.sim DESC NULLS LAST, s.created_at DESC, s.item_id))::integer,
               s.item_id, s.title, s.sim, p_source
        FROM scored s
        ORDER BY 1
        LIMIT p_k;
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
