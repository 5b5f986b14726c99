-- Items most similar to an item: collaborative space (item factors, dot-product query) when the item has a
-- vector there, else the content space. `source` says which ('collaborative' or 'content').
CREATE OR REPLACE FUNCTION rec.similar_items(item text, k integer DEFAULT 10, genres text[] DEFAULT NULL,
                                             min_year integer DEFAULT NULL, max_year integer DEFAULT NULL,
                                             space text DEFAULT NULL)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
DECLARE
    v_item constant text := $1;
    v_space integer;
    v_kind text;
    v_vec vector;
    v_dim integer;
BEGIN
    PERFORM rec._check_request($2, $3, $4, $5, NULL);
    IF $6 IS NOT NULL AND $6 NOT IN ('content', 'collaborative') THEN
        RAISE EXCEPTION 'space must be content or collaborative, got %', quote_literal($6)
            USING ERRCODE = '22023', COLUMN = 'space';
    END IF;
    IF v_item IS NULL OR NOT EXISTS (SELECT 1 FROM rec.items i WHERE i.item_id = v_item) THEN
        RAISE EXCEPTION 'unknown item_id %', quote_nullable(v_item) USING ERRCODE = 'P0002', COLUMN = 'item_id';
    END IF;
    FOREACH v_kind IN ARRAY CASE WHEN $6 IS NULL THEN ARRAY['collaborative', 'content'] ELSE ARRAY[$6] END LOOP
        v_space := rec.active_space_id(v_kind);
        CONTINUE WHEN v_space IS NULL;
        SELECT e.embedding INTO v_vec FROM rec.item_embeddings e WHERE e.space_id = v_space AND e.item_id = v_item;
        EXIT WHEN v_vec IS NOT NULL;
    END LOOP;
    IF v_vec IS NULL THEN
        RAISE EXCEPTION 'item_id % has no embedding yet in the % space', quote_literal(v_item),
            coalesce($6, 'collaborative or content') USING ERRCODE = 'P0002', COLUMN = 'item_id';
    END IF;
    IF v_kind = 'collaborative' AND coalesce((SELECT (m.params->>'augmented')::boolean FROM rec.embedding_models m
                                              WHERE m.space_id = v_space), false) THEN
        -- ALS item vectors are [x_i, sqrt(M^2 - |x_i|^2)] / M; query with [x_i, 0] (dot product x_i . x_j)
        v_dim := vector_dims(v_vec);
        v_vec := subvector(v_vec, 1, v_dim - 1) || '[0]'::vector;
    END IF;
    RETURN QUERY SELECT * FROM rec._rank_by_vector(v_space, v_vec, $2, '{}'::text[], $3, $4, $5, 0, v_kind, v_item);
END
$fn$;
