{% from "macros/rules.sql" import stack_is_eligible with context %}
-- _purge_locked_stacks: the second half of purge_batch. p_customer_keys are customers the
-- calling statement has locked, in key order. Locks their locations and contacts (skipping
-- rows others hold: such a stack is left for a later run), then deletes the complete stacks
-- that still pass every rule under this statement's fresh snapshot, archives and counts them.
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
SET search_path = pg_catalog, pg_temp
AS $function$
-- The output columns share names with runs' columns; inside the body they mean the columns.
#variable_conflict use_column
DECLARE
    v_complete p_customer_keys%TYPE;
    v_customers integer := 0;
    v_locations integer := 0;
    v_contacts integer := 0;
BEGIN
    IF cardinality(p_customer_keys) = 0 THEN
        RETURN QUERY SELECT NULL::text, true, 0, 0, 0, 0;
        RETURN;
    END IF;

    -- Lock the stacks' locations and contacts. A stack counts as complete only when every
    -- one of its rows is locked by us; the counts are compared in full (GROUP BY reads the
    -- locking CTEs to the end, so no lock is left untaken by an early exit).
    WITH "locked_locations" AS (
        SELECT "l".{{ location.key|ident }} AS "location_key", "l".{{ location.customer|ident }} AS "customer_key"
        FROM {{ location.table|table }} AS "l"
        WHERE "l".{{ location.customer|ident }} = ANY (p_customer_keys)
        FOR UPDATE OF "l" SKIP LOCKED
    ), "locked_contacts" AS (
        SELECT "ll"."customer_key"
        FROM {{ contact.table|table }} AS "ct"
        JOIN "locked_locations" AS "ll" ON "ct".{{ contact.location|ident }} = "ll"."location_key"
        FOR UPDATE OF "ct" SKIP LOCKED
    ), "locked_counts" AS (
        SELECT "customer_key", count(*) AS "locations", 0 AS "contacts" FROM "locked_locations" GROUP BY 1
        UNION ALL
        SELECT "customer_key", 0, count(*) FROM "locked_contacts" GROUP BY 1
    ), "stack_counts" AS (
        SELECT "l".{{ location.customer|ident }} AS "customer_key", count(*) AS "locations", 0 AS "contacts"
        FROM {{ location.table|table }} AS "l"
        WHERE "l".{{ location.customer|ident }} = ANY (p_customer_keys)
        GROUP BY 1
        UNION ALL
        SELECT "l".{{ location.customer|ident }}, 0, count(*)
        FROM {{ location.table|table }} AS "l"
        JOIN {{ contact.table|table }} AS "ct" ON "ct".{{ contact.location|ident }} = "l".{{ location.key|ident }}
        WHERE "l".{{ location.customer|ident }} = ANY (p_customer_keys)
        GROUP BY 1
    ), "missing" AS (
        -- customers with a row that exists but is not locked by us
        SELECT "customer_key"
        FROM (
            SELECT "customer_key", sum("locations") AS "locations", sum("contacts") AS "contacts" FROM "stack_counts" GROUP BY 1
        ) AS "stack"
        LEFT JOIN (
            SELECT "customer_key", sum("locations") AS "locations", sum("contacts") AS "contacts" FROM "locked_counts" GROUP BY 1
        ) AS "locked" USING ("customer_key")
        WHERE "stack"."locations" IS DISTINCT FROM "locked"."locations"
           OR "stack"."contacts" IS DISTINCT FROM coalesce("locked"."contacts", 0)
    )
    SELECT coalesce(array_agg("k"."customer_key"), p_customer_keys[0:0]) INTO v_complete
    FROM unnest(p_customer_keys) AS "k"("customer_key")
    WHERE NOT EXISTS (SELECT 1 FROM "missing" AS "m" WHERE "m"."customer_key" = "k"."customer_key");

    -- Delete, re-checking every rule: this statement's snapshot is newer than all our locks.
    WITH "batch" AS (
        SELECT "c".{{ customer.key|ident }} AS "customer_key"
        FROM {{ customer.table|table }} AS "c"
        WHERE "c".{{ customer.key|ident }} = ANY (v_complete)
          AND {{ stack_is_eligible('"c"') | trim | indent(10) }}
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
        INSERT INTO {{ schema|ident }}."purged" ("run_id", "customer_id", "customer", "locations", "contacts")
        SELECT p_run_id, "dc"."customer_key"::text, "dc"."row",
               coalesce("dl"."rows", '[]'::json), coalesce("dct"."rows", '[]'::json)
        FROM "deleted_customers" AS "dc"
        LEFT JOIN (SELECT "customer_key", json_agg("row") AS "rows" FROM "deleted_locations" GROUP BY 1) AS "dl"
            USING ("customer_key")
        LEFT JOIN (SELECT "customer_key", json_agg("row") AS "rows" FROM "deleted_contacts" GROUP BY 1) AS "dct"
            USING ("customer_key")
        WHERE p_archive
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

COMMENT ON FUNCTION {{ schema|ident }}."_purge_locked_stacks"(bigint, boolean, anyarray) IS
    'adhoc-gc internal: locks and deletes the stacks of customers locked by purge_batch. Do not call directly.';
