-- Why an item was recommended: for a warm user, the history items closest to it in the collaborative space
-- (similarity of item factors) with their interaction weight; for a cold user, the demographic neighbours
-- who interacted with it and their similarity; otherwise (no taste, no demographics) its popularity, as served.
CREATE OR REPLACE FUNCTION rec.explain(user_id text, item_id text, k integer DEFAULT 5)
RETURNS TABLE(source text, reason text, ref_id text, label text, similarity double precision,
              weight double precision)
LANGUAGE plpgsql STABLE ROWS 5 AS $fn$
#variable_conflict use_column
DECLARE
    v_user constant text := $1;
    v_item constant text := $2;
    v_collab integer := rec.active_space_id('collaborative');
    v_content integer := rec.active_space_id('content');
    v_target vector;
    v_demo vector;
    v_dim integer;
    v_def rec.retrieval_defaults;
BEGIN
    PERFORM rec._check_request($3, NULL, NULL, NULL, NULL);
    IF v_user IS NULL OR NOT EXISTS (SELECT 1 FROM rec.users u WHERE u.user_id = v_user) THEN
        RAISE EXCEPTION 'unknown user_id %', quote_nullable(v_user) USING ERRCODE = 'P0002', COLUMN = 'user_id';
    END IF;
    IF v_item IS NULL OR NOT EXISTS (SELECT 1 FROM rec.items i WHERE i.item_id = v_item) THEN
        RAISE EXCEPTION 'unknown item_id %', quote_nullable(v_item) USING ERRCODE = 'P0002', COLUMN = 'item_id';
    END IF;
    IF v_collab IS NOT NULL AND EXISTS (SELECT 1 FROM rec.user_embeddings t WHERE t.space_id = v_collab
                                        AND t.user_id = v_user AND t.kind = 'taste') THEN
        SELECT e.embedding INTO v_target FROM rec.item_embeddings e WHERE e.space_id = v_collab AND e.item_id = v_item;
        IF v_target IS NOT NULL THEN
            -- compare item factors without the augmentation component (module docstring of collaborative.py)
            v_dim := vector_dims(v_target) - CASE WHEN coalesce((SELECT (m.params->>'augmented')::boolean
                                                                  FROM rec.embedding_models m
                                                                  WHERE m.space_id = v_collab), false)
                                                  THEN 1 ELSE 0 END;
            RETURN QUERY
            WITH h AS (
                SELECT x.item_id, max(x.weight * coalesce(x.rating, 1)) AS w
                FROM rec.interactions x WHERE x.user_id = v_user AND x.item_id <> v_item GROUP BY x.item_id
            )
            SELECT 'taste'::text, 'history_item'::text, h.item_id, i.title,
                   1 - (subvector(e.embedding, 1, v_dim) <=> subvector(v_target, 1, v_dim)), h.w
            FROM h JOIN rec.item_embeddings e ON e.space_id = v_collab AND e.item_id = h.item_id
            JOIN rec.items i ON i.item_id = h.item_id
            ORDER BY 5 DESC, h.w DESC, h.item_id
            LIMIT $3;
            RETURN;
        END IF;
    END IF;
    IF v_content IS NOT NULL THEN
        v_demo := rec._demographic_vector(v_content, v_user);  -- as rec._recommend_main: none, popularity
    END IF;
    IF v_demo IS NOT NULL THEN
        SELECT * INTO v_def FROM rec.retrieval_defaults d WHERE d.user_type = 'cold';
        RETURN QUERY
        SELECT 'demographic_neighbors'::text, 'neighbor_user'::text, n.user_id,
               concat_ws(' ', u.age::text, u.gender, u.occupation, u.zip_code), n.similarity,
               count(*)::double precision
        FROM rec._demographic_neighbors(v_content, v_collab, v_demo, v_user, coalesce(v_def.neighbors, 100),
                                        'interactions') n
        JOIN rec.interactions x ON x.user_id = n.user_id AND x.item_id = v_item
        JOIN rec.users u ON u.user_id = n.user_id
        GROUP BY n.user_id, n.similarity, u.age, u.gender, u.occupation, u.zip_code
        ORDER BY n.similarity DESC, n.user_id
        LIMIT $3;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT 'popularity'::text, 'popularity'::text, v_item, i.title, NULL::double precision,
           coalesce(p.popularity, 0)
    FROM rec.items i LEFT JOIN rec.item_priors p ON p.item_id = i.item_id WHERE i.item_id = v_item;
END
$fn$;
