-- Rebuilds rec.fresh_pool: the 10,000 newest items at this priors refresh (rec.item_priors.newness), with their
-- users, creation time and vector in the active collaborative space, read by rec._rank_fresh. Run by
-- rec.refresh_item_priors in its transaction (a plain DELETE, so that serving never waits); the rows written.
CREATE OR REPLACE FUNCTION rec.refresh_fresh_pool() RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_collab constant integer := rec.active_space_id('collaborative');
    v_n integer;
BEGIN
    DELETE FROM rec.fresh_pool;
    IF v_collab IS NULL THEN
        RETURN 0;
    END IF;
    INSERT INTO rec.fresh_pool (space_id, item_id, newness, created_at, n_users, embedding)
    SELECT v_collab, p.item_id, p.newness, i.created_at, p.n_users, e.embedding
    FROM rec.item_priors p
    JOIN rec.items i ON i.item_id = p.item_id
    LEFT JOIN rec.item_embeddings e ON e.space_id = v_collab AND e.item_id = p.item_id
    WHERE p.newness <= 10000
    ORDER BY p.newness;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$fn$;
