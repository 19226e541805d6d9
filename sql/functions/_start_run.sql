-- _start_run: records a new purge run as running and returns its id. Call it holding the
-- purge lock: any other run still marked running then belongs to a session that died
-- without closing it, and is marked abandoned. The caller commits before the first batch,
-- so a crash leaves a trace.
CREATE OR REPLACE FUNCTION {{ schema|ident }}."_start_run"(
    p_trigger text,
    p_batch_size integer,
    p_max_batches integer,
    p_max_runtime interval,
    p_archive boolean
)
RETURNS bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    UPDATE {{ schema|ident }}."runs"
    SET "status" = 'abandoned',
        "finished_at" = clock_timestamp(),
        "error" = 'the session running it ended before the run finished'
    WHERE "status" = 'running';

    INSERT INTO {{ schema|ident }}."runs"
        ("trigger", "batch_size", "max_batches", "max_runtime", "archive", "mapping_fingerprint")
    VALUES (p_trigger, p_batch_size, p_max_batches, p_max_runtime, p_archive, {{ fingerprint|literal }})
    RETURNING "id";
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."_start_run"(text, integer, integer, interval, boolean) FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."_start_run"(text, integer, integer, interval, boolean) IS
    'adhoc-gc internal: records a new purge run (marking runs of dead sessions abandoned) and returns its id.';
