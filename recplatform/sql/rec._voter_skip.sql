-- How many interactions a demographic neighbour needs, minus one (an OFFSET: an n-th interaction exists): the cold
-- row's neighbor_min_interactions, but never above the deployment's median history (at least 5), so that a minimum
-- tuned on a catalogue with long histories does not leave only a few far-away heavy users to vote on a small one.
CREATE OR REPLACE FUNCTION rec._voter_skip()
RETURNS integer
LANGUAGE sql STABLE AS $fn$
    SELECT least(coalesce(max(d.neighbor_min_interactions), 5),
                 greatest(5, coalesce((SELECT floor(s.value)::integer FROM rec.deployment_stats s
                                       WHERE s.name = 'history_median'), 1000))) - 1
    FROM rec.retrieval_defaults d WHERE d.user_type = 'cold'
$fn$;
