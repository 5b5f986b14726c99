"""input limits as CHECK constraints and request limits; rec_reader read-only by its privileges

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

* CHECK constraints repeating ingestion's bounds (``recplatform.input_limits``), so a write that skips
  validation is refused too: ``interactions_rating_range`` (a rating, when given, is in (0, 5]),
  ``interactions_weight_range`` (a weight is in (0, 1e6]; NaN fails both because Postgres orders NaN above
  every number), ``items_title_length`` (<= 1000 characters), ``items_description_length`` (<= 10000).
  A database holding rows outside them fails this upgrade naming the constraint: fix or delete the rows first.
* ``rec.limits()`` gains ``max_genres`` (100 genre names per request), which ``rec._check_request`` enforces.
  Its return type changes, so it is dropped and created (then granted again).
* ``rec.recommend_for_vector`` and ``rec.recommend_for_demographic_vector`` refuse a vector with zero (or
  infinite) length: cosine similarity is undefined there and every score was NaN.
* ``rec_reader``: only the owner may create temporary tables in this database, and only the owner and
  ``rec_reader`` may connect (``REVOKE CONNECT, TEMPORARY ... FROM PUBLIC``). The reader's writes were already
  refused by its grants (SELECT on ``rec``, EXECUTE on the functions); its ``statement_timeout`` and
  ``work_mem`` defaults are set by ``recplatform.db.migrate`` from Settings, not here.

The function definitions below are frozen copies of the files at this revision (upgrade) and of what 0004 made
(downgrade); ``rec.limits`` is dropped before it is created because only its OUT arguments change.
"""
from alembic import op
from alembic_utils.pg_function import PGFunction

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CHECKS = [
    ("interactions_rating_range", "interactions", "rating IS NULL OR (rating > 0 AND rating <= 5)"),
    ("interactions_weight_range", "interactions", "weight > 0 AND weight <= 1e6"),
    ("items_title_length", "items", "char_length(title) <= 1000"),
    ("items_description_length", "items", "description IS NULL OR char_length(description) <= 10000"),
]

# The database's own name is not a caller string: format('%I') quotes it inside the server.
PRIVATE_DATABASE = """
DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), current_user);
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO rec_reader', current_database());
END
$$
"""
PUBLIC_DATABASE = """
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
END
$$
"""

# ----- upgrade: the files at this revision -----------------------------------------------------------------
rec_limits = PGFunction(
    schema="rec",
    signature="limits(OUT max_k integer, OUT min_year integer, OUT max_year integer, OUT max_genre_length integer, OUT max_genres integer)",
    definition=r"""returns record
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT 1000, 0, 3000, 200, 100
$fn$""",
)

rec__check_request = PGFunction(
    schema="rec",
    signature="_check_request(p_k integer, p_genres text[], p_min_year integer, p_max_year integer, p_strategy text)",
    definition=r"""returns void
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_limit record := rec.limits();
BEGIN
    IF p_k IS NULL OR p_k < 1 OR p_k > v_limit.max_k THEN
        RAISE EXCEPTION 'k must be between 1 and %, got %', v_limit.max_k, coalesce(p_k::text, 'NULL')
            USING ERRCODE = '22023', COLUMN = 'k';
    END IF;
    IF p_genres IS NOT NULL THEN
        IF cardinality(p_genres) = 0 OR array_ndims(p_genres) <> 1 THEN
            RAISE EXCEPTION 'genres must be a non-empty one-dimensional list of genre names (NULL for no filter)'
                USING ERRCODE = '22023', COLUMN = 'genres';
        END IF;
        IF cardinality(p_genres) > v_limit.max_genres THEN
            RAISE EXCEPTION 'genres has % names; at most % are allowed', cardinality(p_genres), v_limit.max_genres
                USING ERRCODE = '22023', COLUMN = 'genres';
        END IF;
        IF EXISTS (SELECT 1 FROM unnest(p_genres) g
                   WHERE g IS NULL OR btrim(g) = '' OR length(g) > v_limit.max_genre_length) THEN
            RAISE EXCEPTION 'genres contains an empty, NULL or over-long genre name\: %', p_genres
                USING ERRCODE = '22023', COLUMN = 'genres';
        END IF;
    END IF;
    IF p_min_year IS NOT NULL AND (p_min_year < v_limit.min_year OR p_min_year > v_limit.max_year) THEN
        RAISE EXCEPTION 'min_year must be between % and %, got %', v_limit.min_year, v_limit.max_year, p_min_year
            USING ERRCODE = '22023', COLUMN = 'min_year';
    END IF;
    IF p_max_year IS NOT NULL AND (p_max_year < v_limit.min_year OR p_max_year > v_limit.max_year) THEN
        RAISE EXCEPTION 'max_year must be between % and %, got %', v_limit.min_year, v_limit.max_year, p_max_year
            USING ERRCODE = '22023', COLUMN = 'max_year';
    END IF;
    IF p_min_year > p_max_year THEN
        RAISE EXCEPTION 'min_year (%) is greater than max_year (%)', p_min_year, p_max_year
            USING ERRCODE = '22023', COLUMN = 'min_year';
    END IF;
    IF p_strategy IS NOT NULL AND NOT EXISTS (SELECT 1 FROM rec.strategies s WHERE s.name = p_strategy) THEN
        RAISE EXCEPTION 'strategy must be one of %; got %',
            (SELECT string_agg(s.name, ', ' ORDER BY s.position) FROM rec.strategies s), quote_literal(p_strategy)
            USING ERRCODE = '22023', COLUMN = 'strategy';
    END IF;
END
$fn$""",
)

