-- Fresh items only, ranked for the user (what rec.recommend's exploration slots draw from).
CREATE OR REPLACE FUNCTION rec.new_for_you(user_id text, k integer DEFAULT 10, genres text[] DEFAULT NULL,
                                min_year integer DEFAULT NULL, max_year integer DEFAULT NULL,
                                exclude_seen boolean DEFAULT true)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
DECLARE
    v_user constant text := $1;
    v_seen text[] := '{}';
    v_collab integer := rec.active_space_id('collaborative');
    v_def rec.retrieval_defaults;
BEGIN
    PERFORM rec._check_request($2, $3, $4, $5, NULL);
    IF v_user IS NULL OR NOT EXISTS (SELECT 1 FROM rec.users u WHERE u.user_id = v_user) THEN
        RAISE EXCEPTION 'unknown user_id %', quote_nullable(v_user) USING ERRCODE = 'P0002', COLUMN = 'user_id';
    END IF;
    IF $6 IS NOT FALSE THEN
        SELECT coalesce(array_agg(DISTINCT x.item_id), '{}') INTO v_seen FROM rec.interactions x WHERE x.user_id = v_user;
    END IF;
    SELECT * INTO v_def FROM rec.retrieval_defaults d WHERE d.user_type = 'warm';
    RETURN QUERY SELECT * FROM rec._rank_fresh(v_collab, rec._fresh_query(v_user, v_collab), $2, v_seen, $3, $4, $5,
                                               coalesce(v_def.fresh_max_interactions, 5), v_def.fresh_max_age,
                                               'fresh');
END
$fn$;
