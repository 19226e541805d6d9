-- _try_purge_lock: one purge at a time per package schema, whoever starts it (runner,
-- pg_cron or a person). A session-level advisory lock: it survives the per-batch COMMITs
-- and is released when the session ends, so a crashed purge never keeps it.
CREATE OR REPLACE FUNCTION {{ schema|ident }}."_try_purge_lock"()
RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    -- First key: 'adhc' in ASCII, so the lock is told apart from the application's own.
    SELECT pg_try_advisory_lock(1633970275, hashtext({{ schema|literal }}));
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."_try_purge_lock"() FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."_try_purge_lock"() IS
    'adhoc-gc internal: takes the one-purge-at-a-time advisory lock for this session, if free.';
