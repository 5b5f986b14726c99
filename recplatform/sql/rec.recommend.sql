-- Top k items for a stored user: rec._recommend_main (warm taste, onboarding or a cold strategy, from
-- rec.retrieval_defaults unless the call names them), whose last floor(exploration_share * k) slots go to fresh
-- items ranked for the user (source 'exploration'; rec._rank_fresh). exploration_share NULL = the default of the
-- user's row in rec.retrieval_defaults ('cold' without interactions, else 'warm'), 0 = off. A fresh item takes
-- its slot only when its similarity to the user's query vector is at least exploration_min_ratio (same row)
-- times that of the main list's k-th item (0 = always; either similarity unknown = always); otherwise the main
-- list keeps the slot.
CREATE OR REPLACE FUNCTION rec.recommend(user_id text, k integer DEFAULT 10, exclude_seen boolean DEFAULT true,
                              genres text[] DEFAULT NULL, min_year integer DEFAULT NULL,
                              max_year integer DEFAULT NULL, strategy text DEFAULT NULL,
                              popularity_weight double precision DEFAULT NULL,
                              content_weight double precision DEFAULT NULL,
                              exploration_share double precision DEFAULT NULL)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
#variable_conflict use_column
DECLARE
    v_user constant text := $1;
    v_k constant integer := $2;
    v_share double precision := $10;
    v_seen text[] := '{}';
    v_items text[];
    v_n integer;
    v_fresh integer;
    v_collab integer := rec.active_space_id('collaborative');
    v_def rec.retrieval_defaults;
    v_query vector;
    v_ratio double precision;
BEGIN
    PERFORM rec._check_request(v_k, $4, $5, $6, $7);
    PERFORM rec._check_weight($8);
    PERFORM rec._check_weight($9, 'content_weight');
    PERFORM rec._check_weight(v_share, 'exploration_share');
    IF v_user IS NULL OR NOT EXISTS (SELECT 1 FROM rec.users u WHERE u.user_id = v_user) THEN
        RAISE EXCEPTION 'unknown user_id %', quote_nullable(v_user) USING ERRCODE = 'P0002', COLUMN = 'user_id';
    END IF;
    SELECT coalesce(array_agg(DISTINCT x.item_id), '{}') INTO v_items FROM rec.interactions x WHERE x.user_id = v_user;
    v_n := cardinality(v_items);
    IF $3 IS NOT FALSE THEN
        v_seen := v_items;
    END IF;
    IF v_share IS NULL THEN
        SELECT * INTO v_def FROM rec.retrieval_defaults d
        WHERE d.user_type = CASE WHEN v_n = 0 THEN 'cold' ELSE 'warm' END;
        v_share := coalesce(v_def.exploration_share, 0);
    END IF;
    v_fresh := least(v_k, floor(v_share * v_k + 1e-9)::integer);
    IF v_fresh = 0 THEN
        RETURN QUERY SELECT * FROM rec._recommend_main(v_user, v_k, v_seen, v_items, $4, $5, $6, $7, $8, $9);
        RETURN;
    END IF;
    IF v_def.user_type IS NULL THEN
        SELECT * INTO v_def FROM rec.retrieval_defaults d
        WHERE d.user_type = CASE WHEN v_n = 0 THEN 'cold' ELSE 'warm' END;
    END IF;
    v_query := rec._fresh_query(v_user, v_collab);
    v_ratio := coalesce(v_def.exploration_min_ratio, 0);
    -- The last v_fresh slots go to fresh items that clear the bar; the main list fills the rest and tops up when
    -- fewer are fresh (or clear it).
    RETURN QUERY
    WITH main_all AS MATERIALIZED (
        SELECT m.item_id, m.title, m.score, m.source, m.rank
        FROM rec._recommend_main(v_user, v_k, v_seen, v_items, $4, $5, $6, $7, $8, $9) m
    ), bar AS (
        -- v_ratio * similarity of the main list's k-th item to the query vector (no row: no bar)
        SELECT v_ratio * (1 - (e.embedding <=> v_query)) AS s
        FROM main_all m JOIN rec.item_embeddings e ON e.space_id = v_collab AND e.item_id = m.item_id
        WHERE v_ratio > 0 AND v_query IS NOT NULL AND m.rank = (SELECT max(x.rank) FROM main_all x)
    ), fresh AS (
        SELECT f.item_id, f.title, f.score, f.rank
        FROM rec._rank_fresh(v_collab, v_query, v_fresh, v_seen, $4, $5, $6,
                             coalesce(v_def.fresh_max_interactions, 5), v_def.fresh_max_age, 'exploration') f
        WHERE f.score IS NULL OR NOT EXISTS (SELECT 1 FROM bar b WHERE f.score < b.s)
    ), main AS (
        SELECT m.item_id, m.title, m.score, m.source, m.rank
        FROM main_all m
        WHERE NOT EXISTS (SELECT 1 FROM fresh f WHERE f.item_id = m.item_id)
        ORDER BY m.rank
        LIMIT v_k - (SELECT count(*) FROM fresh)
    ), merged AS (
        SELECT m.item_id, m.title, m.score, m.source, 0 AS part, m.rank FROM main m
        UNION ALL
        SELECT f.item_id, f.title, f.score, 'exploration'::text, 1, f.rank FROM fresh f
    )
    SELECT (row_number() OVER (ORDER BY mg.part, mg.rank))::integer, mg.item_id, mg.title, mg.score, mg.source
    FROM merged mg
    ORDER BY 1;
END
$fn$;
