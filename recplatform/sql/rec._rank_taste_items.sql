-- Warm users, taste plus item-to-item (the warm row's item_item_weight w > 0):
-- score = (1 - p) * [cos(x_u, y_i) + w * ii_u(i) / (|x_u| M)] + p * popularity, i.e. the taste dot product
-- x_u . y_i plus w times the summed item-to-item weights from the user's items (rec._item_item_scores), in cosine
-- units so the popularity prior p blends as in rec._rank_by_vector. Candidates: the 4k nearest by taste and, with a
-- prior, the 4k most popular that pass the filters (re-scoring the taste top 50 ranked as well as scoring the whole
-- catalogue in the prototype: docs/results.md).
CREATE OR REPLACE FUNCTION rec._rank_taste_items(p_collab integer, p_taste vector, p_items text[],
                                                 p_item_weight double precision, p_k integer, p_seen text[],
                                                 p_genres text[], p_min_year integer, p_max_year integer,
                                                 p_pop_weight double precision)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
#variable_conflict use_column
DECLARE
    v_n constant integer := greatest(p_k * 4, 50);
    v_scale double precision;
    v_norm double precision;
BEGIN
    SELECT (m.params->>'scale')::float8 INTO v_scale FROM rec.embedding_models m WHERE m.space_id = p_collab;
    v_norm := greatest(vector_norm(p_taste) * coalesce(v_scale, 1), 1e-12);  -- x_u . y_i = cos * |x_u| * M
    RETURN QUERY
    WITH near AS MATERIALIZED (
        SELECT c.item_id, c.score AS sim FROM rec._rank_by_vector(p_collab, p_taste, v_n, p_seen, p_genres, p_min_year,
                                                                  p_max_year, 0, 'taste') c
    ), cand AS MATERIALIZED (
        SELECT c.item_id, c.sim FROM near c
        UNION ALL
        SELECT c.item_id, (SELECT 1 - (e.embedding <=> p_taste) FROM rec.item_embeddings e
                           WHERE e.space_id = p_collab AND e.item_id = c.item_id)
        FROM rec._popular_candidates(p_seen, p_genres, p_min_year, p_max_year, v_n) c
        WHERE p_pop_weight > 0 AND NOT EXISTS (SELECT 1 FROM near x WHERE x.item_id = c.item_id)
    ), ii AS MATERIALIZED (
        SELECT s.item_id, s.score FROM rec._item_item_scores(p_collab, p_items, ARRAY(SELECT c.item_id FROM cand c)) s
    ), terms AS (
        SELECT c.item_id,
               coalesce(c.sim, 0)
                   + p_item_weight * coalesce((SELECT s.score FROM ii s WHERE s.item_id = c.item_id), 0) / v_norm
                   AS taste,
               coalesce((SELECT p.popularity FROM rec.item_priors p WHERE p.item_id = c.item_id), 0) AS popularity
        FROM cand c
    ), scored AS (
        SELECT t.item_id, (1 - p_pop_weight) * t.taste + p_pop_weight * t.popularity AS s, t.popularity FROM terms t
    )
    SELECT (row_number() OVER (ORDER BY r.s DESC, r.popularity DESC, r.item_id))::integer, r.item_id, i.title, r.s,
           'taste'::text
    FROM scored r JOIN rec.items i ON i.item_id = r.item_id
    ORDER BY 1
    LIMIT p_k;
END
$fn$;