rec_recommend_for_vector = PGFunction(
    schema="rec",
    signature="recommend_for_vector(query vector, k integer DEFAULT 10, genres text[] DEFAULT NULL, min_year integer DEFAULT NULL, max_year integer DEFAULT NULL, space text DEFAULT 'content', exclude_user text DEFAULT NULL)",
    definition=r"""returns TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
DECLARE
    v_space integer;
    v_seen text[] := '{}';
BEGIN
    PERFORM rec._check_request($2, $3, $4, $5, NULL);
    IF $1 IS NULL OR NOT (vector_norm($1) > 0 AND vector_norm($1) < 'Infinity'::double precision) THEN
        RAISE EXCEPTION 'query must be a vector with a finite, non-zero length (cosine similarity is undefined '
                        'for a zero vector)' USING ERRCODE = '22023', COLUMN = 'query';
    END IF;
    IF $6 IS NULL OR $6 NOT IN ('content', 'collaborative') THEN
        RAISE EXCEPTION 'space must be content or collaborative, got %', quote_nullable($6)
            USING ERRCODE = '22023', COLUMN = 'space';
    END IF;
    v_space := rec.active_space_id($6);
    IF v_space IS NULL THEN
        RAISE EXCEPTION 'no active % embedding space', $6 USING ERRCODE = '22023', COLUMN = 'space';
    END IF;
    IF $7 IS NOT NULL THEN
        SELECT coalesce(array_agg(DISTINCT x.item_id), '{}') INTO v_seen FROM rec.interactions x WHERE x.user_id = $7;
    END IF;
    RETURN QUERY SELECT * FROM rec._rank_by_vector(v_space, $1, $2, v_seen, $3, $4, $5, 0, 'vector');
END
$fn$""",
)

