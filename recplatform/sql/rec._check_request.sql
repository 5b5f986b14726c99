-- Argument checks shared by the public functions: the limits come from rec.limits(), the strategy names from
-- rec.strategies. Errors are SQLSTATE 22023 with the argument's name in the COLUMN field.
CREATE OR REPLACE FUNCTION rec._check_request(p_k integer, p_genres text[], p_min_year integer, p_max_year integer,
                                              p_strategy text) RETURNS void
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
            RAISE EXCEPTION 'genres contains an empty, NULL or over-long genre name: %', p_genres
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
$fn$;
