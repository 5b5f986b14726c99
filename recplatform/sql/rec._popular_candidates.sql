-- Most popular items that pass the filters; items missing from rec.item_priors (added since the last
-- refresh) fill in with popularity 0 so that k rows come back whenever k items qualify.
CREATE OR REPLACE FUNCTION rec._popular_candidates(p_seen text[], p_genres text[], p_min_year integer, p_max_year integer,
                                                   p_n integer, p_exclude_item text DEFAULT NULL)
RETURNS TABLE(item_id text, popularity double precision)
LANGUAGE plpgsql STABLE ROWS 50 AS $fn$
#variable_conflict use_column
DECLARE
    v_got integer;
    v_filtered constant boolean := p_genres IS NOT NULL OR p_min_year IS NOT NULL OR p_max_year IS NOT NULL;
    v_item_filter constant text := ' AND rec._item_matches(i.genres, i.year, $2, $3, $4)';
BEGIN
    p_seen := coalesce(p_seen, '{}');
    -- Dynamic SQL: planned per call with the values (a walk down item_priors_rank, no sort).
    RETURN QUERY EXECUTE format(
        'SELECT p.item_id, p.popularity FROM rec.item_priors p %s'
        ' WHERE NOT (p.item_id = ANY($1)) AND p.item_id IS DISTINCT FROM $6 %s'
        ' ORDER BY p.popularity DESC, p.item_id LIMIT $5',
        CASE WHEN v_filtered THEN 'JOIN rec.items i ON i.item_id = p.item_id' ELSE '' END,
        CASE WHEN v_filtered THEN v_item_filter ELSE '' END)
        USING p_seen, p_genres, p_min_year, p_max_year, p_n, p_exclude_item;
    GET DIAGNOSTICS v_got = ROW_COUNT;
    IF v_got < p_n THEN
        RETURN QUERY
        SELECT i.item_id, 0::double precision
        FROM rec.items i
        WHERE NOT EXISTS (SELECT 1 FROM rec.item_priors p WHERE p.item_id = i.item_id)
          AND NOT (i.item_id = ANY(p_seen)) AND i.item_id IS DISTINCT FROM p_exclude_item
          AND rec._item_matches(i.genres, i.year, p_genres, p_min_year, p_max_year)
        ORDER BY i.item_id
        LIMIT p_n - v_got;
    END IF;
END
$fn$;
