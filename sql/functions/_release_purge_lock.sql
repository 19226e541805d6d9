-- _release_purge_lock: gives back the lock _try_purge_lock took in this session.
CREATE OR REPLACE FUNCTION {{ schema|ident }}."_release_purge_lock"()
RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT pg_advisory_unlock(1633970275, hashtext({{ schema|literal }}));
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."_release_purge_lock"() FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."_release_purge_lock"() IS
    'adhoc-gc internal: releases the one-purge-at-a-time advisory lock held by this session.';
