{% from "macros/audit.sql" import unmapped_foreign_keys with context %}
-- _unmapped_foreign_keys: the foreign-key audit (sql/macros/audit.sql). Every purge refuses
-- to start while this returns a row.
CREATE OR REPLACE FUNCTION {{ schema|ident }}."_unmapped_foreign_keys"()
RETURNS TABLE (
    "constraint_name" text,
    "schema" text,
    "table" text,
    "columns" text[],
    "references" text,
    "target_schema" text,
    "target_table" text,
    "on_delete" text
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
{{ unmapped_foreign_keys() }}
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."_unmapped_foreign_keys"() FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."_unmapped_foreign_keys"() IS
    'adhoc-gc internal: foreign keys pointing at the stack tables that the mapping neither maps as a blocker nor as owned.';