rec_recommend_for_demographic_vector = PGFunction(
    schema="rec",
    signature="recommend_for_demographic_vector(demographic vector, k integer DEFAULT 10, strategy text DEFAULT NULL, genres text[] DEFAULT NULL, min_year integer DEFAULT NULL, max_year integer DEFAULT NULL, popularity_weight double precision DEFAULT NULL)",
    definition=r"""returns TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
DECLARE
    v_strategy text := $3;
    v_content integer := rec.active_space_id('content');
    v_dim integer;
    v_def rec.retrieval_defaults;
BEGIN
    PERFORM rec._check_request($2, $4, $5, $6, v_strategy);
    PERFORM rec._check_weight($7);
    IF $1 IS NOT NULL AND NOT (vector_norm($1) > 0 AND vector_norm($1) < 'Infinity'::double precision) THEN
        RAISE EXCEPTION 'demographic must be a vector with a finite, non-zero length (NULL for popularity)'
            USING ERRCODE = '22023', COLUMN = 'demographic';
    END IF;
    IF $1 IS NOT NULL AND v_content IS NOT NULL THEN
        SELECT m.dimension INTO v_dim FROM rec.embedding_models m WHERE m.space_id = v_content;
        IF vector_dims($1) <> v_dim THEN
            RAISE EXCEPTION 'demographic vector has dimension % but the active content space % has dimension %',
                vector_dims($1), v_content, v_dim USING ERRCODE = '22023', COLUMN = 'demographic';
        END IF;
    END IF;
    SELECT * INTO v_def FROM rec.retrieval_defaults d WHERE d.user_type = 'cold';
    IF v_strategy IS NULL OR v_strategy = 'taste' THEN
        v_strategy := coalesce(v_def.strategy, 'neighbors_vote');
    END IF;
    RETURN QUERY SELECT * FROM rec._recommend_cold($1, NULL, $2, '{}'::text[], $4, $5, $6, v_strategy,
                                                   coalesce($7, v_def.popularity_weight, 0),
                                                   coalesce(v_def.neighbors, 100));
END
$fn$""",
)

# ----- downgrade: what 0004 made --------------------------------------------------------------------------
old_rec_limits = PGFunction(
    schema="rec",
    signature="limits(OUT max_k integer, OUT min_year integer, OUT max_year integer, OUT max_genre_length integer)",
    definition=r"""returns record
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT 1000, 0, 3000, 200
$fn$""",
)

old_rec__check_request = PGFunction(
    schema="rec",
    signature="_check_request(p_k integer, p_genres text[], p_min_year integer, p_max_year integer, p_strategy text)",
    definition=r"""returns void
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_limit record := rec.limits();
BEGIN
    IF p_k IS NULL OR p_k < 1 OR p_k > v_limit.max_k THEN
        RAISE EXCEPTION 'k must be between 1 and %, got %', v_limit.max_k, coalesce(p_k::text, 'NULL')
            USING ERRCODE = '22023', COLUMN = 'k';
    END IF;
    IF p_genres IS NOT NULL THEN
        IF cardinality(p_genres) = 0 OR array_ndims(p_genres) <> 1 THEN
            RAISE EXCEPTION 'genres must be a non-empty one-dimensional list of genre names (NULL for no filter)'
                USING ERRCODE = '22023', COLUMN = 'genres';
        END IF;
        IF EXISTS (SELECT 1 FROM unnest(p_genres) g
                   WHERE g IS NULL OR btrim(g) = '' OR length(g) > v_limit.max_genre_length) THEN
            RAISE EXCEPTION 'genres contains an empty, NULL or over-long genre name\: %', p_genres
                USING ERRCODE = '22023', COLUMN = 'genres';
        END IF;
    END IF;
    IF p_min_year IS NOT NULL AND (p_min_year < v_limit.min_year OR p_min_year > v_limit.max_year) THEN
        RAISE EXCEPTION 'min_year must be between % and %, got %', v_limit.min_year, v_limit.max_year, p_min_year
            USING ERRCODE = '22023', COLUMN = 'min_year';
    END IF;
    IF p_max_year IS NOT NULL AND (p_max_year < v_limit.min_year OR p_max_year > v_limit.max_year) THEN
        RAISE EXCEPTION 'max_year must be between % and %, got %', v_limit.min_year, v_limit.max_year, p_max_year
            USING ERRCODE = '22023', COLUMN = 'max_year';
    END IF;
    IF p_min_year > p_max_year THEN
        RAISE EXCEPTION 'min_year (%) is greater than max_year (%)', p_min_year, p_max_year
            USING ERRCODE = '22023', COLUMN = 'min_year';
    END IF;
    IF p_strategy IS NOT NULL AND NOT EXISTS (SELECT 1 FROM rec.strategies s WHERE s.name = p_strategy) THEN
        RAISE EXCEPTION 'strategy must be one of %; got %',
            (SELECT string_agg(s.name, ', ' ORDER BY s.position) FROM rec.strategies s), quote_literal(p_strategy)
            USING ERRCODE = '22023', COLUMN = 'strategy';
    END IF;
END
$fn$""",
)

