CREATE OR REPLACE FUNCTION rec.embedding_models_indexes() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    k text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM rec.ensure_space_indexes(NEW.space_id);
        RETURN NEW;
    END IF;
    EXECUTE format('DROP INDEX IF EXISTS rec.%I', 'item_embeddings_hnsw_' || OLD.space_id);
    FOREACH k IN ARRAY ARRAY['demographic', 'taste'] LOOP
        EXECUTE format('DROP INDEX IF EXISTS rec.%I', 'user_embeddings_hnsw_' || OLD.space_id || '_' || k);
    END LOOP;
    RETURN OLD;
END
$fn$;
