-- The list without exploration: warm taste (with item-to-item weights when the warm row's item_item_weight > 0),
-- onboarding, or a cold strategy (what rec.recommend served before
-- revision 0005, plus the onboarding path). p_items: the user's distinct items (rec.recommend reads them once,
-- for exclusion and for the item-to-item term). A user without any demographic field is served as if it had no
-- demographic vector (popularity; revision 0015).
CREATE OR REPLACE FUNCTION rec._recommend_main(p_user text, p_k integer, p_seen text[], p_items text[], p_genres text[],
                                    p_min_year integer, p_max_year integer, p_strategy text,
                                    p_weight double precision, p_content_weight double precision)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
DECLARE
    v_user constant text := p_user;
    v_strategy text := p_strategy;
    v_content_weight double precision := p_content_weight;
    v_collab integer := rec.active_space_id('collaborative');
    v_content integer := rec.active_space_id('content');
    v_taste vector;
    v_demo vector;
    v_content_taste vector;
    v_n constant integer := coalesce(cardinality(p_items), 0);
    v_def rec.retrieval_defaults;
    v_onb rec.retrieval_defaults;
BEGIN
    IF v_collab IS NOT NULL THEN
        SELECT t.embedding INTO v_taste FROM rec.user_embeddings t
        WHERE t.space_id = v_collab AND t.user_id = v_user AND t.kind = 'taste';
    END IF;
    IF v_content IS NOT NULL THEN
        v_demo := rec._demographic_vector(v_content, v_user);  -- NULL without demographics: popularity serves
    END IF;
    SELECT * INTO v_onb FROM rec.retrieval_defaults d WHERE d.user_type = 'onboarding';
    IF v_n > 0 AND (v_strategy = 'onboarding'
                    OR (v_strategy IS NULL AND v_onb.user_type IS NOT NULL AND v_n < v_onb.switch_after)) THEN
        RETURN QUERY SELECT * FROM rec._rank_onboarding(
            v_demo, v_user, v_collab, v_taste, p_k, p_seen, p_genres, p_min_year, p_max_year,
            coalesce(p_weight, v_onb.popularity_weight, 0.3), coalesce(v_onb.neighbors, 100),
            CASE WHEN v_n >= coalesce(v_onb.evidence_from, 1)
                 THEN coalesce(v_onb.evidence_weight, 0) * v_n / (v_n + coalesce(v_onb.evidence_n0, 0)) ELSE 0 END);
        RETURN;
    END IF;
    IF v_strategy = 'onboarding' THEN
        v_strategy := NULL;  -- no interactions yet: the cold default
    END IF;
    IF v_taste IS NOT NULL AND coalesce(v_strategy, 'taste') = 'taste' THEN
        SELECT * INTO v_def FROM rec.retrieval_defaults d WHERE d.user_type = 'warm';
        IF coalesce(v_strategy, v_def.strategy, 'taste') = 'taste' THEN
            v_content_weight := coalesce(v_content_weight, v_def.content_weight, 0);
            IF v_content_weight > 0 AND v_content IS NOT NULL THEN
                SELECT avg(e.embedding) INTO v_content_taste
                FROM rec.item_embeddings e
                WHERE e.space_id = v_content
                  AND e.item_id = ANY(p_items);
                IF v_content_taste IS NOT NULL THEN
                    RETURN QUERY SELECT * FROM rec._rank_warm_blend(v_collab, v_taste, v_content, v_content_taste,
                                                                    v_content_weight, p_k, p_seen, p_genres,
                                                                    p_min_year, p_max_year,
                                                                    coalesce(p_weight, v_def.popularity_weight, 0));
                    RETURN;
                END IF;
            END IF;
            IF coalesce(v_def.item_item_weight, 0) > 0 AND current_setting('rec.item_item', true) IS DISTINCT FROM 'off'
            THEN
                -- taste plus the item-to-item weights from the user's items (revision 0025; SET rec.item_item =
                -- 'off' serves the taste vector alone)
                RETURN QUERY SELECT * FROM rec._rank_taste_items(v_collab, v_taste, p_items, v_def.item_item_weight,
                                                                 p_k, p_seen, p_genres, p_min_year, p_max_year,
                                                                 coalesce(p_weight, v_def.popularity_weight, 0));
                RETURN;
            END IF;
            RETURN QUERY SELECT * FROM rec._rank_by_vector(v_collab, v_taste, p_k, p_seen, p_genres, p_min_year,
                                                           p_max_year, coalesce(p_weight, v_def.popularity_weight, 0),
                                                           'taste');
            RETURN;
        END IF;
        v_strategy := v_def.strategy;  -- the evaluation chose a non-taste default for warm users
    ELSE
        SELECT * INTO v_def FROM rec.retrieval_defaults d WHERE d.user_type = 'cold';
        IF v_strategy IS NULL OR v_strategy = 'taste' THEN
            v_strategy := coalesce(v_def.strategy, 'neighbors_vote');
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM rec._recommend_cold(v_demo, v_user, p_k, p_seen, p_genres, p_min_year, p_max_year,
                                                   v_strategy, coalesce(p_weight, v_def.popularity_weight, 0),
                                                   coalesce(v_def.neighbors, 100));
END
$fn$;
