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
                                                     'prompt', 'popularity') THEN
        RAISE EXCEPTION 'strategy must be one of taste, neighbors_vote, neighbors_taste, learned_map, prompt, popularity; got %',
            quote_literal(p_strategy) USING ERRCODE = '22023', COLUMN = 'strategy';
    END IF;
END
$fn$;
