{% from "macros/rules.sql" import stack_is_eligible with context %}
{% from "macros/delete_stacks.sql" import delete_stacks with context %}
{# The next batch: eligible customers after the keyset start, in key order, locked. #}
{% set next_customers %}
SELECT "c".{{ customer.key|ident }} AS "customer_key"
FROM {{ customer.table|table }} AS "c"
WHERE "c".{{ customer.key|ident }} >= purge_batch.v_from
  AND ("c".{{ customer.key|ident }} > purge_batch.v_from OR purge_batch.p_after_key IS NULL)
  AND {{ stack_is_eligible('"c"') | trim | indent(2) }}
ORDER BY "c".{{ customer.key|ident }}
LIMIT purge_batch.p_batch_size
FOR UPDATE OF "c" SKIP LOCKED
{%- endset %}
-- purge_batch: deletes the next batch of eligible stacks after p_after_key (keyset order)
-- and records it in the run p_run_id. Call it once per transaction, at REPEATABLE READ; the
-- caller commits, and runs the batch again in a new transaction when it fails with a
-- serialization failure or a foreign-key violation (a concurrent write it did not see).
--
-- Safety (docs/design.md): one statement picks the batch (its customers locked, SKIP
-- LOCKED), checks every rule, and deletes. Everything it reads is the transaction's
-- snapshot; a blocker, login or touch committed after it makes the DELETE fail instead of
-- being lost (REPEATABLE READ: a row changed since the snapshot cannot be deleted or
-- locked, and the foreign-key actions refuse to cascade into or null rows the snapshot
-- does not see). A location, contact or owned row an application transaction holds makes
-- the DELETE wait; after 50 ms the statement is undone and the batch taken again the
-- careful way, _purge_locked_stacks, which locks every row SKIP LOCKED and leaves such
-- stacks for a later run.
CREATE OR REPLACE FUNCTION {{ schema|ident }}."purge_batch"(
    p_run_id bigint,
    p_after_key text,
    p_batch_size integer,
    p_archive boolean DEFAULT true
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
-- PL/pgSQL plans its first calls for the actual key; when the planner then guesses few
-- candidates it scans and sorts the whole table instead of walking the key index from
-- where the last batch stopped (seconds per batch at 1M, bench/results). The generic
-- plan walks the index every time.
SET plan_cache_mode = force_generic_plan
-- The archive groups the batch's deleted rows (json) by customer in memory; at the default
-- work_mem of 4MB that hash spilled to temporary files already at 500 stacks (bench/results).
SET work_mem = '32MB'
AS $function$
-- The output columns share names with runs' columns; inside the body they mean the columns.
#variable_conflict use_column
-- Parameters and variables are qualified (purge_batch.name): an application column of the same
-- name in a statement would otherwise be taken for the variable, or the variable for it.
<<purge_batch>>
DECLARE
    v_from {{ customer.table|table }}.{{ customer.key|ident }}%TYPE;
    v_status text;
    v_held boolean := false;
    v_last_key text;
    v_examined integer := 0;
    v_customers integer := 0;
    v_locations integer := 0;
    v_contacts integer := 0;
BEGIN
    IF purge_batch.p_batch_size IS NULL OR purge_batch.p_batch_size < 1 THEN
        RAISE EXCEPTION 'adhoc-gc: batch size must be a positive integer, not %', purge_batch.p_batch_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Safety rests on the transaction's one snapshot (see above): READ COMMITTED would let
    -- a foreign key cascade into a case committed during the batch.
    IF current_setting('transaction_isolation') NOT IN ('repeatable read', 'serializable') THEN
        RAISE EXCEPTION 'adhoc-gc: purge_batch must run at REPEATABLE READ, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    SELECT "status" INTO purge_batch.v_status FROM {{ schema|ident }}."runs" WHERE "id" = purge_batch.p_run_id FOR UPDATE;
    IF purge_batch.v_status IS DISTINCT FROM 'running' THEN
        RAISE EXCEPTION 'adhoc-gc: run % is not running (status %)', purge_batch.p_run_id, coalesce(purge_batch.v_status, 'unknown')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Keyset start: the first key, inclusive, or the key after p_after_key. Written as one
    -- range condition so every batch is an index range scan from where the last one stopped.
    IF purge_batch.p_after_key IS NULL THEN
        -- ORDER BY ... LIMIT 1, not min(): PostgreSQL has no min() for uuid keys.
        SELECT "c".{{ customer.key|ident }} INTO purge_batch.v_from FROM {{ customer.table|table }} AS "c"
        ORDER BY "c".{{ customer.key|ident }} LIMIT 1;
    ELSE
        purge_batch.v_from := purge_batch.p_after_key;
    END IF;

    -- The whole batch in one statement. Rows the application holds are waited for 50 ms at
    -- most (well under deadlock_timeout, so the application never sees a deadlock error);
    -- then the statement is undone (the block is a subtransaction) and the batch taken again
    -- with every row locked SKIP LOCKED first.
    BEGIN
        PERFORM set_config('lock_timeout', '50ms', true);
        {{ delete_stacks(next_customers, "v_last_key, v_examined, v_customers, v_locations, v_contacts", "purge_batch") | indent(8) }}
    EXCEPTION WHEN lock_not_available THEN
        purge_batch.v_held := true;
    END;
    -- [guard] lock_timeout bounds what the careful way cannot lock ahead (a trigger's
    -- writes, a cascade).
    PERFORM set_config('lock_timeout',
                       (extract(epoch FROM {{ guard.lock_timeout|literal }}::interval) * 1000)::bigint::text || 'ms',
                       true);
    IF purge_batch.v_held THEN
        SELECT "r"."next_after_key", "r"."examined",
               "r"."customers_deleted", "r"."locations_deleted", "r"."contacts_deleted"
        INTO purge_batch.v_last_key, purge_batch.v_examined, purge_batch.v_customers, purge_batch.v_locations, purge_batch.v_contacts
        FROM {{ schema|ident }}."_purge_locked_stacks"(
            purge_batch.p_run_id,
            purge_batch.p_archive,
            ARRAY({{ next_customers | indent(18) }})
        ) AS "r";
    END IF;

    IF purge_batch.v_examined = 0 THEN
        RETURN QUERY SELECT NULL::text, true, 0, 0, 0, 0;
        RETURN;
    END IF;
    UPDATE {{ schema|ident }}."runs"
    SET "batches" = "batches" + 1,
        "customers_deleted" = "customers_deleted" + purge_batch.v_customers,
        "locations_deleted" = "locations_deleted" + purge_batch.v_locations,
        "contacts_deleted" = "contacts_deleted" + purge_batch.v_contacts,
        "last_key" = purge_batch.v_last_key
    WHERE "id" = purge_batch.p_run_id;
    RETURN QUERY SELECT purge_batch.v_last_key, false, purge_batch.v_examined, purge_batch.v_customers, purge_batch.v_locations, purge_batch.v_contacts;
END;
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."purge_batch"(bigint, text, integer, boolean) FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."purge_batch"(bigint, text, integer, boolean) IS
    'adhoc-gc: deletes the next batch of eligible stacks after p_after_key (keyset order) for run p_run_id, re-checking every rule; returns the key to continue after. One call per transaction.';
