-- _apply_retention: keeps the package's own history bounded ([retention] in the mapping).
-- Every purge that takes the purge lock calls it first (runner and procedure alike), so it
-- applies whether the purge then succeeds, fails or is refused; a skipped purge, which did
-- not get the lock, touches nothing.
CREATE OR REPLACE FUNCTION {{ schema|ident }}."_apply_retention"()
RETURNS TABLE ("runs_deleted" bigint, "purged_deleted" bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    v_purged bigint;
    v_runs bigint;
BEGIN
    DELETE FROM {{ schema|ident }}."purged"
    WHERE "purged_at" < now() - {{ retention.purged|literal }}::interval;
    GET DIAGNOSTICS v_purged = ROW_COUNT;
    -- A deleted run takes its archived rows with it (purged has no foreign key to runs:
    -- migration adhoc_gc_0002).
    WITH "old_runs" AS (
        DELETE FROM {{ schema|ident }}."runs"
        WHERE "started_at" < now() - {{ retention.runs|literal }}::interval
          AND "status" <> 'running'
        RETURNING "id"
    ), "their_archive" AS (
        DELETE FROM {{ schema|ident }}."purged"
        WHERE "run_id" IN (SELECT "id" FROM "old_runs")
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM "old_runs"), v_purged + (SELECT count(*) FROM "their_archive")
    INTO v_runs, v_purged;
    RETURN QUERY SELECT v_runs, v_purged;
END;
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."_apply_retention"() FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."_apply_retention"() IS
    'adhoc-gc internal: deletes run records and archived rows older than the [retention] settings.';
