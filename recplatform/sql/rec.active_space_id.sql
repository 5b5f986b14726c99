CREATE OR REPLACE FUNCTION rec.active_space_id(p_kind text) RETURNS integer
LANGUAGE sql STABLE AS $fn$
    SELECT m.space_id FROM rec.embedding_models m WHERE m.kind = p_kind AND m.is_active
$fn$;
