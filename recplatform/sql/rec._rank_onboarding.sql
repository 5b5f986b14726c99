-- Onboarding: the cold prior (neighbour votes + popularity, seen items excluded) updated in log space by the
-- user's own evidence, eta * x_u . y_i (docs/retrieval.md, Onboarding). From evidence_from items on, each
-- demographic neighbour's vote is also weighted by 1 + overlap_weight * (items it shares with the user) (the
-- onboarding row of rec.retrieval_defaults). With eta = 0 and overlap_weight = 0 this ranks exactly like the cold default with the
-- user's items excluded; the votes of that prior come from rec.cold_candidates while current (rec._cached_votes).
-- From evidence_from items on, the item-to-item weights from the user's items (rec._item_item_scores) are added
-- too, times the onboarding row's item_item_weight (revision 0025): ln(prior) + eta x_u . y_i + w ii_u(i)
-- (SET rec.item_item = 'off' leaves it out).
CREATE OR REPLACE FUNCTION rec._rank_onboarding(p_demo vector, p_self text, p_collab integer, p_taste vector, p_k integer,
                                     p_seen text[], p_genres text[], p_min_year integer, p_max_year integer,
                                     p_pop_weight double precision, p_neighbors integer, p_eta double precision)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
#variable_conflict use_column
DECLARE
    v_content integer := rec.active_space_id('content');
    v_n constant integer := greatest(p_k * 4, 50);
    v_ids text[];
    v_sims double precision[];
    v_scale double precision;
    v_norm double precision;
    v_overlap double precision;
    v_mine text[];
    v_from integer;
    v_reweight boolean;
    v_item_weight double precision;
    v_eta double precision := CASE WHEN p_taste IS NULL OR p_collab IS NULL THEN 0 ELSE p_eta END;
