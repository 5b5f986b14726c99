-- The limits of a request, in one place: rec._check_request enforces them for every entry point, and the
-- Python client reads them once per database (recplatform.retrieval.limits) for its early checks.
CREATE OR REPLACE FUNCTION rec.limits(OUT max_k integer, OUT min_year integer, OUT max_year integer,
                                      OUT max_genre_length integer, OUT max_genres integer)
RETURNS record
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT 1000, 0, 3000, 200, 100
$fn$;
