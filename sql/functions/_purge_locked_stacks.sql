{% from "macros/rules.sql" import stack_is_eligible with context %}
{% from "macros/delete_stacks.sql" import delete_stacks with context %}
{# The rows of an [[owned]] table that belong to the stacks in the given location and
   contact CTEs, with the customer key each belongs to (alias "o" for FOR UPDATE OF). #}
{% macro owned_rows(owned_table, locations_cte, contacts_cte) -%}
SELECT {{ ('"o".' ~ (owned_table.column|ident)) if owned_table.references == "customer" else '"p"."customer_key"' }} AS "customer_key"
        FROM {{ owned_table.table|table }} AS "o"
{% if owned_table.references == "location" %}
        JOIN {{ locations_cte|ident }} AS "p" ON "o".{{ owned_table.column|ident }} = "p"."location_key"
{% elif owned_table.references == "contact" %}
        JOIN {{ contacts_cte|ident }} AS "p" ON "o".{{ owned_table.column|ident }} = "p"."contact_key"
{% else %}
        WHERE "o".{{ owned_table.column|ident }} = ANY (_purge_locked_stacks.p_customer_keys)
{% endif %}
{%- endmacro %}
{# The CTEs that lock the stacks' rows (locked_*, SKIP LOCKED) and list the rows there are
   (stack_*), both per customer key. Every locked row is also listed: it was found by the
   same scan of the same snapshot. #}
{% macro lock_stack_rows() -%}
"locked_locations" AS (
    SELECT "l".{{ location.key|ident }} AS "location_key", "l".{{ location.customer|ident }} AS "customer_key"
    FROM {{ location.table|table }} AS "l"
    WHERE "l".{{ location.customer|ident }} = ANY (_purge_locked_stacks.p_customer_keys)
    FOR UPDATE OF "l" SKIP LOCKED
), "locked_contacts" AS (
    SELECT "ct".{{ contact.key|ident }} AS "contact_key", "ll"."customer_key"
    FROM {{ contact.table|table }} AS "ct"
    JOIN "locked_locations" AS "ll" ON "ct".{{ contact.location|ident }} = "ll"."location_key"
    FOR UPDATE OF "ct" SKIP LOCKED
{% for owned_table in owned %}
), "locked_owned_{{ loop.index }}" AS (
    {{ owned_rows(owned_table, "locked_locations", "locked_contacts") }}
    FOR UPDATE OF "o" SKIP LOCKED
{% endfor %}
), "stack_locations" AS (
    SELECT "l".{{ location.key|ident }} AS "location_key", "l".{{ location.customer|ident }} AS "customer_key"
    FROM {{ location.table|table }} AS "l"
    WHERE "l".{{ location.customer|ident }} = ANY (_purge_locked_stacks.p_customer_keys)
), "stack_contacts" AS (
    SELECT "ct".{{ contact.key|ident }} AS "contact_key", "sl"."customer_key"
    FROM {{ contact.table|table }} AS "ct"
    JOIN "stack_locations" AS "sl" ON "ct".{{ contact.location|ident }} = "sl"."location_key"
{% for owned_table in owned %}
), "stack_owned_{{ loop.index }}" AS (
    {{ owned_rows(owned_table, "stack_locations", "stack_contacts") }}
{% endfor %}
)
{%- endmacro %}
{% set batch_of_complete_stacks %}
SELECT "c".{{ customer.key|ident }} AS "customer_key"
FROM {{ customer.table|table }} AS "c"
WHERE "c".{{ customer.key|ident }} = ANY (_purge_locked_stacks.v_complete)
  AND {{ stack_is_eligible('"c"') | trim | indent(2) }}
{%- endset %}
-- _purge_locked_stacks: purge_batch's way round rows the application holds. p_customer_keys
-- are customers the calling statement has locked, in key order. Locks their locations,
-- contacts and owned rows (skipping rows others hold: such a stack is left for a later run),
-- then deletes the complete stacks that still pass every rule, archives and counts them.
-- Polymorphic in the key type, so that the mapping's key types need not be known to render.
CREATE OR REPLACE FUNCTION {{ schema|ident }}."_purge_locked_stacks"(
    p_run_id bigint,
    p_archive boolean,
    p_customer_keys anyarray
)
RETURNS TABLE (
    "next_after_key" text,
    "done" boolean,
    "examined" integer,
    "customers_deleted" integer,
    "locations_deleted" integer,
    "contacts_deleted" integer
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- As purge_batch: the archive's grouping stays in memory.
SET work_mem = '32MB'
AS $function$
-- The output columns share names with runs' columns; inside the body they mean the columns.
#variable_conflict use_column
-- Parameters and variables are qualified (_purge_locked_stacks.name): an application column of the same
-- name in a statement would otherwise be taken for the variable, or the variable for it.
<<_purge_locked_stacks>>
DECLARE
    v_complete p_customer_keys%TYPE;
    v_all_locked boolean;
    v_last_key text;
    v_examined integer;
    v_customers integer := 0;
    v_locations integer := 0;
    v_contacts integer := 0;
BEGIN
    IF cardinality(_purge_locked_stacks.p_customer_keys) = 0 THEN
        RETURN QUERY SELECT NULL::text, true, 0, 0, 0, 0;
        RETURN;
    END IF;

    -- Lock every other row of the stacks. A stack counts as complete only when every one
    -- of its rows is locked by us. Usually nobody holds any of them: then as many rows are
    -- locked as there are, and every stack is complete. The counts read each locking CTE
    -- to the end, so no lock is left untaken by an early exit.
    WITH {{ lock_stack_rows() | indent(4) }}
    SELECT (SELECT count(*) FROM "locked_locations") = (SELECT count(*) FROM "stack_locations")
           AND (SELECT count(*) FROM "locked_contacts") = (SELECT count(*) FROM "stack_contacts")
{% for owned_table in owned %}
           AND (SELECT count(*) FROM "locked_owned_{{ loop.index }}") = (SELECT count(*) FROM "stack_owned_{{ loop.index }}")
{% endfor %}
    INTO _purge_locked_stacks.v_all_locked;

    IF _purge_locked_stacks.v_all_locked THEN
        _purge_locked_stacks.v_complete := _purge_locked_stacks.p_customer_keys;
    ELSE
        -- Someone holds a row of some stack: find which stacks are complete, per customer and
        -- part, rows locked against rows there are. Locking again is a no-op for the rows we
        -- hold already; GROUP BY reads each locking CTE to the end.
        WITH {{ lock_stack_rows() | indent(8) }},
        "locked_counts" AS (
            SELECT "customer_key", 'location' AS "part", count(*) AS "n" FROM "locked_locations" GROUP BY 1
            UNION ALL
            SELECT "customer_key", 'contact', count(*) FROM "locked_contacts" GROUP BY 1
{% for owned_table in owned %}
            UNION ALL
            SELECT "customer_key", 'owned {{ loop.index }}', count(*) FROM "locked_owned_{{ loop.index }}" GROUP BY 1
{% endfor %}
        ), "stack_counts" AS (
            SELECT "customer_key", 'location' AS "part", count(*) AS "n" FROM "stack_locations" GROUP BY 1
            UNION ALL
            SELECT "customer_key", 'contact', count(*) FROM "stack_contacts" GROUP BY 1
{% for owned_table in owned %}
            UNION ALL
            SELECT "customer_key", 'owned {{ loop.index }}', count(*) FROM "stack_owned_{{ loop.index }}" GROUP BY 1
{% endfor %}
        )
        SELECT coalesce(array_agg("k"."customer_key" ORDER BY "k"."customer_key"), _purge_locked_stacks.p_customer_keys[0:0]) INTO _purge_locked_stacks.v_complete
        FROM unnest(_purge_locked_stacks.p_customer_keys) AS "k"("customer_key")
        WHERE NOT EXISTS (
            -- a part of this stack with a row that exists but is not locked by us
            SELECT 1
            FROM "stack_counts" AS "s"
            LEFT JOIN "locked_counts" AS "held"
                ON "held"."customer_key" = "s"."customer_key" AND "held"."part" = "s"."part"
            WHERE "s"."customer_key" = "k"."customer_key"
              AND "held"."n" IS DISTINCT FROM "s"."n"
        );
    END IF;

    -- Delete the complete stacks, every rule checked again inside the DELETE statement.
    {{ delete_stacks(batch_of_complete_stacks, "v_last_key, v_examined, v_customers, v_locations, v_contacts", "_purge_locked_stacks") | indent(4) }}

    RETURN QUERY SELECT _purge_locked_stacks.p_customer_keys[cardinality(_purge_locked_stacks.p_customer_keys)]::text, false,
                        cardinality(_purge_locked_stacks.p_customer_keys), _purge_locked_stacks.v_customers, _purge_locked_stacks.v_locations, _purge_locked_stacks.v_contacts;
END;
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."_purge_locked_stacks"(bigint, boolean, anyarray) FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."_purge_locked_stacks"(bigint, boolean, anyarray) IS
    'adhoc-gc internal: locks and deletes the stacks of customers locked by purge_batch. Do not call directly.';
