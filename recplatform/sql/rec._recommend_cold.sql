-- Cold-start dispatch: a demographic-prompt vector (content space) to items, by strategy. Strategies that
-- need something missing (no collaborative space, no learned map, no warm neighbours) fall back to
-- neighbours voting, then popularity; `source` always says which path served. A stored user's neighbour votes
-- come from rec.cold_candidates while they are current (rec._cached_votes), else they are computed live.
CREATE OR REPLACE FUNCTION rec._recommend_cold(p_demo vector, p_self text, p_k integer, p_seen text[], p_genres text[],
                                               p_min_year integer, p_max_year integer, p_strategy text,
                                               p_pop_weight double precision, p_neighbors integer)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
#variable_conflict use_column
DECLARE
    v_content integer := rec.active_space_id('content');
    v_collab integer := rec.active_space_id('collaborative');
    v_map integer;
    v_ids text[];
    v_sims double precision[];
    v_query vector;
BEGIN
    IF p_demo IS NULL OR v_content IS NULL OR p_strategy = 'popularity' THEN
        RETURN QUERY SELECT * FROM rec._rank_popular(p_k, p_seen, p_genres, p_min_year, p_max_year);
        RETURN;
    END IF;
    IF p_strategy = 'prompt' THEN
        RETURN QUERY SELECT * FROM rec._rank_by_vector(v_content, p_demo, p_k, p_seen, p_genres, p_min_year,
                                                       p_max_year, p_pop_weight, 'demographic_prompt');
        RETURN;
    END IF;
    IF p_strategy = 'learned_map' AND v_collab IS NOT NULL THEN
        SELECT m.map_id INTO v_map FROM rec.coldstart_maps m
        WHERE m.kind = 'demographic_to_taste' AND m.is_active AND m.source_space_id = v_content
          AND m.target_space_id = v_collab;
        IF v_map IS NOT NULL THEN
            RETURN QUERY SELECT * FROM rec._rank_by_vector(v_collab, rec.apply_map(v_map, p_demo), p_k, p_seen,
                                                           p_genres, p_min_year, p_max_year, p_pop_weight,
                                                           'learned_map');
            RETURN;
        END IF;
    END IF;
    IF p_strategy = 'neighbors_taste' AND v_collab IS NOT NULL THEN
        SELECT array_agg(n.user_id) INTO v_ids
        FROM rec._demographic_neighbors(v_content, v_collab, p_demo, p_self, p_neighbors, 'taste') n;
        IF cardinality(v_ids) > 0 THEN
            SELECT avg(t.embedding) INTO v_query FROM rec.user_embeddings t
            WHERE t.space_id = v_collab AND t.kind = 'taste' AND t.user_id = ANY(v_ids);
            RETURN QUERY SELECT * FROM rec._rank_by_vector(v_collab, v_query, p_k, p_seen, p_genres, p_min_year,
                                                           p_max_year, p_pop_weight, 'demographic_neighbors');
            RETURN;
        END IF;
    END IF;
    IF p_self IS NOT NULL THEN  -- a stored user: their precomputed votes, while they are current
        SELECT c.item_ids, c.votes INTO v_ids, v_sims
        FROM rec._cached_votes(p_self, v_content, p_neighbors, p_k, p_seen, p_genres, p_min_year, p_max_year) c;
        IF FOUND THEN
            RETURN QUERY SELECT * FROM rec._rank_voted(v_ids, v_sims, p_k, p_seen, p_genres, p_min_year, p_max_year,
                                                       p_pop_weight);
            RETURN;
        END IF;
    END IF;
    SELECT array_agg(n.user_id), array_agg(n.similarity) INTO v_ids, v_sims
    FROM rec._demographic_neighbors(v_content, v_collab, p_demo, p_self, p_neighbors, 'interactions') n;
    IF coalesce(cardinality(v_ids), 0) = 0 THEN
        RETURN QUERY SELECT * FROM rec._rank_popular(p_k, p_seen, p_genres, p_min_year, p_max_year);
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM rec._rank_by_neighbor_votes(v_ids, v_sims, p_k, p_seen, p_genres, p_min_year,
                                                           p_max_year, p_pop_weight);
END
$fn$;
