-- deployed_mapping: the fingerprint of the mapping these objects were rendered from, so a
-- runner holding a different mapping can refuse to purge with it. Open to every role
-- (PUBLIC keeps EXECUTE): it tells nothing about customers.
CREATE OR REPLACE FUNCTION {{ schema|ident }}."deployed_mapping"()
RETURNS TABLE ("fingerprint" text, "package_version" text)
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT {{ fingerprint|literal }}::text, {{ version|literal }}::text;
$function$;

COMMENT ON FUNCTION {{ schema|ident }}."deployed_mapping"() IS
    'adhoc-gc: fingerprint of the mapping the deployed views and functions were rendered from.';
