"""onboarding path, exploration share for fresh items, rec.new_for_you; neighbour votes per distinct (user, item).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

* ``rec.retrieval_defaults`` gains the row ``onboarding`` (strategy ``onboarding``: users with at least one but
  fewer than ``switch_after`` distinct items) and the columns ``evidence_weight`` / ``evidence_from`` (how much
  and from which count on the user's own interactions move the prior), ``switch_after``, ``exploration_share``,
  ``fresh_max_interactions`` / ``fresh_max_age`` (which items are fresh) and ``tuning`` (what chose the values,
  with its validation score).
* Onboarding score (``rec._rank_onboarding``): the cold default's prior with the user's items excluded,
  ``prior(i) = (1 - w) vote(i) + w popularity(i)``, updated by the evidence in log space::

      score(i) = ln(1e-4 + prior(i)) + eta(n) * x_u . y_i,   eta(n) = evidence_weight if n >= evidence_from else 0

  where ``x_u`` is the user's fold-in taste vector (its norm grows with evidence; taste vectors are stored
  unnormalised, ``[x_u, 0]``, so ``x_u . y_i = cos * |x_u| * M``) and ``n`` the user's distinct items.
* Exploration (``rec.recommend(..., exploration_share)``): the last ``floor(share * k)`` slots of the list go to
  fresh items (fewer than ``fresh_max_interactions`` users, or created within ``fresh_max_age``), ranked for the
  user by their collaborative vector (mapped from content for items without interactions) against the user's
  taste vector, or the demographic → taste map for users without one; ``source = 'exploration'``. Filters and
  exclusion of seen items apply; the rest of the list tops up so k rows come back whenever k qualify.
* ``rec.new_for_you(user_id, k, genres, min_year, max_year)``: fresh items only, same ranking, ``source = 'fresh'``.
* Neighbour votes count each (neighbour, item) pair once, not once per interaction row (issue 9, item 14), and
  only users with at least 5 interactions are demographic neighbours (a user who is onboarding does not vote).

``rec.recommend`` changes signature (a trailing ``exploration_share``): it is dropped and created again, never
overloaded.
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TABLE = """
ALTER TABLE rec.retrieval_defaults DROP CONSTRAINT IF EXISTS retrieval_defaults_user_type_check;
ALTER TABLE rec.retrieval_defaults DROP CONSTRAINT IF EXISTS retrieval_defaults_strategy_check;
ALTER TABLE rec.retrieval_defaults DROP CONSTRAINT IF EXISTS retrieval_defaults_check;
ALTER TABLE rec.retrieval_defaults
    ADD COLUMN evidence_weight double precision NOT NULL DEFAULT 0 CHECK (evidence_weight BETWEEN 0 AND 100),
    ADD COLUMN evidence_from integer NOT NULL DEFAULT 1 CHECK (evidence_from >= 1),
    ADD COLUMN switch_after integer NOT NULL DEFAULT 1 CHECK (switch_after >= 1),
    ADD COLUMN exploration_share double precision NOT NULL DEFAULT 0 CHECK (exploration_share BETWEEN 0 AND 1),
    ADD COLUMN fresh_max_interactions integer NOT NULL DEFAULT 5 CHECK (fresh_max_interactions >= 0),
    ADD COLUMN fresh_max_age interval,
    ADD COLUMN tuning jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    ADD CONSTRAINT retrieval_defaults_user_type_check CHECK (user_type IN ('warm', 'cold', 'onboarding')),
    ADD CONSTRAINT retrieval_defaults_strategy_check CHECK (strategy IN ('taste', 'neighbors_vote', 'neighbors_taste',
                                                                         'learned_map', 'prompt', 'popularity',
                                                                         'onboarding')),
    ADD CONSTRAINT retrieval_defaults_check CHECK (user_type = 'warm' OR strategy <> 'taste'),
    ADD CONSTRAINT retrieval_defaults_onboarding_check CHECK ((user_type = 'onboarding') = (strategy = 'onboarding'));
INSERT INTO rec.retrieval_defaults (user_type, strategy, popularity_weight, neighbors, evidence_weight, evidence_from,
                                    switch_after, note)
SELECT 'onboarding', 'onboarding', c.popularity_weight, c.neighbors, {evidence_weight}, {evidence_from},
       {switch_after}, '{note}'
