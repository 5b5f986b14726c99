CREATE OR REPLACE FUNCTION rec.ensure_space_indexes(p_space_id int) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    d int;
    k text;
    st text;
BEGIN
    SELECT dimension, coalesce(params->>'storage', 'vector') INTO d, st
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
    EXECUTE format(
        'CREATE INDEX IF NOT EXISTS %I ON rec.item_embeddings '
        'USING hnsw ((embedding::%s(%s)) %s_cosine_ops) WHERE space_id = %s',
        'item_embeddings_hnsw_' || p_space_id, st, d, st, p_space_id);
    FOREACH k IN ARRAY ARRAY['demographic', 'taste'] LOOP
        EXECUTE format(
            'CREATE INDEX IF NOT EXISTS %I ON rec.user_embeddings '
            'USING hnsw ((embedding::vector(%s)) vector_cosine_ops) WHERE space_id = %s AND kind = %L',
            'user_embeddings_hnsw_' || p_space_id || '_' || k, d, p_space_id, k);
    END LOOP;
END
$fn$;
