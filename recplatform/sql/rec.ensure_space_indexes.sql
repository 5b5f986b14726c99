CREATE OR REPLACE FUNCTION rec.ensure_space_indexes(p_space_id int) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s text;
BEGIN
    -- In this transaction (CREATE INDEX takes a SHARE lock: writes wait, reads do not); the statements and
    -- their validation live in rec.space_index_ddl.
    FOR s IN SELECT d.statement FROM rec.space_index_ddl(p_space_id, false) d LOOP
        EXECUTE s;
    END LOOP;
END
$fn$;
