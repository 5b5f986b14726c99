-- Fresh items among the 10,000 newest (fewer than p_max_interactions users, or created within p_max_age, or
-- without priors yet: added since the priors were last refreshed) that pass the filters and are unseen; of those
-- the 2000 newest are ranked for a query vector in the collaborative space (an exact scan over at most 2000
-- vectors), or newest first without one. The candidates come from walking rec.items newest first (index
-- items_newest) with one primary-key probe of rec.item_priors per item, which stops after 2000 matches and never
-- reads more than 10,000 items (an old long-tail item is not "new"); the query vector is computed once
-- (MATERIALIZED), not once per candidate.
CREATE OR REPLACE FUNCTION rec._rank_fresh(p_collab integer, p_query vector, p_k integer, p_seen text[], p_genres text[],
                                p_min_year integer, p_max_year integer, p_max_interactions integer,
                                p_max_age interval, p_source text)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE sql STABLE ROWS 10 AS $fn$
    WITH q AS MATERIALIZED (
        SELECT p_query AS v
    ), fresh AS (
        SELECT i.item_id, i.title, i.created_at
        FROM (SELECT n.item_id, n.title, n.created_at, n.genres, n.year FROM rec.items n
              ORDER BY n.created_at DESC, n.item_id DESC LIMIT 10000) i
        -- OFFSET 0 keeps this a per-row probe beside the ordered index scan (not a hash join over all priors)
        WHERE (NOT EXISTS (SELECT 1 FROM rec.item_priors p WHERE p.item_id = i.item_id
                           AND p.n_users >= p_max_interactions OFFSET 0)
               OR (p_max_age IS NOT NULL AND i.created_at > now() - p_max_age))
          AND NOT (i.item_id = ANY(coalesce(p_seen, '{}')))
          AND rec._item_matches(i.genres, i.year, p_genres, p_min_year, p_max_year)
        ORDER BY i.created_at DESC, i.item_id DESC
        LIMIT 2000
    ), scored AS (
        SELECT f.item_id, f.title, f.created_at,
               CASE WHEN q.v IS NULL OR e.embedding IS NULL THEN NULL ELSE 1 - (e.embedding <=> q.v) END AS sim
        FROM fresh f CROSS JOIN q
        LEFT JOIN LATERAL (SELECT x.embedding FROM rec.item_embeddings x
                           WHERE x.space_id = p_collab AND x.item_id = f.item_id OFFSET 0) e ON true
    )
    SELECT (row_number() OVER (ORDER BY s.sim DESC NULLS LAST, s.created_at DESC, s.item_id))::integer, s.item_id,
           s.title, s.sim, p_source
    FROM scored s
    ORDER BY 1
    LIMIT p_k
$fn$;
