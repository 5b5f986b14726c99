-- Items nearest an arbitrary vector in the active space of kind `space` ('content' or 'collaborative').
CREATE OR REPLACE FUNCTION rec.recommend_for_vector(query vector, k integer DEFAULT 10, genres text[] DEFAULT NULL,
                                                    min_year integer DEFAULT NULL, max_year integer DEFAULT NULL,
                                                    space text DEFAULT 'content', exclude_user text DEFAULT NULL)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
DECLARE
    v_space integer;
    v_seen text[] := '{}';
BEGIN
    PERFORM rec._check_request($2, $3, $4, $5, NULL);
    IF $1 IS NULL OR NOT (vector_norm($1) > 0 AND vector_norm($1) < 'Infinity'::double precision) THEN
        RAISE EXCEPTION 'query must be a vector with a finite, non-zero length (cosine similarity is undefined '
                        'for a zero vector)' USING ERRCODE = '22023', COLUMN = 'query';
    END IF;
    IF $6 IS NULL OR $6 NOT IN ('content', 'collaborative') THEN
        RAISE EXCEPTION 'space must be content or collaborative, got %', quote_nullable($6)
            USING ERRCODE = '22023', COLUMN = 'space';
    END IF;
    v_space := rec.active_space_id($6);
    IF v_space IS NULL THEN
        RAISE EXCEPTION 'no active % embedding space', $6 USING ERRCODE = '22023', COLUMN = 'space';
    END IF;
    IF $7 IS NOT NULL THEN
        SELECT coalesce(array_agg(DISTINCT x.item_id), '{}') INTO v_seen FROM rec.interactions x WHERE x.user_id = $7;
    END IF;
    RETURN QUERY SELECT * FROM rec._rank_by_vector(v_space, $1, $2, v_seen, $3, $4, $5, 0, 'vector');
END
$fn$;
