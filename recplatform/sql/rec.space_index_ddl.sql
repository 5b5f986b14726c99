CREATE OR REPLACE FUNCTION rec.space_index_ddl(p_space_id int, p_concurrently boolean, p_drop boolean DEFAULT false)
RETURNS TABLE(index_name text, statement text)
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    n text;
    d int;
    kd text;
    st text;
    c text := CASE WHEN p_concurrently THEN 'CONCURRENTLY ' ELSE '' END;
BEGIN
    -- The statements that create (or drop) a space's HNSW indexes: an item index, and for a content space a
    -- demographic-vector index (rec._demographic_neighbors searches it). Nothing searches taste vectors by
    -- distance (they are read by user id), so they get no HNSW index: it would only slow every fold-in.
    -- CONCURRENTLY cannot run inside a function or a transaction, so callers that must not block serving
    -- (training, dropping an old space) execute these one by one on an autocommit connection.
    IF p_drop THEN
        FOREACH n IN ARRAY ARRAY['item_embeddings_hnsw_' || p_space_id,
                                 'user_embeddings_hnsw_' || p_space_id || '_demographic',
                                 'user_embeddings_hnsw_' || p_space_id || '_taste'] LOOP
            index_name := n;
            statement := format('DROP INDEX %sIF EXISTS rec.%I', c, n);
            RETURN NEXT;
        END LOOP;
        RETURN;
    END IF;
    SELECT dimension, coalesce(params->>'storage', 'vector'), kind INTO d, st, kd
    FROM rec.embedding_models WHERE space_id = p_space_id;
    IF d IS NULL THEN
        RAISE EXCEPTION 'unknown embedding space %', p_space_id;
    END IF;
    -- params.storage = 'halfvec' (pgvector >= 0.7): the item index holds 2-byte floats, half the memory;
    -- rec._rank_by_vector then searches it and re-scores the candidates in full precision.
    IF st NOT IN ('vector', 'halfvec') THEN
        RAISE EXCEPTION 'embedding space % has storage %, expected vector or halfvec', p_space_id, st
            USING ERRCODE = '22023', COLUMN = 'storage';
    END IF;
    index_name := 'item_embeddings_hnsw_' || p_space_id;
    statement := format(
        'CREATE INDEX %sIF NOT EXISTS %I ON rec.item_embeddings '
        'USING hnsw ((embedding::%s(%s)) %s_cosine_ops) WHERE space_id = %s',
        c, index_name, st, d, st, p_space_id);
    RETURN NEXT;
    IF kd = 'content' THEN
        index_name := 'user_embeddings_hnsw_' || p_space_id || '_demographic';
        statement := format(
            'CREATE INDEX %sIF NOT EXISTS %I ON rec.user_embeddings '
            'USING hnsw ((embedding::vector(%s)) vector_cosine_ops) WHERE space_id = %s AND kind = %L',
            c, index_name, d, p_space_id, 'demographic');
        RETURN NEXT;
    END IF;
END
$fn$;
