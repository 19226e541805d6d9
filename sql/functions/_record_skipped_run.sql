-- _record_skipped_run: a purge that did not run (another one holds the lock) still leaves
-- a row in runs, so its schedule can be seen to have fired.
CREATE OR REPLACE FUNCTION {{ schema|ident }}."_record_skipped_run"(
    p_trigger text,
    p_batch_size integer,
    p_reason text
)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $function$
    INSERT INTO {{ schema|ident }}."runs"
        ("trigger", "batch_size", "status", "finished_at", "error", "mapping_fingerprint")
    VALUES (p_trigger, p_batch_size, 'skipped', clock_timestamp(), p_reason, {{ fingerprint|literal }})
    RETURNING "id";
$function$;

COMMENT ON FUNCTION {{ schema|ident }}."_record_skipped_run"(text, integer, text) IS
    'adhoc-gc internal: records a purge that was skipped, with the reason.';
