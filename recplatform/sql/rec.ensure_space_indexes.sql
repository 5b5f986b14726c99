CREATE OR REPLACE FUNCTION rec.ensure_space_indexes(p_space_id int) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    d int;
    k text;
BEGIN
    SELECT dimension INTO d FROM rec.embedding_models WHERE space_id = p_space_id;
    IF d IS NULL THEN
        RAISE EXCEPTION 'unknown embedding space %', p_space_id;
    END IF;
    EXECUTE format(
        'CREATE INDEX IF NOT EXISTS %I ON rec.item_embeddings '
        'USING hnsw ((embedding::vector(%s)) vector_cosine_ops) WHERE space_id = %s',
        'item_embeddings_hnsw_' || p_space_id, d, p_space_id);
    FOREACH k IN ARRAY ARRAY['demographic', 'taste'] LOOP
        EXECUTE format(
            'CREATE INDEX IF NOT EXISTS %I ON rec.user_embeddings '
            'USING hnsw ((embedding::vector(%s)) vector_cosine_ops) WHERE space_id = %s AND kind = %L',
            'user_embeddings_hnsw_' || p_space_id || '_' || k, d, p_space_id, k);
    END LOOP;
END
$fn$;
