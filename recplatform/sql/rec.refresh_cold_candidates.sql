-- Precomputes the neighbour votes of cold and onboarding users (fewer distinct items than the onboarding row's
-- switch_after) into rec.cold_candidates: the p_size best-voted items, before seen items and filters. Users who
-- are warm, have no demographic vector (or no demographic field) or no voters lose their row (served live).
-- Returns the rows written. Writer only: the worker runs it when it embeds users, and reconcile when rows age.
CREATE OR REPLACE FUNCTION rec.refresh_cold_candidates(p_users text[], p_size integer DEFAULT 500)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    v_content integer := rec.active_space_id('content');
    v_collab integer := rec.active_space_id('collaborative');
    v_skip constant integer := rec._voter_skip();
    v_neighbors integer;
    v_switch integer;
    v_user text;
    v_demo vector;
    v_hash text;
    v_ids text[];
    v_sims double precision[];
    v_items text[];
    v_votes double precision[];
    v_written integer := 0;
BEGIN
    IF p_size IS NULL OR p_size < 1 OR p_size > 10000 THEN
        RAISE EXCEPTION 'p_size must be between 1 and 10000, got %', p_size USING ERRCODE = '22023', COLUMN = 'p_size';
    END IF;
    SELECT coalesce(max(d.neighbors), 100) INTO v_neighbors FROM rec.retrieval_defaults d WHERE d.user_type = 'cold';
    SELECT coalesce(max(d.switch_after), 1) INTO v_switch FROM rec.retrieval_defaults d WHERE d.user_type = 'onboarding';
    FOR v_user IN SELECT DISTINCT u FROM unnest(p_users) AS u WHERE u IS NOT NULL ORDER BY u LOOP  -- one lock order
        v_demo := CASE WHEN v_content IS NOT NULL THEN rec._demographic_vector(v_content, v_user) END;
        v_ids := NULL;
        IF v_demo IS NOT NULL
           AND (SELECT count(DISTINCT x.item_id) FROM rec.interactions x WHERE x.user_id = v_user) < v_switch THEN
            SELECT array_agg(n.user_id), array_agg(n.similarity) INTO v_ids, v_sims
            FROM rec._demographic_neighbors(v_content, v_collab, v_demo, v_user, v_neighbors, 'interactions') n;
        END IF;
        IF coalesce(cardinality(v_ids), 0) = 0 THEN
            DELETE FROM rec.cold_candidates c WHERE c.user_id = v_user;
            CONTINUE;
        END IF;
        SELECT e.content_hash INTO v_hash FROM rec.user_embeddings e
        WHERE e.space_id = v_content AND e.user_id = v_user AND e.kind = 'demographic';
        SELECT v.item_ids, v.votes INTO v_items, v_votes
        FROM rec._neighbor_votes(v_ids, v_sims, '{}', NULL, NULL, NULL, p_size) v;
        INSERT INTO rec.cold_candidates AS c (user_id, space_id, content_hash, neighbors, voter_skip, item_ids, votes,
                                              complete, computed_at)
        VALUES (v_user, v_content, v_hash, v_neighbors, v_skip, v_items, v_votes, cardinality(v_items) < p_size, now())
        ON CONFLICT (user_id) DO UPDATE
        SET space_id = excluded.space_id, content_hash = excluded.content_hash, neighbors = excluded.neighbors,
            voter_skip = excluded.voter_skip, item_ids = excluded.item_ids, votes = excluded.votes,
            complete = excluded.complete, computed_at = excluded.computed_at;
        v_written := v_written + 1;
    END LOOP;
    RETURN v_written;
END
$fn$;
