CREATE OR REPLACE FUNCTION rec._check_weight(p_weight double precision, p_name text DEFAULT 'popularity_weight') RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
    IF p_weight IS NOT NULL AND (p_weight < 0 OR p_weight > 1 OR p_weight = 'NaN') THEN
        RAISE EXCEPTION '% must be between 0 and 1, got %', p_name, p_weight
            USING ERRCODE = '22023', COLUMN = p_name;
    END IF;
END
$fn$;
