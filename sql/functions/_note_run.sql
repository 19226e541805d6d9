-- _note_run: what the runner adapted along the way, recorded on its run: the target batch
-- duration, how many batches it retried smaller, how long it paused for replica lag.
CREATE OR REPLACE FUNCTION {{ schema|ident }}."_note_run"(
    p_run_id bigint,
    p_target_batch_seconds double precision,
    p_batch_retries integer,
    p_throttled_seconds double precision
)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    UPDATE {{ schema|ident }}."runs"
    SET "target_batch_seconds" = p_target_batch_seconds,
        "batch_retries" = p_batch_retries,
        "throttled_seconds" = p_throttled_seconds
    WHERE "id" = p_run_id;
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."_note_run"(bigint, double precision, integer, double precision) FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."_note_run"(bigint, double precision, integer, double precision) IS
    'adhoc-gc internal: records a run''s batch-size target, retries and replica-lag pauses.';