BEGIN
    SELECT d.overlap_weight, d.evidence_from, d.item_item_weight INTO v_overlap, v_from, v_item_weight
    FROM rec.retrieval_defaults d WHERE d.user_type = 'onboarding';
    IF coalesce(v_overlap, 0) > 0 OR (coalesce(v_item_weight, 0) > 0 AND p_collab IS NOT NULL) THEN
        SELECT coalesce(array_agg(DISTINCT x.item_id), '{}') INTO v_mine FROM rec.interactions x
        WHERE x.user_id = p_self;
    END IF;
    v_reweight := coalesce(v_overlap > 0 AND cardinality(v_mine) >= coalesce(v_from, 1), false);
    v_item_weight := CASE WHEN coalesce(cardinality(v_mine) >= coalesce(v_from, 1), false) AND p_collab IS NOT NULL
                               AND current_setting('rec.item_item', true) IS DISTINCT FROM 'off'
                          THEN coalesce(v_item_weight, 0) ELSE 0 END;
    IF p_demo IS NOT NULL AND v_content IS NOT NULL THEN
        IF NOT v_reweight AND v_eta <= 0 AND v_item_weight <= 0 THEN
            -- the prior alone, as the cold default serves it: the user's precomputed votes while they are current
            SELECT c.item_ids, c.votes INTO v_ids, v_sims
            FROM rec._cached_votes(p_self, v_content, p_neighbors, p_k, p_seen, p_genres, p_min_year, p_max_year) c;
            IF FOUND THEN
                RETURN QUERY SELECT r.rank, r.item_id, r.title, r.score, 'onboarding'::text
                             FROM rec._rank_voted(v_ids, v_sims, p_k, p_seen, p_genres, p_min_year, p_max_year,
                                                  p_pop_weight) r;
                RETURN;
            END IF;
        END IF;
        SELECT array_agg(n.user_id), array_agg(n.similarity) INTO v_ids, v_sims
        FROM rec._demographic_neighbors(v_content, p_collab, p_demo, p_self, p_neighbors, 'interactions') n;
    END IF;
    IF v_reweight AND coalesce(cardinality(v_ids), 0) > 0 THEN
        -- from evidence_from items on, neighbours who share the user's items count more:
        -- sim * (1 + overlap_weight * shared items)
        SELECT array_agg(n.user_id ORDER BY n.ord),
               array_agg(greatest(n.sim, 0) * (1 + v_overlap * (
                   SELECT count(DISTINCT x.item_id) FROM rec.interactions x
                   WHERE x.user_id = n.user_id AND x.item_id = ANY(v_mine))) ORDER BY n.ord)
        INTO v_ids, v_sims
        FROM unnest(v_ids, v_sims) WITH ORDINALITY AS n(user_id, sim, ord);
    END IF;
    IF v_eta <= 0 AND v_item_weight <= 0 THEN
        IF coalesce(cardinality(v_ids), 0) = 0 THEN
            RETURN QUERY SELECT r.rank, r.item_id, r.title, r.score, 'onboarding'::text
                         FROM rec._rank_popular(p_k, p_seen, p_genres, p_min_year, p_max_year) r;
            RETURN;
        END IF;
        RETURN QUERY SELECT r.rank, r.item_id, r.title, r.score, 'onboarding'::text
                     FROM rec._rank_by_neighbor_votes(v_ids, v_sims, p_k, p_seen, p_genres, p_min_year, p_max_year,
                                                      p_pop_weight) r;
        RETURN;
    END IF;
    SELECT (m.params->>'scale')::float8 INTO v_scale FROM rec.embedding_models m WHERE m.space_id = p_collab;
    v_norm := coalesce(vector_norm(p_taste) * coalesce(v_scale, 1), 0);  -- x_u . y_i = cos(x_u, y^_i) * |x_u| * M
    v_ids := coalesce(v_ids, '{}');
    v_sims := coalesce(v_sims, '{}');
    RETURN QUERY
    WITH prior AS (
        SELECT r.item_id, r.score FROM rec._rank_by_neighbor_votes(v_ids, v_sims, v_n, p_seen, p_genres, p_min_year,
                                                                   p_max_year, p_pop_weight) r
    ), nb AS (
        SELECT n.user_id, greatest(n.sim, 0) AS sim FROM unnest(v_ids, v_sims) AS n(user_id, sim)
    ), taste AS (
        SELECT t.item_id FROM rec._rank_by_vector(p_collab, p_taste, v_n, p_seen, p_genres, p_min_year, p_max_year,
                                                  0, 'taste') t
        WHERE v_eta > 0 AND NOT EXISTS (SELECT 1 FROM prior p WHERE p.item_id = t.item_id)
    ), taste_prior AS (
        -- the prior of taste candidates outside the prior's top: their votes, looked up by item
        SELECT t.item_id,
               (1 - p_pop_weight) * coalesce((SELECT sum(nb.sim) FROM nb WHERE EXISTS (
                    SELECT 1 FROM rec.interactions x WHERE x.item_id = t.item_id AND x.user_id = nb.user_id)), 0)
                   / greatest((SELECT sum(nb.sim) FROM nb), 1e-9)
               + p_pop_weight * coalesce(ip.popularity, 0) AS score
        FROM taste t LEFT JOIN rec.item_priors ip ON ip.item_id = t.item_id
    ), cand AS MATERIALIZED (
        SELECT * FROM prior UNION ALL SELECT * FROM taste_prior
    ), ii AS MATERIALIZED (
        SELECT s.item_id, s.score FROM rec._item_item_scores(p_collab, v_mine, ARRAY(SELECT c.item_id FROM cand c)) s
        WHERE v_item_weight > 0
    ), scored AS (
        SELECT c.item_id, ln(1e-4 + greatest(c.score, 0))
                              + CASE WHEN v_eta > 0 THEN v_eta * v_norm * coalesce(1 - (e.embedding <=> p_taste), 0)
                                     ELSE 0 END
                              + v_item_weight * coalesce(s.score, 0) AS s,
               coalesce(ip.popularity, 0) AS popularity
        FROM cand c
        LEFT JOIN rec.item_embeddings e ON e.space_id = p_collab AND e.item_id = c.item_id
        LEFT JOIN ii s ON s.item_id = c.item_id
        LEFT JOIN rec.item_priors ip ON ip.item_id = c.item_id
    )
    SELECT (row_number() OVER (ORDER BY s.s DESC, s.popularity DESC, s.item_id))::integer, s.item_id, i.title, s.s,
           'onboarding'::text
    FROM scored s JOIN rec.items i ON i.item_id = s.item_id
    ORDER BY 1
    LIMIT p_k;
END
$fn$;
