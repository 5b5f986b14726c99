CREATE OR REPLACE FUNCTION rec.embedding_models_indexes() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    s text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- params.indexes = 'deferred': the registering process loads the vectors first and then builds the
        -- indexes with CREATE INDEX CONCURRENTLY (a training: serving never waits for it).
        IF coalesce(NEW.params->>'indexes', '') <> 'deferred' THEN
            PERFORM rec.ensure_space_indexes(NEW.space_id);
        END IF;
        RETURN NEW;
    END IF;
    -- A plain DROP INDEX locks the whole table until commit; rec's Python drops a space's indexes
    -- CONCURRENTLY first (recplatform.embedding.spaces.drop_space), so these find nothing left to drop.
    FOR s IN SELECT d.statement FROM rec.space_index_ddl(OLD.space_id, false, true) d LOOP
        EXECUTE s;
    END LOOP;
    RETURN OLD;
END
$fn$;
