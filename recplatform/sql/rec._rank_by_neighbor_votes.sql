-- Demographic neighbours voting, live: their votes (rec._neighbor_votes) for the max(4k, 50) best-voted items that
-- are not seen and pass the filters, ranked with the popularity prior by rec._rank_voted.
CREATE OR REPLACE FUNCTION rec._rank_by_neighbor_votes(p_neighbors text[], p_sims double precision[], p_k integer,
                                                       p_seen text[], p_genres text[], p_min_year integer, p_max_year integer,
                                                       p_pop_weight double precision)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
#variable_conflict use_column
DECLARE
    v_ids text[];
    v_votes double precision[];
BEGIN
    SELECT v.item_ids, v.votes INTO v_ids, v_votes
    FROM rec._neighbor_votes(p_neighbors, p_sims, p_seen, p_genres, p_min_year, p_max_year, greatest(p_k * 4, 50)) v;
    RETURN QUERY SELECT * FROM rec._rank_voted(v_ids, v_votes, p_k, p_seen, p_genres, p_min_year, p_max_year,
                                               p_pop_weight);
END
$fn$;