old_rec_recommend_for_vector = PGFunction(
    schema="rec",
    signature="recommend_for_vector(query vector, k integer DEFAULT 10, genres text[] DEFAULT NULL, min_year integer DEFAULT NULL, max_year integer DEFAULT NULL, space text DEFAULT 'content', exclude_user text DEFAULT NULL)",
    definition=r"""returns TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
DECLARE
    v_space integer;
    v_seen text[] := '{}';
BEGIN
    PERFORM rec._check_request($2, $3, $4, $5, NULL);
    IF $6 IS NULL OR $6 NOT IN ('content', 'collaborative') THEN
        RAISE EXCEPTION 'space must be content or collaborative, got %', quote_nullable($6)
            USING ERRCODE = '22023', COLUMN = 'space';
    END IF;
    v_space := rec.active_space_id($6);
    IF v_space IS NULL THEN
        RAISE EXCEPTION 'no active % embedding space', $6 USING ERRCODE = '22023', COLUMN = 'space';
    END IF;
    IF $7 IS NOT NULL THEN
        SELECT coalesce(array_agg(DISTINCT x.item_id), '{}') INTO v_seen FROM rec.interactions x WHERE x.user_id = $7;
    END IF;
    RETURN QUERY SELECT * FROM rec._rank_by_vector(v_space, $1, $2, v_seen, $3, $4, $5, 0, 'vector');
END
$fn$""",
)

old_rec_recommend_for_demographic_vector = PGFunction(
    schema="rec",
    signature="recommend_for_demographic_vector(demographic vector, k integer DEFAULT 10, strategy text DEFAULT NULL, genres text[] DEFAULT NULL, min_year integer DEFAULT NULL, max_year integer DEFAULT NULL, popularity_weight double precision DEFAULT NULL)",
    definition=r"""returns TABLE(rank integer, item_id text, title text, score double precision, source text)
LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
DECLARE
    v_strategy text := $3;
    v_content integer := rec.active_space_id('content');
    v_dim integer;
    v_def rec.retrieval_defaults;
BEGIN
    PERFORM rec._check_request($2, $4, $5, $6, v_strategy);
    PERFORM rec._check_weight($7);
    IF $1 IS NOT NULL AND v_content IS NOT NULL THEN
        SELECT m.dimension INTO v_dim FROM rec.embedding_models m WHERE m.space_id = v_content;
        IF vector_dims($1) <> v_dim THEN
            RAISE EXCEPTION 'demographic vector has dimension % but the active content space % has dimension %',
                vector_dims($1), v_content, v_dim USING ERRCODE = '22023', COLUMN = 'demographic';
        END IF;
    END IF;
    SELECT * INTO v_def FROM rec.retrieval_defaults d WHERE d.user_type = 'cold';
    IF v_strategy IS NULL OR v_strategy = 'taste' THEN
        v_strategy := coalesce(v_def.strategy, 'neighbors_vote');
    END IF;
    RETURN QUERY SELECT * FROM rec._recommend_cold($1, NULL, $2, '{}'::text[], $4, $5, $6, v_strategy,
                                                   coalesce($7, v_def.popularity_weight, 0),
                                                   coalesce(v_def.neighbors, 100));
END
$fn$""",
)


def upgrade() -> None:
    for name, table, condition in CHECKS:
        op.create_check_constraint(name, table, condition, schema="rec")
    op.drop_entity(old_rec_limits)
    op.create_entity(rec_limits)
    op.execute("GRANT EXECUTE ON FUNCTION rec.limits() TO rec_reader")
    op.replace_entity(rec__check_request)
    op.replace_entity(rec_recommend_for_vector)
    op.replace_entity(rec_recommend_for_demographic_vector)
    op.execute(PRIVATE_DATABASE)


def downgrade() -> None:
    op.execute(PUBLIC_DATABASE)
    op.replace_entity(old_rec_recommend_for_demographic_vector)
    op.replace_entity(old_rec_recommend_for_vector)
    op.replace_entity(old_rec__check_request)
    op.drop_entity(rec_limits)
    op.create_entity(old_rec_limits)
    op.execute("GRANT EXECUTE ON FUNCTION rec.limits() TO rec_reader")
    for name, table, _ in reversed(CHECKS):
        op.drop_constraint(name, table, schema="rec", type_="check")
