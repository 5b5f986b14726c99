-- Apply a stored linear map: out[j] = <W_j, v> + b_j.
CREATE OR REPLACE FUNCTION rec.apply_map(p_map_id integer, p_v vector) RETURNS vector
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_src integer;
    v_out vector;
BEGIN
    SELECT m.source_dimension INTO v_src FROM rec.coldstart_maps m WHERE m.map_id = p_map_id;
    IF v_src IS NULL THEN
        RAISE EXCEPTION 'unknown cold-start map %', p_map_id USING ERRCODE = '22023', COLUMN = 'map_id';
    END IF;
    IF vector_dims(p_v) <> v_src THEN
        RAISE EXCEPTION 'vector has dimension % but map % expects dimension %', vector_dims(p_v), p_map_id, v_src
            USING ERRCODE = '22023', COLUMN = 'vector';
    END IF;
    SELECT array_agg((-(r.weights <#> p_v)) + r.bias ORDER BY r.out_index)::vector INTO v_out
    FROM rec.coldstart_map_rows r WHERE r.map_id = p_map_id;
    RETURN v_out;
END
$fn$;
