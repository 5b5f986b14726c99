CREATE OR REPLACE FUNCTION rec.refresh_item_priors() RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_n integer;
BEGIN
    DELETE FROM rec.item_priors;
    INSERT INTO rec.item_priors (item_id, n_users, popularity, refreshed_at)
    WITH c AS (
        SELECT i.item_id, count(DISTINCT x.user_id) AS n
        FROM rec.items i LEFT JOIN rec.interactions x ON x.item_id = i.item_id
        GROUP BY i.item_id
    )
    SELECT c.item_id, c.n, ln(1 + c.n) / greatest(ln(1 + max(c.n) OVER ()), 1e-9), now() FROM c;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$fn$;
