-- _finish_run: closes a run with its final status and, on failure, the error text.
CREATE OR REPLACE FUNCTION {{ schema|ident }}."_finish_run"(
    p_run_id bigint,
    p_status text,
    p_error text
)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    UPDATE {{ schema|ident }}."runs"
    SET "status" = p_status, "finished_at" = clock_timestamp(), "error" = p_error
    WHERE "id" = p_run_id;
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."_finish_run"(bigint, text, text) FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."_finish_run"(bigint, text, text) IS
    'adhoc-gc internal: closes a purge run with its final status.';
