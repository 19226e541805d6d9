{% from "macros/rules.sql" import stack_is_eligible with context %}
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
        WHERE "o".{{ owned_table.column|ident }} = ANY (p_customer_keys)
{% endif %}
{%- endmacro %}
{# The CTEs that lock the stacks' rows (locked_*, SKIP LOCKED) and list the rows there are
   (stack_*), both per customer key. Every locked row is also listed: it was found by the
   same scan of the same snapshot. #}
{% macro lock_stack_rows() -%}
"locked_locations" AS (
    SELECT "l".{{ location.key|ident }} AS "location_key", "l".{{ location.customer|ident }} AS "customer_key"
    FROM {{ location.table|table }} AS "l"
    WHERE "l".{{ location.customer|ident }} = ANY (p_customer_keys)
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
    WHERE "l".{{ location.customer|ident }} = ANY (p_customer_keys)
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
-- _purge_locked_stacks: the second half of purge_batch. p_customer_keys are customers the
-- calling statement has locked, in key order. Locks their locations, contacts and owned rows
-- (skipping rows others hold: such a stack is left for a later run), then deletes the
-- complete stacks that still pass every rule under this statement's fresh snapshot,
-- archives and counts them. Polymorphic in the key type, so that the mapping's key types
-- need not be known to render.
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
AS $function$
-- The output columns share names with runs' columns; inside the body they mean the columns.
#variable_conflict use_column
DECLARE
    v_complete p_customer_keys%TYPE;
    v_all_locked boolean;
    v_customers integer := 0;
    v_locations integer := 0;
    v_contacts integer := 0;
BEGIN
    IF cardinality(p_customer_keys) = 0 THEN
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
    INTO v_all_locked;

    IF v_all_locked THEN
        v_complete := p_customer_keys;
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
        SELECT coalesce(array_agg("k"."customer_key" ORDER BY "k"."customer_key"), p_customer_keys[0:0]) INTO v_complete
        FROM unnest(p_customer_keys) AS "k"("customer_key")
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

    -- Delete, re-checking every rule: this statement's snapshot is newer than all our locks.
    WITH "batch" AS (
        SELECT "c".{{ customer.key|ident }} AS "customer_key"
        FROM {{ customer.table|table }} AS "c"
        WHERE "c".{{ customer.key|ident }} = ANY (v_complete)
          AND {{ stack_is_eligible('"c"') | trim | indent(10) }}
{% for owned_table in owned %}
    ), "deleted_owned_{{ loop.index }}" AS (
        DELETE FROM {{ owned_table.table|table }} AS "o"
{% if owned_table.references == "customer" %}
        USING "batch" AS "b"
        WHERE "o".{{ owned_table.column|ident }} = "b"."customer_key"
{% elif owned_table.references == "location" %}
        USING {{ location.table|table }} AS "l", "batch" AS "b"
        WHERE "o".{{ owned_table.column|ident }} = "l".{{ location.key|ident }}
          AND "l".{{ location.customer|ident }} = "b"."customer_key"
{% else %}
        USING {{ contact.table|table }} AS "ct", {{ location.table|table }} AS "l", "batch" AS "b"
        WHERE "o".{{ owned_table.column|ident }} = "ct".{{ contact.key|ident }}
          AND "ct".{{ contact.location|ident }} = "l".{{ location.key|ident }}
          AND "l".{{ location.customer|ident }} = "b"."customer_key"
{% endif %}
        RETURNING "b"."customer_key", CASE WHEN p_archive THEN to_json("o".*) END AS "row"
{% endfor %}
    ), "deleted_contacts" AS (
        DELETE FROM {{ contact.table|table }} AS "ct"
        USING {{ location.table|table }} AS "l", "batch" AS "b"
        WHERE "ct".{{ contact.location|ident }} = "l".{{ location.key|ident }}
          AND "l".{{ location.customer|ident }} = "b"."customer_key"
        RETURNING "b"."customer_key", CASE WHEN p_archive THEN to_json("ct".*) END AS "row"
    ), "deleted_locations" AS (
        DELETE FROM {{ location.table|table }} AS "l"
        USING "batch" AS "b"
        WHERE "l".{{ location.customer|ident }} = "b"."customer_key"
        RETURNING "b"."customer_key", CASE WHEN p_archive THEN to_json("l".*) END AS "row"
    ), "deleted_customers" AS (
        DELETE FROM {{ customer.table|table }} AS "c"
        USING "batch" AS "b"
        WHERE "c".{{ customer.key|ident }} = "b"."customer_key"
        RETURNING "b"."customer_key", CASE WHEN p_archive THEN to_json("c".*) END AS "row"
    ), "archived" AS (
        -- One GROUP BY over all the deleted rows: joining the RETURNING sets instead makes
        -- the planner (which expects one row from each) pick nested loops, quadratic in the
        -- batch size (bench/results: 24 of 30 ms at 500 stacks, seconds at 2000).
        INSERT INTO {{ schema|ident }}."purged" ("run_id", "customer_id", "customer", "locations", "contacts", "owned")
        SELECT p_run_id, "d"."customer_key"::text,
               (array_agg("d"."row") FILTER (WHERE "d"."part" = 'customer'))[1],
               coalesce(json_agg("d"."row") FILTER (WHERE "d"."part" = 'location'), '[]'::json),
               coalesce(json_agg("d"."row") FILTER (WHERE "d"."part" = 'contact'), '[]'::json),
{% if owned %}
               json_build_object(
{% for owned_table in owned %}
                   {{ owned_table.name|literal }},
                   coalesce(json_agg("d"."row") FILTER (WHERE "d"."part" = 'owned {{ loop.index }}'), '[]'::json){{ "," if not loop.last }}
{% endfor %}
               )
{% else %}
               '{}'::json
{% endif %}
        FROM (
            SELECT "customer_key", 'customer' AS "part", "row" FROM "deleted_customers"
            UNION ALL
            SELECT "customer_key", 'location', "row" FROM "deleted_locations"
            UNION ALL
            SELECT "customer_key", 'contact', "row" FROM "deleted_contacts"
{% for owned_table in owned %}
            UNION ALL
            SELECT "customer_key", 'owned {{ loop.index }}', "row" FROM "deleted_owned_{{ loop.index }}"
{% endfor %}
        ) AS "d"
        WHERE p_archive
        GROUP BY "d"."customer_key"
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM "deleted_customers"),
           (SELECT count(*) FROM "deleted_locations"),
           (SELECT count(*) FROM "deleted_contacts")
    INTO v_customers, v_locations, v_contacts;

    UPDATE {{ schema|ident }}."runs"
    SET "batches" = "batches" + 1,
        "customers_deleted" = "customers_deleted" + v_customers,
        "locations_deleted" = "locations_deleted" + v_locations,
        "contacts_deleted" = "contacts_deleted" + v_contacts,
        "last_key" = p_customer_keys[cardinality(p_customer_keys)]::text
    WHERE "id" = p_run_id;

    RETURN QUERY SELECT p_customer_keys[cardinality(p_customer_keys)]::text, false,
                        cardinality(p_customer_keys), v_customers, v_locations, v_contacts;
END;
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."_purge_locked_stacks"(bigint, boolean, anyarray) FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."_purge_locked_stacks"(bigint, boolean, anyarray) IS
    'adhoc-gc internal: locks and deletes the stacks of customers locked by purge_batch. Do not call directly.';
