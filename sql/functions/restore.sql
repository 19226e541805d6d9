-- restore: puts archived stacks back, with their original keys, in one transaction: all
-- stacks of run p_run_id, or the stack of customer p_customer_id (or both filters at once).
-- Refuses the whole restore if any key is taken again. The archive rows are marked
-- restored_at, so a stack is not restored twice.
CREATE OR REPLACE FUNCTION {{ schema|ident }}."restore"(p_run_id bigint, p_customer_id text)
RETURNS TABLE ("stacks" bigint, "customers" bigint, "locations" bigint, "contacts" bigint, "owned_rows" bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
-- Parameters and variables are qualified (restore.name): an application column of the same
-- name in a statement would otherwise be taken for the variable, or the variable for it.
<<restore>>
DECLARE
    v_stacks bigint;
    v_customers bigint;
    v_locations bigint;
    v_contacts bigint;
    v_owned bigint := 0;
    v_message text;
    v_detail text;
BEGIN
    IF restore.p_run_id IS NULL AND restore.p_customer_id IS NULL THEN
        RAISE EXCEPTION 'adhoc-gc: restore needs a run id or a customer key' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    CREATE TEMPORARY TABLE "adhoc_gc_restoring" ON COMMIT DROP AS
    SELECT "p".*
    FROM {{ schema|ident }}."purged" AS "p"
    WHERE (restore.p_run_id IS NULL OR "p"."run_id" = restore.p_run_id)
      AND (restore.p_customer_id IS NULL OR "p"."customer_id" = restore.p_customer_id)
      AND "p"."restored_at" IS NULL;
    SELECT count(*) INTO restore.v_stacks FROM pg_temp."adhoc_gc_restoring";
    IF restore.v_stacks = 0 THEN
        RAISE EXCEPTION 'adhoc-gc: nothing to restore for run %, customer % (never archived, already restored, or past [retention])',
            coalesce(restore.p_run_id::text, 'any'), coalesce(restore.p_customer_id, 'any')
            USING ERRCODE = 'no_data_found';
    END IF;
    BEGIN
        -- Parents first, so the foreign keys hold at every step.
        restore.v_customers := {{ schema|ident }}."_restore_rows"({{ (customer.table|table)|literal }}::regclass,
            (SELECT json_agg("r"."customer") FROM pg_temp."adhoc_gc_restoring" AS "r"));
        restore.v_locations := {{ schema|ident }}."_restore_rows"({{ (location.table|table)|literal }}::regclass,
            (SELECT json_agg("row") FROM pg_temp."adhoc_gc_restoring" AS "r", json_array_elements("r"."locations") AS "row"));
        restore.v_contacts := {{ schema|ident }}."_restore_rows"({{ (contact.table|table)|literal }}::regclass,
            (SELECT json_agg("row") FROM pg_temp."adhoc_gc_restoring" AS "r", json_array_elements("r"."contacts") AS "row"));
{% for owned_table in owned %}
        restore.v_owned := restore.v_owned + {{ schema|ident }}."_restore_rows"({{ (owned_table.table|table)|literal }}::regclass,
            (SELECT json_agg("row") FROM pg_temp."adhoc_gc_restoring" AS "r",
                    json_array_elements("r"."owned" -> {{ owned_table.name|literal }}) AS "row"));
{% endfor %}
    EXCEPTION WHEN unique_violation THEN
        GET STACKED DIAGNOSTICS restore.v_message = MESSAGE_TEXT, restore.v_detail = PG_EXCEPTION_DETAIL;
        RAISE EXCEPTION 'adhoc-gc: cannot restore: a key is taken again (%: %); nothing was restored',
            restore.v_message, restore.v_detail USING ERRCODE = 'unique_violation';
    END;
    UPDATE {{ schema|ident }}."purged" AS "p"
    SET "restored_at" = now()
    FROM pg_temp."adhoc_gc_restoring" AS "r"
    WHERE "p"."run_id" = "r"."run_id" AND "p"."customer_id" = "r"."customer_id" AND "p"."restored_at" IS NULL;
    DROP TABLE pg_temp."adhoc_gc_restoring";
    RETURN QUERY SELECT restore.v_stacks, restore.v_customers, restore.v_locations, restore.v_contacts, restore.v_owned;
END;
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."restore"(bigint, text) FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."restore"(bigint, text) IS
    'adhoc-gc: puts archived stacks back with their original keys (a run, a customer, or both filters), all or nothing; refuses if a key is taken again.';