FROM rec.retrieval_defaults c WHERE c.user_type = 'cold';
UPDATE rec.retrieval_defaults SET exploration_share = {exploration_share};
CREATE INDEX item_priors_n_users ON rec.item_priors (n_users);
CREATE INDEX items_created_at ON rec.items (created_at);
"""

_FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION rec._check_request(p_k integer, p_genres text[], p_min_year integer, p_max_year integer,
                                              p_strategy text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
    IF p_k IS NULL OR p_k < 1 OR p_k > 1000 THEN
        RAISE EXCEPTION 'k must be between 1 and 1000, got %', coalesce(p_k::text, 'NULL')
            USING ERRCODE = '22023', COLUMN = 'k';
    END IF;
    IF p_genres IS NOT NULL THEN
        IF cardinality(p_genres) = 0 OR array_ndims(p_genres) <> 1 THEN
            RAISE EXCEPTION 'genres must be a non-empty one-dimensional list of genre names (NULL for no filter)'
                USING ERRCODE = '22023', COLUMN = 'genres';
        END IF;
        IF EXISTS (SELECT 1 FROM unnest(p_genres) g WHERE g IS NULL OR btrim(g) = '' OR length(g) > 200) THEN
            RAISE EXCEPTION 'genres contains an empty, NULL or over-long genre name: %', p_genres
                USING ERRCODE = '22023', COLUMN = 'genres';
        END IF;
    END IF;
    IF p_min_year IS NOT NULL AND (p_min_year < 0 OR p_min_year > 3000) THEN
        RAISE EXCEPTION 'min_year must be between 0 and 3000, got %', p_min_year USING ERRCODE = '22023', COLUMN = 'min_year';
    END IF;
    IF p_max_year IS NOT NULL AND (p_max_year < 0 OR p_max_year > 3000) THEN
        RAISE EXCEPTION 'max_year must be between 0 and 3000, got %', p_max_year USING ERRCODE = '22023', COLUMN = 'max_year';
    END IF;
    IF p_min_year > p_max_year THEN
        RAISE EXCEPTION 'min_year (%) is greater than max_year (%)', p_min_year, p_max_year
            USING ERRCODE = '22023', COLUMN = 'min_year';
    END IF;
    IF p_strategy IS NOT NULL AND p_strategy NOT IN ('taste', 'neighbors_vote', 'neighbors_taste', 'learned_map',
                                                     'prompt', 'popularity', 'onboarding') THEN
        RAISE EXCEPTION 'strategy must be one of taste, onboarding, neighbors_vote, neighbors_taste, learned_map, prompt, popularity; got %',
            quote_literal(p_strategy) USING ERRCODE = '22023', COLUMN = 'strategy';
    END IF;
END
$fn$;

-- Nearest established users to a demographic vector (HNSW over kind='demographic' vectors of the content space).
-- p_require: 'interactions' (at least 5 interactions: users who are onboarding themselves do not vote) or
-- 'taste' (has a taste vector in p_collab).
CREATE OR REPLACE FUNCTION rec._demographic_neighbors(p_content integer, p_collab integer, p_demo vector, p_self text,
                                           p_n integer, p_require text)
RETURNS TABLE(user_id text, similarity double precision)
LANGUAGE plpgsql STABLE ROWS 100
SET hnsw.iterative_scan = 'relaxed_order'
SET hnsw.ef_search = '100'
SET hnsw.max_scan_tuples = '20000'
AS $fn$
#variable_conflict use_column
DECLARE
    v_dim integer;
    v_ids text[];
    v_dists double precision[];
    v_warm text;
    v_sql constant text :=
        'WITH c AS MATERIALIZED (SELECT u.user_id, (u.embedding::vector(%1$s) <=> $1)::float8 AS dist'
        ' FROM rec.user_embeddings u WHERE u.space_id = %2$s AND u.kind = ''demographic'''
        ' AND u.user_id IS DISTINCT FROM $2 AND %3$s ORDER BY %4$s LIMIT $3)'
        ' SELECT array_agg(c.user_id ORDER BY c.dist, c.user_id), array_agg(c.dist ORDER BY c.dist, c.user_id) FROM c';
BEGIN
    SELECT m.dimension INTO v_dim FROM rec.embedding_models m WHERE m.space_id = p_content;
    IF vector_dims(p_demo) <> v_dim THEN
        RAISE EXCEPTION 'demographic vector has dimension % but content space % has dimension %',
            vector_dims(p_demo), p_content, v_dim USING ERRCODE = '22023', COLUMN = 'demographic';
    END IF;
    IF p_require = 'taste' THEN
        v_warm := format('EXISTS (SELECT 1 FROM rec.user_embeddings t WHERE t.space_id = %s AND t.user_id = u.user_id'
                         ' AND t.kind = ''taste'' OFFSET 0)', p_collab);
    ELSE
        -- OFFSET keeps this a per-row probe (not a semi-join over all interactions) beside the index scan; 4 = fifth row
        v_warm := 'EXISTS (SELECT 1 FROM rec.interactions x WHERE x.user_id = u.user_id OFFSET 4)';
    END IF;
    PERFORM set_config('hnsw.ef_search', least(1000, greatest(64, 2 * p_n))::text, true);
    -- Most users with a demographic vector are warm: over-fetch 2n by the bare index scan, keep the warm ones
    -- (one primary-key probe each); only when that leaves fewer than n, filter inside the iterative scan.
    EXECUTE format(v_sql, v_dim, p_content, 'true', format('u.embedding::vector(%s) <=> $1', v_dim))
        INTO v_ids, v_dists USING p_demo, p_self, 2 * p_n;
    IF p_require = 'taste' THEN
        SELECT array_agg(n.user_id ORDER BY n.ord), array_agg(n.dist ORDER BY n.ord) INTO v_ids, v_dists
        FROM (SELECT w.user_id, w.dist, w.ord FROM unnest(v_ids, v_dists) WITH ORDINALITY AS w(user_id, dist, ord)
              WHERE EXISTS (SELECT 1 FROM rec.user_embeddings t WHERE t.space_id = p_collab
                            AND t.user_id = w.user_id AND t.kind = 'taste' OFFSET 0)
              ORDER BY w.ord LIMIT p_n) n;
    ELSE
        SELECT array_agg(n.user_id ORDER BY n.ord), array_agg(n.dist ORDER BY n.ord) INTO v_ids, v_dists
        FROM (SELECT w.user_id, w.dist, w.ord FROM unnest(v_ids, v_dists) WITH ORDINALITY AS w(user_id, dist, ord)
              WHERE EXISTS (SELECT 1 FROM rec.interactions x WHERE x.user_id = w.user_id OFFSET 4)
              ORDER BY w.ord LIMIT p_n) n;
    END IF;
    IF coalesce(cardinality(v_ids), 0) < p_n THEN
        EXECUTE format(v_sql, v_dim, p_content, v_warm, format('u.embedding::vector(%s) <=> $1', v_dim))
            INTO v_ids, v_dists USING p_demo, p_self, p_n;
    END IF;
    IF coalesce(cardinality(v_ids), 0) < p_n THEN
        EXECUTE format(v_sql, v_dim, p_content, v_warm, format('(u.embedding::vector(%s) <=> $1) + 0', v_dim))
            INTO v_ids, v_dists USING p_demo, p_self, p_n;
    END IF;
    RETURN QUERY SELECT u.user_id, 1 - u.dist FROM unnest(v_ids, v_dists) AS u(user_id, dist);
END
$fn$;

-- Neighbour votes: each neighbour votes once per distinct item it interacted with (several events on one item
-- are one vote), weighted by its similarity; otherwise as in 0002.
CREATE OR REPLACE FUNCTION rec._rank_by_neighbor_votes(p_neighbors text[], p_sims double precision[], p_k integer,
                                                       p_seen text[], p_genres text[], p_min_year integer,
                                                       p_max_year integer, p_pop_weight double precision)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
#variable_conflict use_column
DECLARE
    v_n constant integer := greatest(p_k * 4, 50);
    v_filtered constant boolean := p_genres IS NOT NULL OR p_min_year IS NOT NULL OR p_max_year IS NOT NULL;
    v_total double precision;
    v_ids text[];
    v_votes double precision[];
BEGIN
    p_seen := coalesce(p_seen, '{}');
    SELECT greatest(sum(greatest(s, 0)), 1e-9) INTO v_total FROM unnest(p_sims) AS s;
    EXECUTE format(
        'WITH nb AS (SELECT n.user_id, greatest(n.sim, 0) AS sim FROM unnest($1::text[], $2::float8[]) AS n(user_id, sim)),'
        ' pairs AS (SELECT DISTINCT x.user_id, x.item_id FROM rec.interactions x WHERE x.user_id = ANY($1)'
        '           AND NOT (x.item_id = ANY($3))),'
        ' votes AS (SELECT p.item_id, sum(nb.sim) AS vote FROM pairs p JOIN nb ON nb.user_id = p.user_id'
        '           GROUP BY p.item_id),'
        ' top AS (SELECT v.item_id, v.vote FROM votes v %s ORDER BY v.vote DESC, v.item_id LIMIT $7)'
        ' SELECT array_agg(top.item_id ORDER BY top.vote DESC, top.item_id),'
        '        array_agg(top.vote ORDER BY top.vote DESC, top.item_id) FROM top',
        CASE WHEN v_filtered THEN
            'JOIN rec.items i ON i.item_id = v.item_id WHERE ($4::text[] IS NULL OR i.genres && $4)'
            ' AND ($5::integer IS NULL OR i.year >= $5) AND ($6::integer IS NULL OR i.year <= $6)'
        ELSE '' END)
        INTO v_ids, v_votes USING p_neighbors, p_sims, p_seen, p_genres, p_min_year, p_max_year, v_n;
    v_ids := coalesce(v_ids, '{}');
    v_votes := coalesce(v_votes, '{}');
    RETURN QUERY
    WITH cand AS (
        SELECT u.item_id, u.vote / v_total AS vote FROM unnest(v_ids, v_votes) AS u(item_id, vote)
        UNION ALL
        SELECT c.item_id, 0 FROM rec._popular_candidates(p_seen, p_genres, p_min_year, p_max_year, v_n) c
        WHERE NOT (c.item_id = ANY(v_ids))
    ), scored AS (
        SELECT c.item_id, (1 - p_pop_weight) * c.vote + p_pop_weight * coalesce(p.popularity, 0) AS s,
               coalesce(p.popularity, 0) AS popularity
        FROM cand c LEFT JOIN rec.item_priors p ON p.item_id = c.item_id
    )
    SELECT (row_number() OVER (ORDER BY s.s DESC, s.popularity DESC, s.item_id))::integer, s.item_id, i.title, s.s,
           'demographic_neighbors'::text
    FROM scored s JOIN rec.items i ON i.item_id = s.item_id
    ORDER BY 1
    LIMIT p_k;
END
$fn$;

-- Onboarding: the cold prior (neighbour votes + popularity, seen items excluded) updated in log space by the
-- user's own evidence, eta * x_u . y_i (module docstring of migration 0004). With eta = 0 this ranks exactly
-- like the cold default with the user's items excluded.
CREATE FUNCTION rec._rank_onboarding(p_demo vector, p_self text, p_collab integer, p_taste vector, p_k integer,
                                     p_seen text[], p_genres text[], p_min_year integer, p_max_year integer,
                                     p_pop_weight double precision, p_neighbors integer, p_eta double precision)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
#variable_conflict use_column
DECLARE
    v_content integer := rec.active_space_id('content');
    v_n constant integer := greatest(p_k * 4, 50);
    v_ids text[];
    v_sims double precision[];
    v_scale double precision;
    v_norm double precision;
BEGIN
    IF p_demo IS NOT NULL AND v_content IS NOT NULL THEN
        SELECT array_agg(n.user_id), array_agg(n.similarity) INTO v_ids, v_sims
        FROM rec._demographic_neighbors(v_content, p_collab, p_demo, p_self, p_neighbors, 'interactions') n;
    END IF;
    IF p_eta <= 0 OR p_taste IS NULL OR p_collab IS NULL THEN
        IF coalesce(cardinality(v_ids), 0) = 0 THEN
            RETURN QUERY SELECT r.rank, r.item_id, r.title, r.score, 'onboarding'::text
                         FROM rec._rank_popular(p_k, p_seen, p_genres, p_min_year, p_max_year) r;
            RETURN;
        END IF;
        RETURN QUERY SELECT r.rank, r.item_id, r.title, r.score, 'onboarding'::text
                     FROM rec._rank_by_neighbor_votes(v_ids, v_sims, p_k, p_seen, p_genres, p_min_year, p_max_year,
                                                      p_pop_weight) r;
        RETURN;
    END IF;
    SELECT (m.params->>'scale')::float8 INTO v_scale FROM rec.embedding_models m WHERE m.space_id = p_collab;
    v_norm := vector_norm(p_taste) * coalesce(v_scale, 1);  -- x_u . y_i = cos(x_u, y^_i) * |x_u| * M
    v_ids := coalesce(v_ids, '{}');
    v_sims := coalesce(v_sims, '{}');
    RETURN QUERY
    WITH prior AS (
        SELECT r.item_id, r.score FROM rec._rank_by_neighbor_votes(v_ids, v_sims, v_n, p_seen, p_genres, p_min_year,
                                                                   p_max_year, p_pop_weight) r
    ), nb AS (
        SELECT n.user_id, greatest(n.sim, 0) AS sim FROM unnest(v_ids, v_sims) AS n(user_id, sim)
    ), taste AS (
        SELECT t.item_id FROM rec._rank_by_vector(p_collab, p_taste, v_n, p_seen, p_genres, p_min_year, p_max_year,
                                                  0, 'taste') t
        WHERE NOT EXISTS (SELECT 1 FROM prior p WHERE p.item_id = t.item_id)
    ), taste_prior AS (
        -- the prior of taste candidates outside the prior's top: their votes, looked up by item
        SELECT t.item_id,
               (1 - p_pop_weight) * coalesce((SELECT sum(nb.sim) FROM nb WHERE EXISTS (
                    SELECT 1 FROM rec.interactions x WHERE x.item_id = t.item_id AND x.user_id = nb.user_id)), 0)
                   / greatest((SELECT sum(nb.sim) FROM nb), 1e-9)
               + p_pop_weight * coalesce(ip.popularity, 0) AS score
        FROM taste t LEFT JOIN rec.item_priors ip ON ip.item_id = t.item_id
    ), cand AS (
        SELECT * FROM prior UNION ALL SELECT * FROM taste_prior
    ), scored AS (
        SELECT c.item_id, ln(1e-4 + greatest(c.score, 0)) + p_eta * v_norm * coalesce(1 - (e.embedding <=> p_taste), 0) AS s,
               coalesce(ip.popularity, 0) AS popularity
        FROM cand c
        LEFT JOIN rec.item_embeddings e ON e.space_id = p_collab AND e.item_id = c.item_id
        LEFT JOIN rec.item_priors ip ON ip.item_id = c.item_id
    )
    SELECT (row_number() OVER (ORDER BY s.s DESC, s.popularity DESC, s.item_id))::integer, s.item_id, i.title, s.s,
           'onboarding'::text
    FROM scored s JOIN rec.items i ON i.item_id = s.item_id
    ORDER BY 1
    LIMIT p_k;
END
$fn$;

-- Fresh items (fewer than p_max_interactions users, or created within p_max_age) ranked for a query vector in
-- the collaborative space (exact: fresh items are few), or newest first without one.
CREATE FUNCTION rec._rank_fresh(p_collab integer, p_query vector, p_k integer, p_seen text[], p_genres text[],
                                p_min_year integer, p_max_year integer, p_max_interactions integer,
                                p_max_age interval, p_source text)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE sql STABLE ROWS 10 AS $fn$
    WITH fresh AS (
        SELECT p.item_id FROM rec.item_priors p WHERE p.n_users < p_max_interactions
        UNION
        SELECT i.item_id FROM rec.items i
        WHERE (p_max_age IS NOT NULL AND i.created_at > now() - p_max_age)
           OR i.created_at > coalesce((SELECT max(p.refreshed_at) FROM rec.item_priors p), '-infinity')
    ), scored AS (
        SELECT f.item_id, i.title, i.created_at,
               CASE WHEN p_query IS NULL OR e.embedding IS NULL THEN NULL
                    ELSE 1 - (e.embedding <=> p_query) END AS sim
        FROM fresh f
        JOIN rec.items i ON i.item_id = f.item_id
        LEFT JOIN rec.item_embeddings e ON e.space_id = p_collab AND e.item_id = f.item_id
        WHERE NOT (f.item_id = ANY(coalesce(p_seen, '{}')))
          AND (p_genres IS NULL OR i.genres && p_genres)
          AND (p_min_year IS NULL OR i.year >= p_min_year) AND (p_max_year IS NULL OR i.year <= p_max_year)
    )
    SELECT (row_number() OVER (ORDER BY s.sim DESC NULLS LAST, s.created_at DESC, s.item_id))::integer, s.item_id,
           s.title, s.sim, p_source
    FROM scored s
    ORDER BY 1
    LIMIT p_k
$fn$;

-- The vector fresh items are ranked by for a user: their taste vector, else their demographic vector mapped
-- into the collaborative space by the stored demographic -> taste map; NULL when neither exists.
CREATE FUNCTION rec._fresh_query(p_user text, p_collab integer) RETURNS vector
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_content integer := rec.active_space_id('content');
    v_q vector;
    v_map integer;
    v_demo vector;
BEGIN
    IF p_collab IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT t.embedding INTO v_q FROM rec.user_embeddings t
    WHERE t.space_id = p_collab AND t.user_id = p_user AND t.kind = 'taste';
    IF v_q IS NOT NULL OR v_content IS NULL THEN
        RETURN v_q;
    END IF;
    SELECT m.map_id INTO v_map FROM rec.coldstart_maps m
    WHERE m.kind = 'demographic_to_taste' AND m.is_active AND m.source_space_id = v_content
      AND m.target_space_id = p_collab;
    SELECT t.embedding INTO v_demo FROM rec.user_embeddings t
    WHERE t.space_id = v_content AND t.user_id = p_user AND t.kind = 'demographic';
    IF v_map IS NULL OR v_demo IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN rec.apply_map(v_map, v_demo);
END
$fn$;

-- The list without exploration: warm taste, onboarding, or a cold strategy (what rec.recommend served in 0002,
-- plus the onboarding path). p_n is the user's number of distinct items.
CREATE FUNCTION rec._recommend_main(p_user text, p_k integer, p_seen text[], p_n integer, p_genres text[],
                                    p_min_year integer, p_max_year integer, p_strategy text,
                                    p_weight double precision, p_content_weight double precision)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
DECLARE
    v_user constant text := p_user;
    v_strategy text := p_strategy;
    v_content_weight double precision := p_content_weight;
    v_collab integer := rec.active_space_id('collaborative');
    v_content integer := rec.active_space_id('content');
    v_taste vector;
    v_demo vector;
    v_content_taste vector;
    v_def rec.retrieval_defaults;
    v_onb rec.retrieval_defaults;
BEGIN
    IF v_collab IS NOT NULL THEN
        SELECT t.embedding INTO v_taste FROM rec.user_embeddings t
        WHERE t.space_id = v_collab AND t.user_id = v_user AND t.kind = 'taste';
    END IF;
    IF v_content IS NOT NULL THEN
        SELECT t.embedding INTO v_demo FROM rec.user_embeddings t
        WHERE t.space_id = v_content AND t.user_id = v_user AND t.kind = 'demographic';
    END IF;
    SELECT * INTO v_onb FROM rec.retrieval_defaults d WHERE d.user_type = 'onboarding';
    IF p_n > 0 AND (v_strategy = 'onboarding'
                    OR (v_strategy IS NULL AND v_onb.user_type IS NOT NULL AND p_n < v_onb.switch_after)) THEN
        RETURN QUERY SELECT * FROM rec._rank_onboarding(
            v_demo, v_user, v_collab, v_taste, p_k, p_seen, p_genres, p_min_year, p_max_year,
            coalesce(p_weight, v_onb.popularity_weight, 0.3), coalesce(v_onb.neighbors, 100),
            CASE WHEN p_n >= coalesce(v_onb.evidence_from, 1) THEN coalesce(v_onb.evidence_weight, 0) ELSE 0 END);
        RETURN;
    END IF;
    IF v_strategy = 'onboarding' THEN
        v_strategy := NULL;  -- no interactions yet: the cold default
    END IF;
    IF v_taste IS NOT NULL AND coalesce(v_strategy, 'taste') = 'taste' THEN
        SELECT * INTO v_def FROM rec.retrieval_defaults d WHERE d.user_type = 'warm';
        IF coalesce(v_strategy, v_def.strategy, 'taste') = 'taste' THEN
            v_content_weight := coalesce(v_content_weight, v_def.content_weight, 0);
            IF v_content_weight > 0 AND v_content IS NOT NULL THEN
                SELECT avg(e.embedding) INTO v_content_taste
                FROM rec.item_embeddings e
                WHERE e.space_id = v_content
                  AND e.item_id IN (SELECT x.item_id FROM rec.interactions x WHERE x.user_id = v_user);
                IF v_content_taste IS NOT NULL THEN
                    RETURN QUERY SELECT * FROM rec._rank_warm_blend(v_collab, v_taste, v_content, v_content_taste,
                                                                    v_content_weight, p_k, p_seen, p_genres,
                                                                    p_min_year, p_max_year,
                                                                    coalesce(p_weight, v_def.popularity_weight, 0));
                    RETURN;
                END IF;
            END IF;
            RETURN QUERY SELECT * FROM rec._rank_by_vector(v_collab, v_taste, p_k, p_seen, p_genres, p_min_year,
                                                           p_max_year, coalesce(p_weight, v_def.popularity_weight, 0),
                                                           'taste');
            RETURN;
        END IF;
        v_strategy := v_def.strategy;  -- the evaluation chose a non-taste default for warm users
    ELSE
        SELECT * INTO v_def FROM rec.retrieval_defaults d WHERE d.user_type = 'cold';
        IF v_strategy IS NULL OR v_strategy = 'taste' THEN
            v_strategy := coalesce(v_def.strategy, 'neighbors_vote');
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM rec._recommend_cold(v_demo, v_user, p_k, p_seen, p_genres, p_min_year, p_max_year,
                                                   v_strategy, coalesce(p_weight, v_def.popularity_weight, 0),
                                                   coalesce(v_def.neighbors, 100));
END
$fn$;

DROP FUNCTION rec.recommend(text, integer, boolean, text[], integer, integer, text, double precision,
                            double precision);
CREATE FUNCTION rec.recommend(user_id text, k integer DEFAULT 10, exclude_seen boolean DEFAULT true,
                              genres text[] DEFAULT NULL, min_year integer DEFAULT NULL,
                              max_year integer DEFAULT NULL, strategy text DEFAULT NULL,
                              popularity_weight double precision DEFAULT NULL,
                              content_weight double precision DEFAULT NULL,
                              exploration_share double precision DEFAULT NULL)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
#variable_conflict use_column
DECLARE
    v_user constant text := $1;
    v_k constant integer := $2;
    v_share double precision := $10;
    v_seen text[] := '{}';
    v_n integer;
    v_fresh integer;
    v_collab integer := rec.active_space_id('collaborative');
    v_def rec.retrieval_defaults;
BEGIN
    PERFORM rec._check_request(v_k, $4, $5, $6, $7);
    PERFORM rec._check_weight($8);
    PERFORM rec._check_weight($9, 'content_weight');
    PERFORM rec._check_weight(v_share, 'exploration_share');
    IF v_user IS NULL OR NOT EXISTS (SELECT 1 FROM rec.users u WHERE u.user_id = v_user) THEN
        RAISE EXCEPTION 'unknown user_id %', quote_nullable(v_user) USING ERRCODE = 'P0002', COLUMN = 'user_id';
    END IF;
    SELECT coalesce(array_agg(DISTINCT x.item_id), '{}') INTO v_seen FROM rec.interactions x WHERE x.user_id = v_user;
    v_n := cardinality(v_seen);
    IF $3 IS FALSE THEN
        v_seen := '{}';
    END IF;
    IF v_share IS NULL THEN
        SELECT * INTO v_def FROM rec.retrieval_defaults d
        WHERE d.user_type = CASE WHEN v_n = 0 THEN 'cold' ELSE 'warm' END;
        v_share := coalesce(v_def.exploration_share, 0);
    END IF;
    v_fresh := least(v_k, floor(v_share * v_k + 1e-9)::integer);
    IF v_fresh = 0 THEN
        RETURN QUERY SELECT * FROM rec._recommend_main(v_user, v_k, v_seen, v_n, $4, $5, $6, $7, $8, $9);
        RETURN;
    END IF;
    IF v_def.user_type IS NULL THEN
        SELECT * INTO v_def FROM rec.retrieval_defaults d
        WHERE d.user_type = CASE WHEN v_n = 0 THEN 'cold' ELSE 'warm' END;
    END IF;
    -- The last v_fresh slots go to fresh items; the main list fills the rest and tops up when fewer are fresh.
    RETURN QUERY
    WITH fresh AS (
        SELECT f.item_id, f.title, f.score, f.rank
        FROM rec._rank_fresh(v_collab, rec._fresh_query(v_user, v_collab), v_fresh, v_seen, $4, $5, $6,
                             coalesce(v_def.fresh_max_interactions, 5), v_def.fresh_max_age, 'exploration') f
    ), main AS (
        SELECT m.item_id, m.title, m.score, m.source, m.rank
        FROM rec._recommend_main(v_user, v_k, v_seen, v_n, $4, $5, $6, $7, $8, $9) m
        WHERE NOT EXISTS (SELECT 1 FROM fresh f WHERE f.item_id = m.item_id)
        ORDER BY m.rank
        LIMIT v_k - (SELECT count(*) FROM fresh)
    ), merged AS (
        SELECT m.item_id, m.title, m.score, m.source, 0 AS part, m.rank FROM main m
        UNION ALL
        SELECT f.item_id, f.title, f.score, 'exploration'::text, 1, f.rank FROM fresh f
    )
    SELECT (row_number() OVER (ORDER BY mg.part, mg.rank))::integer, mg.item_id, mg.title, mg.score, mg.source
    FROM merged mg
    ORDER BY 1;
END
$fn$;

-- Fresh items only, ranked for the user (what rec.recommend's exploration slots draw from).
CREATE FUNCTION rec.new_for_you(user_id text, k integer DEFAULT 10, genres text[] DEFAULT NULL,
                                min_year integer DEFAULT NULL, max_year integer DEFAULT NULL,
                                exclude_seen boolean DEFAULT true)
RETURNS TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
DECLARE
    v_user constant text := $1;
    v_seen text[] := '{}';
    v_collab integer := rec.active_space_id('collaborative');
    v_def rec.retrieval_defaults;
BEGIN
    PERFORM rec._check_request($2, $3, $4, $5, NULL);
    IF v_user IS NULL OR NOT EXISTS (SELECT 1 FROM rec.users u WHERE u.user_id = v_user) THEN
        RAISE EXCEPTION 'unknown user_id %', quote_nullable(v_user) USING ERRCODE = 'P0002', COLUMN = 'user_id';
    END IF;
    IF $6 IS NOT FALSE THEN
        SELECT coalesce(array_agg(DISTINCT x.item_id), '{}') INTO v_seen FROM rec.interactions x WHERE x.user_id = v_user;
    END IF;
    SELECT * INTO v_def FROM rec.retrieval_defaults d WHERE d.user_type = 'warm';
    RETURN QUERY SELECT * FROM rec._rank_fresh(v_collab, rec._fresh_query(v_user, v_collab), $2, v_seen, $3, $4, $5,
                                               coalesce(v_def.fresh_max_interactions, 5), v_def.fresh_max_age,
                                               'fresh');
END
$fn$;

GRANT EXECUTE ON FUNCTION
    rec.recommend(text, integer, boolean, text[], integer, integer, text, double precision, double precision,
                  double precision),
    rec.new_for_you(text, integer, text[], integer, integer, boolean)
TO rec_reader;
"""

