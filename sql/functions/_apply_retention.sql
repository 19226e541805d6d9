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
    -- Archived rows of a deleted run go with it (ON DELETE CASCADE).
    DELETE FROM {{ schema|ident }}."runs"
    WHERE "started_at" < now() - {{ retention.runs|literal }}::interval
      AND "status" <> 'running';
    GET DIAGNOSTICS v_runs = ROW_COUNT;
    RETURN QUERY SELECT v_runs, v_purged;
END;
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."_apply_retention"() FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."_apply_retention"() IS
    'adhoc-gc internal: deletes run records and archived rows older than the [retention] settings.';
