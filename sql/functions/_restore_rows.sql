-- _restore_rows: inserts archived rows (a JSON array of to_json(row) objects) back into
-- p_table with their original keys. Columns are the table's current ones, less generated
-- columns; keys absent from the JSON (columns added since) get NULL.
CREATE OR REPLACE FUNCTION {{ schema|ident }}."_restore_rows"(p_table regclass, p_rows json)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    v_columns text;
    v_count bigint;
BEGIN
    IF p_rows IS NULL OR json_array_length(p_rows) = 0 THEN
        RETURN 0;
    END IF;
    SELECT string_agg(quote_ident("attname"), ', ' ORDER BY "attnum") INTO v_columns
    FROM pg_attribute
    WHERE "attrelid" = p_table AND "attnum" > 0 AND NOT "attisdropped" AND "attgenerated" = '';
    EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM json_populate_recordset(NULL::%s, $1)',
                   p_table, v_columns, v_columns, p_table)
        USING p_rows;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."_restore_rows"(regclass, json) FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."_restore_rows"(regclass, json) IS
    'adhoc-gc internal: puts archived rows back into their table with their original keys.';
