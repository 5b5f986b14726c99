-- Recomputes rec.item_priors (users per item, log-scaled popularity, newness rank: 1 = the newest item, for
-- rec._rank_fresh's age cut), the fresh pool (rec.refresh_fresh_pool) and the deployment figures that defaults
-- are relative to (rec.deployment_stats: history_median, the median number of distinct items of users with
-- interactions). Run by training; the writer's function (nothing else in rec writes).
CREATE OR REPLACE FUNCTION rec.refresh_item_priors() RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_n integer;
BEGIN
    DELETE FROM rec.item_priors;
    INSERT INTO rec.item_priors (item_id, n_users, popularity, refreshed_at, newness)
    WITH c AS (
        SELECT i.item_id, i.created_at, count(DISTINCT x.user_id) AS n
        FROM rec.items i LEFT JOIN rec.interactions x ON x.item_id = i.item_id
        GROUP BY i.item_id
    )
    SELECT c.item_id, c.n, ln(1 + c.n) / greatest(ln(1 + max(c.n) OVER ()), 1e-9), now(),
           row_number() OVER (ORDER BY c.created_at DESC, c.item_id DESC)
    FROM c;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    PERFORM rec.refresh_fresh_pool();
    DELETE FROM rec.deployment_stats WHERE name = 'history_median';
    INSERT INTO rec.deployment_stats (name, value, refreshed_at)
    SELECT 'history_median', percentile_disc(0.5) WITHIN GROUP (ORDER BY h.n), now()
    FROM (SELECT count(DISTINCT x.item_id) AS n FROM rec.interactions x GROUP BY x.user_id) h
    HAVING count(*) > 0;
    RETURN v_n;
END
$fn$;
