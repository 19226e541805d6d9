{% from "macros/rules.sql" import is_adhoc with context %}
-- _guard_refusal: why this run must not delete anything, or NULL to go ahead. A run whose
-- candidates exceed [guard] max_customers_per_run, or max_fraction_of_adhoc of all ad-hoc
-- customers, is refused as a whole: that many at once smells of a wrong mapping or policy.
-- p_force skips the check (adhoc-gc purge --force).
CREATE OR REPLACE FUNCTION {{ schema|ident }}."_guard_refusal"(p_force boolean)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
{% if guard.max_customers_per_run is none and guard.max_fraction_of_adhoc is none %}
BEGIN
    -- No cap configured in [guard].
    RETURN NULL;
END;
{% else %}
-- Parameters and variables are qualified (_guard_refusal.name): an application column of the same
-- name in a statement would otherwise be taken for the variable, or the variable for it.
<<_guard_refusal>>
DECLARE
    v_candidates bigint;
{% if guard.max_fraction_of_adhoc is not none %}
    v_adhoc bigint;
{% endif %}
BEGIN
    IF _guard_refusal.p_force THEN
        RETURN NULL;
    END IF;
    SELECT count(*) INTO _guard_refusal.v_candidates FROM {{ schema|ident }}."candidates";
{% if guard.max_customers_per_run is not none %}
    IF _guard_refusal.v_candidates > {{ guard.max_customers_per_run|int }} THEN
        RETURN format('%s candidates exceed [guard] max_customers_per_run = %s; check the mapping and policy, then run with --force (or CALL purge(force => true))',
                      _guard_refusal.v_candidates, {{ guard.max_customers_per_run|int }});
    END IF;
{% endif %}
{% if guard.max_fraction_of_adhoc is not none %}
    SELECT count(*) INTO _guard_refusal.v_adhoc FROM {{ customer.table|table }} AS "c" WHERE {{ is_adhoc('"c"') }};
    IF _guard_refusal.v_candidates > _guard_refusal.v_adhoc * {{ guard.max_fraction_of_adhoc|float }} THEN
        RETURN format('%s candidates are more than %s of the %s ad-hoc customers ([guard] max_fraction_of_adhoc); check the mapping and policy, then run with --force (or CALL purge(force => true))',
                      _guard_refusal.v_candidates, {{ guard.max_fraction_of_adhoc|float }}, _guard_refusal.v_adhoc);
    END IF;
{% endif %}
    RETURN NULL;
END;
{% endif %}
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."_guard_refusal"(boolean) FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."_guard_refusal"(boolean) IS
    'adhoc-gc internal: the reason a purge run must be refused under [guard], or NULL.';
