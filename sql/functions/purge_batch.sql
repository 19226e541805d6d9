{% from "macros/rules.sql" import stack_is_eligible with context %}
-- purge_batch: deletes the next batch of eligible stacks after p_after_key (keyset order)
-- and records it in the run p_run_id. Call it once per transaction; the caller commits.
--
-- Safety (docs/design.md): this statement locks the batch's customers (skipping rows an
-- application transaction holds), then _purge_locked_stacks locks their locations and
-- contacts and deletes, re-checking every rule under a fresh snapshot. A case committed
-- before the locks is seen by the re-check; one inserted after them waits on the lock and
-- then fails its foreign-key check instead of being lost.
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
AS $function$
-- The output columns share names with runs' columns; inside the body they mean the columns.
#variable_conflict use_column
DECLARE
    v_from {{ customer.table|table }}.{{ customer.key|ident }}%TYPE;
    v_status text;
BEGIN
    IF p_batch_size IS NULL OR p_batch_size < 1 THEN
        RAISE EXCEPTION 'adhoc-gc: batch size must be a positive integer, not %', p_batch_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The re-check relies on each statement taking a fresh snapshot.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'adhoc-gc: purge_batch must run at READ COMMITTED, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    -- The purge never waits on the application's row locks (SKIP LOCKED), but deleting owned
    -- rows or cascading into unmapped tables could: bound that wait ([guard] lock_timeout).
    PERFORM set_config('lock_timeout',
                       (extract(epoch FROM {{ guard.lock_timeout|literal }}::interval) * 1000)::bigint::text || 'ms',
                       true);
    SELECT "status" INTO v_status FROM {{ schema|ident }}."runs" WHERE "id" = p_run_id FOR UPDATE;
    IF v_status IS DISTINCT FROM 'running' THEN
        RAISE EXCEPTION 'adhoc-gc: run % is not running (status %)', p_run_id, coalesce(v_status, 'unknown')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Keyset start: the first key, inclusive, or the key after p_after_key. Written as one
    -- range condition so every batch is an index range scan from where the last one stopped.
    IF p_after_key IS NULL THEN
        -- ORDER BY ... LIMIT 1, not min(): PostgreSQL has no min() for uuid keys.
        SELECT "c".{{ customer.key|ident }} INTO v_from FROM {{ customer.table|table }} AS "c"
        ORDER BY "c".{{ customer.key|ident }} LIMIT 1;
    ELSE
        v_from := p_after_key;
    END IF;

    RETURN QUERY
    SELECT "r"."next_after_key", "r"."done", "r"."examined",
           "r"."customers_deleted", "r"."locations_deleted", "r"."contacts_deleted"
    FROM {{ schema|ident }}."_purge_locked_stacks"(
        p_run_id,
        p_archive,
        ARRAY(
            SELECT "c".{{ customer.key|ident }}
            FROM {{ customer.table|table }} AS "c"
            WHERE "c".{{ customer.key|ident }} >= v_from
              AND ("c".{{ customer.key|ident }} > v_from OR p_after_key IS NULL)
              AND {{ stack_is_eligible('"c"') | trim | indent(14) }}
            ORDER BY "c".{{ customer.key|ident }}
            LIMIT p_batch_size
            FOR UPDATE OF "c" SKIP LOCKED
        )
    ) AS "r";
END;
$function$;

REVOKE ALL ON FUNCTION {{ schema|ident }}."purge_batch"(bigint, text, integer, boolean) FROM PUBLIC;

COMMENT ON FUNCTION {{ schema|ident }}."purge_batch"(bigint, text, integer, boolean) IS
    'adhoc-gc: deletes the next batch of eligible stacks after p_after_key (keyset order) for run p_run_id, re-checking every rule; returns the key to continue after. One call per transaction.';
