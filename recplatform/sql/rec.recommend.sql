CREATE OR REPLACE FUNCTION rec.recommend(user_id text, k integer DEFAULT 10, exclude_seen boolean DEFAULT true,
                                         genres text[] DEFAULT NULL, min_year integer DEFAULT NULL,
                                         max_year integer DEFAULT NULL, strategy text DEFAULT NULL,
                                         popularity_weight double precision DEFAULT NULL,
                                         content_weight double precision DEFAULT NULL)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
DECLARE
    v_user constant text := $1;
    v_content_weight double precision := $9;
    v_content_taste vector;
    v_k constant integer := $2;
    v_genres constant text[] := $4;
    v_min constant integer := $5;
    v_max constant integer := $6;
    v_strategy text := $7;
    v_weight double precision := $8;
    v_seen text[] := '{}';
    v_collab integer := rec.active_space_id('collaborative');
    v_content integer := rec.active_space_id('content');
    v_taste vector;
    v_demo vector;
    v_def rec.retrieval_defaults;
BEGIN
    PERFORM rec._check_request(v_k, v_genres, v_min, v_max, v_strategy);
    PERFORM rec._check_weight(v_weight);
    PERFORM rec._check_weight(v_content_weight, 'content_weight');
    IF v_user IS NULL OR NOT EXISTS (SELECT 1 FROM rec.users u WHERE u.user_id = v_user) THEN
        RAISE EXCEPTION 'unknown user_id %', quote_nullable(v_user) USING ERRCODE = 'P0002', COLUMN = 'user_id';
    END IF;
    IF $3 IS NOT FALSE THEN
        SELECT coalesce(array_agg(DISTINCT x.item_id), '{}') INTO v_seen FROM rec.interactions x WHERE x.user_id = v_user;
    END IF;
    IF v_collab IS NOT NULL THEN
        SELECT t.embedding INTO v_taste FROM rec.user_embeddings t
        WHERE t.space_id = v_collab AND t.user_id = v_user AND t.kind = 'taste';
    END IF;
    IF v_taste IS NOT NULL AND coalesce(v_strategy, 'taste') = 'taste' THEN
        SELECT * INTO v_def FROM rec.retrieval_defaults d WHERE d.user_type = 'warm';
        IF coalesce(v_strategy, v_def.strategy, 'taste') = 'taste' THEN
            v_content_weight := coalesce(v_content_weight, v_def.content_weight, 0);
            IF v_content_weight > 0 AND v_content IS NOT NULL THEN
                SELECT avg(e.embedding) INTO v_content_taste
                FROM rec.item_embeddings e
                WHERE e.space_id = v_content
                  AND e.item_id IN (SELECT x.item_id FROM rec.interactions x WHERE x.user_id = v_user);
                IF v_content_taste IS NOT NULL THEN
                    RETURN QUERY SELECT * FROM rec._rank_warm_blend(v_collab, v_taste, v_content, v_content_taste,
                                                                    v_content_weight, v_k, v_seen, v_genres, v_min,
                                                                    v_max, coalesce(v_weight, v_def.popularity_weight, 0));
                    RETURN;
                END IF;
            END IF;
            RETURN QUERY SELECT * FROM rec._rank_by_vector(v_collab, v_taste, v_k, v_seen, v_genres, v_min, v_max,
                                                           coalesce(v_weight, v_def.popularity_weight, 0), 'taste');
            RETURN;
        END IF;
        v_strategy := v_def.strategy;  -- the evaluation chose a non-taste default for warm users
    ELSE
        SELECT * INTO v_def FROM rec.retrieval_defaults d WHERE d.user_type = 'cold';
        IF v_strategy IS NULL OR v_strategy = 'taste' THEN
            v_strategy := coalesce(v_def.strategy, 'neighbors_vote');
        END IF;
    END IF;
    IF v_content IS NOT NULL THEN
        SELECT t.embedding INTO v_demo FROM rec.user_embeddings t
        WHERE t.space_id = v_content AND t.user_id = v_user AND t.kind = 'demographic';
    END IF;
    RETURN QUERY SELECT * FROM rec._recommend_cold(v_demo, v_user, v_k, v_seen, v_genres, v_min, v_max, v_strategy,
                                                   coalesce(v_weight, v_def.popularity_weight, 0),
                                                   coalesce(v_def.neighbors, 100));
END
$fn$;
