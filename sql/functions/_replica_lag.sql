-- _replica_lag: the largest replay lag of any streaming standby ('0' without standbys), or
-- NULL when this function's owner may not see it (pg_stat_replication shows lag columns
-- only to superusers and members of pg_read_all_stats, e.g. through pg_monitor).
CREATE OR REPLACE FUNCTION {{ schema|ident }}."_replica_lag"()
RETURNS interval
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT CASE
        WHEN (SELECT "rolsuper" FROM pg_roles WHERE "rolname" = current_user)
          OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')
        -- replay_lag keeps growing while a standby falls behind; NULL once it has caught up
        THEN coalesce((SELECT max("replay_lag") FROM pg_stat_replication), interval '0')
    END;
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."_replica_lag"() FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."_replica_lag"() IS
    'adhoc-gc internal: the largest standby replay lag, or NULL when the owner lacks pg_read_all_stats.';
