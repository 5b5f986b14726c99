-- The item filters of every ranking path (genres overlap, year range; NULL = no filter), in one place. A plain
-- SQL expression, so the planner inlines it where it is called (as if the expression were written there).
CREATE OR REPLACE FUNCTION rec._item_matches(item_genres text[], item_year integer, p_genres text[],
                                             p_min_year integer, p_max_year integer) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT (p_genres IS NULL OR item_genres && p_genres) AND (p_min_year IS NULL OR item_year >= p_min_year)
       AND (p_max_year IS NULL OR item_year <= p_max_year)
$fn$;
