-- Ranks voted candidates (normalised votes, from rec._neighbor_votes live or rec._cached_votes) blended with the
-- popularity prior: (1 - w) * vote + w * popularity. The p_n = max(4k, 50) best-voted and as many most popular
-- items that pass the filters are the candidates (with w < 1 an item outside both would need both a high vote
-- and a high prior); popular items fill in so k rows come back whenever k qualify.
CREATE OR REPLACE FUNCTION rec._rank_voted(p_ids text[], p_votes double precision[], p_k integer, p_seen text[],
                                           p_genres text[], p_min_year integer, p_max_year integer,
                                           p_pop_weight double precision)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
#variable_conflict use_column
BEGIN
    p_ids := coalesce(p_ids, '{}');
    RETURN QUERY
    WITH cand AS (
        SELECT u.item_id, u.vote FROM unnest(p_ids, p_votes) AS u(item_id, vote)
        UNION ALL
        SELECT c.item_id, 0 FROM rec._popular_candidates(coalesce(p_seen, '{}'), p_genres, p_min_year, p_max_year,
                                                         greatest(p_k * 4, 50)) c
        WHERE NOT (c.item_id = ANY(p_ids))
    ), scored AS (
        SELECT c.item_id, (1 - p_pop_weight) * c.vote + p_pop_weight * coalesce(p.popularity, 0) AS s,
               coalesce(p.popularity, 0) AS popularity
        FROM cand c LEFT JOIN rec.item_priors p ON p.item_id = c.item_id
    )
    SELECT (row_number() OVER (ORDER BY s.s DESC, s.popularity DESC, s.item_id))::integer, s.item_id, i.title, s.s,
           'demographic_neighbors'::text
    FROM scored s JOIN rec.items i ON i.item_id = s.item_id
    ORDER BY 1
    LIMIT p_k;
END
$fn$;
