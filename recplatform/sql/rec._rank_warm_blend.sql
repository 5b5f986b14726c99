-- Warm users, taste blended with the content space (weight c, set by the evaluation):
-- score = (1 - w) * [(1 - c) * cos(taste, y_i) + c * cos(content_taste, e_i)] + w * popularity, where content_taste
-- is the mean content embedding of the user's history. Candidates: the 4k nearest in each space and the 4k most
-- popular that pass the filters; every candidate is scored in both spaces by primary-key lookups.
CREATE OR REPLACE FUNCTION rec._rank_warm_blend(p_collab integer, p_taste vector, p_content integer, p_content_taste vector,
                                                p_content_weight double precision, p_k integer, p_seen text[], p_genres text[],
                                                p_min_year integer, p_max_year integer, p_pop_weight double precision)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
#variable_conflict use_column
DECLARE
    v_n constant integer := greatest(p_k * 4, 50);
BEGIN
    RETURN QUERY
    WITH cand AS (
        SELECT c.item_id FROM rec._rank_by_vector(p_collab, p_taste, v_n, p_seen, p_genres, p_min_year, p_max_year,
                                                  0, 'taste') c
        UNION
        SELECT c.item_id FROM rec._rank_by_vector(p_content, p_content_taste, v_n, p_seen, p_genres, p_min_year,
                                                  p_max_year, 0, 'taste') c
        UNION
        SELECT c.item_id FROM rec._popular_candidates(p_seen, p_genres, p_min_year, p_max_year, v_n) c
        WHERE p_pop_weight > 0
    ), scored AS (
        SELECT c.item_id,
               (1 - p_pop_weight) * ((1 - p_content_weight) * coalesce(1 - (a.embedding <=> p_taste), 0)
                                     + p_content_weight * coalesce(1 - (b.embedding <=> p_content_taste), 0))
                   + p_pop_weight * coalesce(p.popularity, 0) AS s,
               coalesce(p.popularity, 0) AS popularity
        FROM cand c
        LEFT JOIN rec.item_embeddings a ON a.space_id = p_collab AND a.item_id = c.item_id
        LEFT JOIN rec.item_embeddings b ON b.space_id = p_content AND b.item_id = c.item_id
        LEFT JOIN rec.item_priors p ON p.item_id = c.item_id
    )
    SELECT (row_number() OVER (ORDER BY s.s DESC, s.popularity DESC, s.item_id))::integer, s.item_id, i.title, s.s,
           'taste'::text
    FROM scored s JOIN rec.items i ON i.item_id = s.item_id
    ORDER BY 1
    LIMIT p_k;
END
$fn$;
