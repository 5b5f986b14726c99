-- The vector fresh items are ranked by for a user: their taste vector, else their demographic vector mapped
-- into the collaborative space by the stored demographic -> taste map; NULL when neither exists.
CREATE OR REPLACE FUNCTION rec._fresh_query(p_user text, p_collab integer) RETURNS vector
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_content integer := rec.active_space_id('content');
    v_q vector;
    v_map integer;
    v_demo vector;
BEGIN
    IF p_collab IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT t.embedding INTO v_q FROM rec.user_embeddings t
    WHERE t.space_id = p_collab AND t.user_id = p_user AND t.kind = 'taste';
    IF v_q IS NOT NULL OR v_content IS NULL THEN
        RETURN v_q;
    END IF;
    SELECT m.map_id INTO v_map FROM rec.coldstart_maps m
    WHERE m.kind = 'demographic_to_taste' AND m.is_active AND m.source_space_id = v_content
      AND m.target_space_id = p_collab;
    SELECT t.embedding INTO v_demo FROM rec.user_embeddings t
    WHERE t.space_id = v_content AND t.user_id = p_user AND t.kind = 'demographic';
    IF v_map IS NULL OR v_demo IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN rec.apply_map(v_map, v_demo);
END
$fn$;