_DOWN = """
DROP FUNCTION IF EXISTS rec.new_for_you(text, integer, text[], integer, integer, boolean);
DROP FUNCTION IF EXISTS rec.recommend(text, integer, boolean, text[], integer, integer, text, double precision,
                                      double precision, double precision);
DROP FUNCTION IF EXISTS rec._recommend_main(text, integer, text[], integer, text[], integer, integer, text,
                                            double precision, double precision);
DROP FUNCTION IF EXISTS rec._fresh_query(text, integer);
DROP FUNCTION IF EXISTS rec._rank_fresh(integer, vector, integer, text[], text[], integer, integer, integer, interval,
                                        text);
DROP FUNCTION IF EXISTS rec._rank_onboarding(vector, text, integer, vector, integer, text[], text[], integer, integer,
                                             double precision, integer, double precision);
DROP INDEX IF EXISTS rec.item_priors_n_users;
DROP INDEX IF EXISTS rec.items_created_at;
DELETE FROM rec.retrieval_defaults WHERE user_type = 'onboarding';
ALTER TABLE rec.retrieval_defaults DROP CONSTRAINT IF EXISTS retrieval_defaults_onboarding_check,
    DROP CONSTRAINT IF EXISTS retrieval_defaults_user_type_check, DROP CONSTRAINT IF EXISTS retrieval_defaults_strategy_check,
    DROP COLUMN evidence_weight, DROP COLUMN evidence_from, DROP COLUMN switch_after, DROP COLUMN exploration_share,
    DROP COLUMN fresh_max_interactions, DROP COLUMN fresh_max_age, DROP COLUMN tuning,
    ADD CONSTRAINT retrieval_defaults_user_type_check CHECK (user_type IN ('warm', 'cold')),
    ADD CONSTRAINT retrieval_defaults_strategy_check CHECK (strategy IN ('taste', 'neighbors_vote', 'neighbors_taste',
                                                                         'learned_map', 'prompt', 'popularity'));
"""

