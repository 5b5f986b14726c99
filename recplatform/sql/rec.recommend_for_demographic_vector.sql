-- A person who is not stored: their demographic-prompt embedding (content space) given directly.
CREATE OR REPLACE FUNCTION rec.recommend_for_demographic_vector(demographic vector, k integer DEFAULT 10,
                                                                strategy text DEFAULT NULL, genres text[] DEFAULT NULL,
                                                                min_year integer DEFAULT NULL, max_year integer DEFAULT NULL,
                                                                popularity_weight double precision DEFAULT NULL)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
DECLARE
    v_strategy text := $3;
    v_content integer := rec.active_space_id('content');
    v_dim integer;
    v_def rec.retrieval_defaults;
BEGIN
    PERFORM rec._check_request($2, $4, $5, $6, v_strategy);
    PERFORM rec._check_weight($7);
    IF $1 IS NOT NULL AND NOT (vector_norm($1) > 0 AND vector_norm($1) < 'Infinity'::double precision) THEN
        RAISE EXCEPTION 'demographic must be a vector with a finite, non-zero length (NULL for popularity)'
            USING ERRCODE = '22023', COLUMN = 'demographic';
    END IF;
    IF $1 IS NOT NULL AND v_content IS NOT NULL THEN
        SELECT m.dimension INTO v_dim FROM rec.embedding_models m WHERE m.space_id = v_content;
        IF vector_dims($1) <> v_dim THEN
            RAISE EXCEPTION 'demographic vector has dimension % but the active content space % has dimension %',
                vector_dims($1), v_content, v_dim USING ERRCODE = '22023', COLUMN = 'demographic';
        END IF;
    END IF;
    SELECT * INTO v_def FROM rec.retrieval_defaults d WHERE d.user_type = 'cold';
    IF v_strategy IS NULL OR v_strategy = 'taste' THEN
        v_strategy := coalesce(v_def.strategy, 'neighbors_vote');
    END IF;
    RETURN QUERY SELECT * FROM rec._recommend_cold($1, NULL, $2, '{}'::text[], $4, $5, $6, v_strategy,
                                                   coalesce($7, v_def.popularity_weight, 0),
                                                   coalesce(v_def.neighbors, 100));
END
$fn$;
