-- A user's precomputed neighbour votes (rec.cold_candidates) for a request: the max(4k, 50) best-voted items that
-- are not in p_seen and pass the filters, exactly what rec._neighbor_votes would return from the stored snapshot.
-- No row (the caller votes live) unless the stored list was computed for the user's current demographic vector
-- in p_space, with p_neighbors neighbours and today's voter minimum, is younger than the cold row's
-- candidates_max_age, and still holds enough items (or every voted one); SET rec.cold_candidates = 'off' also
-- votes live.
CREATE OR REPLACE FUNCTION rec._cached_votes(p_user text, p_space integer, p_neighbors integer, p_k integer,
                                             p_seen text[], p_genres text[], p_min_year integer, p_max_year integer)
RETURNS TABLE(item_ids text[], votes double precision[])
LANGUAGE plpgsql STABLE ROWS 1 AS $fn$
#variable_conflict use_column
DECLARE
    v_n constant integer := greatest(p_k * 4, 50);
    v_filtered constant boolean := p_genres IS NOT NULL OR p_min_year IS NOT NULL OR p_max_year IS NOT NULL;
    v_row rec.cold_candidates;
    v_ids text[];
    v_votes double precision[];
BEGIN
    IF current_setting('rec.cold_candidates', true) = 'off' THEN
        RETURN;
    END IF;
    SELECT c.* INTO v_row
    FROM rec.cold_candidates c
    JOIN rec.user_embeddings e ON e.space_id = c.space_id AND e.user_id = c.user_id AND e.kind = 'demographic'
                              AND e.content_hash = c.content_hash
    JOIN rec.retrieval_defaults d ON d.user_type = 'cold'
    WHERE c.user_id = p_user AND c.space_id = p_space AND c.neighbors = p_neighbors
      AND c.computed_at >= now() - d.candidates_max_age AND c.voter_skip = rec._voter_skip();
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT array_agg(u.item_id ORDER BY u.ord), array_agg(u.vote ORDER BY u.ord) INTO v_ids, v_votes
    FROM (SELECT u.item_id, u.vote, u.ord
          FROM unnest(v_row.item_ids, v_row.votes) WITH ORDINALITY AS u(item_id, vote, ord)
          WHERE NOT (u.item_id = ANY(coalesce(p_seen, '{}')))
            AND (NOT v_filtered OR EXISTS (SELECT 1 FROM rec.items i WHERE i.item_id = u.item_id
                                           AND rec._item_matches(i.genres, i.year, p_genres, p_min_year, p_max_year)))
          ORDER BY u.ord
          LIMIT v_n) u;
    IF coalesce(cardinality(v_ids), 0) < v_n AND NOT v_row.complete THEN
        RETURN;  -- seen items or filters took too many: the stored list may miss some of the best remaining
    END IF;
    RETURN QUERY SELECT coalesce(v_ids, '{}'), coalesce(v_votes, '{}');
END
$fn$;
