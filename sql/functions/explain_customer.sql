{% from "macros/rules.sql" import is_adhoc with context %}
-- explain_customer: whether a customer exists and was created ad hoc, for `adhoc-gc explain`
-- (the eligibility view has rows for ad-hoc customers only). SECURITY DEFINER so that an
-- analyst or operator needs no privilege on the customer table itself.
CREATE OR REPLACE FUNCTION {{ schema|ident }}."explain_customer"(p_customer_id text)
RETURNS TABLE ("customer_id" text, "adhoc" boolean, "adhoc_value" text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
-- Parameters and variables are qualified (explain_customer.name): an application column of the same
-- name in a statement would otherwise be taken for the variable, or the variable for it.
<<explain_customer>>
DECLARE
    -- Assigning the text converts it to the key's own type, so the lookup uses the key's index.
    v_key {{ customer.table|table }}.{{ customer.key|ident }}%TYPE := p_customer_id;
BEGIN
    RETURN QUERY
    SELECT "c".{{ customer.key|ident }}::text, {{ is_adhoc('"c"') }}, "c".{{ customer.adhoc|ident }}::text
    FROM {{ customer.table|table }} AS "c"
    WHERE "c".{{ customer.key|ident }} = explain_customer.v_key;
END;
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."explain_customer"(text) FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."explain_customer"(text) IS
    'adhoc-gc: whether the customer with this key exists and was created ad hoc (for adhoc-gc explain).';
