-- Item-to-item scores of a history for candidate items: for each candidate, the sum of the weights towards it from
-- the history's items, over the weights stored with collaborative space p_space (rec.item_neighbors, EASE, kept
-- per target item; revision 0025). Candidates no kept weight reaches are not returned (score 0). p_items must be
-- distinct (both callers read them with array_agg(DISTINCT)): an item listed twice would count twice.
CREATE OR REPLACE FUNCTION rec._item_item_scores(p_space integer, p_items text[], p_candidates text[])
RETURNS TABLE(item_id text, score double precision)
LANGUAGE sql STABLE ROWS 50 AS $fn$
    SELECT n.item_id, sum(u.weight)
    FROM rec.item_neighbors n
    CROSS JOIN LATERAL unnest(n.source_ids, n.weights) AS u(source_id, weight)
    JOIN unnest(p_items) AS h(item_id) ON h.item_id = u.source_id
    WHERE n.space_id = p_space AND n.item_id = ANY(p_candidates)
    GROUP BY n.item_id
$fn$;
