-- _record_unstarted_run: a purge that did not start still leaves a row in runs, so its
-- schedule can be seen to have fired: 'skipped' (another purge holds the lock) or
-- 'refused' (a guard rail or the foreign-key audit stopped it), with the reason.
CREATE OR REPLACE FUNCTION {{ schema|ident }}."_record_unstarted_run"(
    p_trigger text,
    p_batch_size integer,
    p_status text,
    p_reason text
)
RETURNS bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    INSERT INTO {{ schema|ident }}."runs"
        ("trigger", "batch_size", "status", "finished_at", "error", "mapping_fingerprint")
    VALUES (p_trigger, p_batch_size, p_status, clock_timestamp(), p_reason, {{ fingerprint|literal }})
    RETURNING "id";
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."_record_unstarted_run"(text, integer, text, text) FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."_record_unstarted_run"(text, integer, text, text) IS
    'adhoc-gc internal: records a purge that was skipped or refused, with the reason.';
