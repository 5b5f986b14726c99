CREATE OR REPLACE FUNCTION rec._rank_popular(p_k integer, p_seen text[], p_genres text[], p_min_year integer,
                                             p_max_year integer, p_exclude_item text DEFAULT NULL)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE sql STABLE ROWS 10 AS $fn$
    SELECT (row_number() OVER (ORDER BY c.popularity DESC, c.item_id))::integer, c.item_id, i.title,
           c.popularity, 'popularity'::text
    FROM rec._popular_candidates(p_seen, p_genres, p_min_year, p_max_year, p_k, p_exclude_item) c
    JOIN rec.items i ON i.item_id = c.item_id
    ORDER BY 1
$fn$;