# Defaults measured on ML-100K (docs/results.md, onboarding and new-item protocols); `recplatform tune` replaces
# them with values chosen on the deployment's own validation users.
DEFAULTS = {
    "evidence_weight": 0.25,
    "evidence_from": 20,
    "switch_after": 50,
    "exploration_share": 0.1,
    "note": "ML-100K onboarding evaluation (docs/results.md): prior only until 20 items, then evidence",
}


def upgrade() -> None:
    op.execute(_TABLE.format(**DEFAULTS))
    op.execute(_FUNCTIONS)


def _functions_of_0002(names: tuple[str, ...]) -> str:
    """The CREATE FUNCTION texts of the named functions as revision 0002 created them (for the downgrade)."""
    import re
    import runpy
    from pathlib import Path

    text = runpy.run_path(str(Path(__file__).with_name("0002_retrieval.py")))["_FUNCTIONS"]
    blocks = []
    for name in names:
        match = re.search(r"CREATE FUNCTION rec\." + re.escape(name) + r"\(.*?\$fn\$;", text, re.S)
        blocks.append(match.group(0).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    return "\n".join(blocks)


def downgrade() -> None:
    op.execute(_DOWN)
    op.execute(_functions_of_0002(("_check_request", "_demographic_neighbors", "_rank_by_neighbor_votes", "recommend")))
    op.execute("GRANT EXECUTE ON FUNCTION rec.recommend(text, integer, boolean, text[], integer, integer, text, "
               "double precision, double precision) TO rec_reader")
