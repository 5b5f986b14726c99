-- Fresh items (fewer than p_max_interactions users, or created within p_max_age, or added since the priors were
-- last refreshed) that pass the filters and are unseen; of those the 2000 newest are ranked for a query vector
-- in the collaborative space (an exact scan over at most 2000 vectors), or newest first without one.
CREATE OR REPLACE FUNCTION rec._rank_fresh(p_collab integer, p_query vector, p_k integer, p_seen text[], p_genres text[],
                                p_min_year integer, p_max_year integer, p_max_interactions integer,
                                p_max_age interval, p_source text)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE sql STABLE ROWS 10 AS $fn$
    WITH fresh_ids AS (
        SELECT p.item_id FROM rec.item_priors p WHERE p.n_users < p_max_interactions
        UNION
        SELECT i.item_id FROM rec.items i WHERE p_max_age IS NOT NULL AND i.created_at > now() - p_max_age
        UNION
        SELECT i.item_id FROM rec.items i
        WHERE i.created_at > coalesce((SELECT max(p.refreshed_at) FROM rec.item_priors p), '-infinity')
    ), fresh AS (
        SELECT f.item_id, i.title, i.created_at
        FROM fresh_ids f JOIN rec.items i ON i.item_id = f.item_id
        WHERE NOT (f.item_id = ANY(coalesce(p_seen, '{}')))
          AND rec._item_matches(i.genres, i.year, p_genres, p_min_year, p_max_year)
        ORDER BY i.created_at DESC, f.item_id DESC
        LIMIT 2000
    ), scored AS (
        SELECT f.item_id, f.title, f.created_at,
               CASE WHEN p_query IS NULL OR e.embedding IS NULL THEN NULL
                    ELSE 1 - (e.embedding <=> p_query) END AS sim
        FROM fresh f
        LEFT JOIN rec.item_embeddings e ON e.space_id = p_collab AND e.item_id = f.item_id
    )
    SELECT (row_number() OVER (ORDER BY s.sim DESC NULLS LAST, s.created_at DESC, s.item_id))::integer, s.item_id,
           s.title, s.sim, p_source
    FROM scored s
    ORDER BY 1
    LIMIT p_k
$fn$;
