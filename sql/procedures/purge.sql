-- purge: the whole purge inside the database, for pg_cron or a person with psql:
--   CALL adhoc_gc.purge(batch_size => 500, max_runtime => interval '10 minutes');
-- The same batches, lock, checks and run records as the Python runner: it loops over
-- purge_batch and COMMITs after every batch, so a long purge never holds one huge
-- transaction. Must be called on its own (not inside BEGIN ... COMMIT), and as pg_cron's
-- whole job command.
-- A procedure that COMMITs can neither be SECURITY DEFINER nor carry a SET search_path
-- clause, so it runs as its caller and every name in it is schema-qualified, operators
-- included (OPERATOR(pg_catalog.>=)): objects planted in other schemas are never used. The
-- privileged work happens in the SECURITY DEFINER functions it calls.
CREATE OR REPLACE PROCEDURE {{ schema|ident }}."purge"(
    batch_size integer DEFAULT 500,
    max_batches integer DEFAULT NULL,
    max_runtime interval DEFAULT interval '10 minutes',
    pause interval DEFAULT interval '0',
    archive boolean DEFAULT true,
    "trigger" text DEFAULT NULL,
    force boolean DEFAULT false
)
LANGUAGE plpgsql
AS $procedure$
DECLARE
    v_trigger text := coalesce(
        "purge"."trigger",
        CASE WHEN pg_catalog.current_setting('application_name') OPERATOR(pg_catalog.=) 'pg_cron'
             THEN 'pg_cron' ELSE 'sql' END
    );
    v_run_id bigint;
    v_after_key text;
    v_batch record;
    v_batches integer := 0;
    v_deadline timestamptz;
    v_refusal text;
    v_lag interval;
    v_throttled double precision := 0;
    v_out_of_time boolean := false;
    v_error text;
    v_sqlstate text;
    v_batch_started timestamptz;
    v_batch_took interval;
    v_races integer := 0;  -- the same batch undone by concurrent changes, in a row
    v_batch_size integer := "purge"."batch_size";  -- halved when one batch keeps being undone
    v_retries integer := 0;  -- batches taken again, all told (runs.batch_retries)
BEGIN
    IF pg_catalog.pg_is_in_recovery() THEN
        -- A standby cannot write; its primary runs the purge.
        RAISE NOTICE 'adhoc-gc: this server is a standby; purge skipped';
        RETURN;
    END IF;
    IF "purge"."batch_size" IS NULL OR "purge"."batch_size" OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'adhoc-gc: batch_size must be a positive integer, not %', "purge"."batch_size"
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT {{ schema|ident }}."_try_purge_lock"() THEN
        PERFORM {{ schema|ident }}."_record_unstarted_run"(v_trigger, "purge"."batch_size", 'skipped',
                                                         'another purge is running');
        RAISE NOTICE 'adhoc-gc: another purge is running; this one is skipped';
        RETURN;
    END IF;

    -- This session holds the lock from here on: an error (or a cancel) before the run
    -- starts lets go of it before it is raised, like one during a batch.
    BEGIN
        -- [retention] first: every purge that holds the lock prunes the package's history,
        -- whether it then succeeds, fails or is refused (committed with the run's first row).
        PERFORM {{ schema|ident }}."_apply_retention"();
        SELECT pg_catalog.string_agg(pg_catalog.format(
                   'foreign key %I on %I.%I (%s) references the %s table and is neither a blocker nor owned',
                   "fk"."constraint_name", "fk"."schema", "fk"."table",
                   pg_catalog.array_to_string("fk"."columns", ', '), "fk"."references"), '; ')
        INTO v_refusal
        FROM {{ schema|ident }}."_unmapped_foreign_keys"() AS "fk";
        IF v_refusal IS NULL THEN
            v_refusal := {{ schema|ident }}."_guard_refusal"("purge"."force");
        END IF;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT, v_sqlstate = RETURNED_SQLSTATE;
    END;
    IF v_error IS NOT NULL THEN
        PERFORM {{ schema|ident }}."_release_purge_lock"();
        RAISE EXCEPTION 'adhoc-gc: purge failed before its run started: %', v_error USING ERRCODE = v_sqlstate;
    END IF;
    IF v_refusal IS NOT NULL THEN
        PERFORM {{ schema|ident }}."_record_unstarted_run"(v_trigger, "purge"."batch_size", 'refused', v_refusal);
        PERFORM {{ schema|ident }}."_release_purge_lock"();
        COMMIT;
        -- An error, so that pg_cron's job_run_details shows it too.
        RAISE EXCEPTION 'adhoc-gc: purge refused: %', v_refusal USING ERRCODE = 'check_violation';
    END IF;

    v_run_id := {{ schema|ident }}."_start_run"(v_trigger, "purge"."batch_size", "purge"."max_batches",
                                               "purge"."max_runtime", "purge"."archive");
    COMMIT;
    v_deadline := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) "purge"."max_runtime";

    LOOP
        EXIT WHEN "purge"."max_batches" IS NOT NULL
              AND v_batches OPERATOR(pg_catalog.>=) "purge"."max_batches";
        EXIT WHEN v_deadline IS NOT NULL AND pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) v_deadline;
        -- The pause between batches, and the wait for standbys, in a transaction of their own:
        -- the batch's snapshot is taken after them. In a block, so that a cancel there is
        -- handled like one during a batch.
        BEGIN
            -- Only between batches: not after one short of its size (it reached the last
            -- candidate), and never past max_runtime.
            IF v_batches OPERATOR(pg_catalog.>) 0 AND v_races OPERATOR(pg_catalog.=) 0
               AND "purge"."pause" OPERATOR(pg_catalog.>) interval '0' THEN
                -- (nested: v_batch is unassigned before the first batch, and SQL does not
                -- promise to stop at a false AND)
                IF v_batch."examined" OPERATOR(pg_catalog.>=) v_batch_size THEN
                    PERFORM pg_catalog.pg_sleep_for(CASE WHEN v_deadline IS NULL THEN "purge"."pause"
                        ELSE LEAST("purge"."pause", v_deadline OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp()) END);
                    v_out_of_time := v_deadline IS NOT NULL
                                     AND pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) v_deadline;
                END IF;
            END IF;
{% if throttle.max_replica_lag %}
            -- [throttle]: pause while a standby's replay lag exceeds max_replica_lag.
            LOOP
                v_lag := {{ schema|ident }}."_replica_lag"();
                IF v_lag IS NULL THEN
                    RAISE EXCEPTION 'adhoc-gc: [throttle] max_replica_lag needs to see standby lag: GRANT pg_monitor TO the owner of the adhoc-gc functions'
                        USING ERRCODE = 'insufficient_privilege';
                END IF;
                EXIT WHEN v_lag OPERATOR(pg_catalog.<=) {{ throttle.max_replica_lag|literal }}::interval;
                IF v_deadline IS NOT NULL AND pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) v_deadline THEN
                    v_out_of_time := true;
                    EXIT;
                END IF;
                PERFORM pg_catalog.pg_sleep(1);
                v_throttled := v_throttled OPERATOR(pg_catalog.+) 1;
                PERFORM {{ schema|ident }}."_note_run"(v_run_id, NULL, v_retries, v_throttled);
            END LOOP;
{% endif %}
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT, v_sqlstate = RETURNED_SQLSTATE;
        END;
        IF v_error IS NULL AND NOT v_out_of_time THEN
            COMMIT;
            -- purge_batch's safety rests on its transaction's one snapshot (docs/design.md).
            SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;
            BEGIN
                v_batch_started := pg_catalog.clock_timestamp();
                SELECT * INTO v_batch
                FROM {{ schema|ident }}."purge_batch"(v_run_id, v_after_key, v_batch_size, "purge"."archive");
                -- [guard] statement_timeout, per batch. PostgreSQL arms statement_timeout once
                -- per statement a client sends (here: the whole CALL), so setting it in here
                -- could not cut a batch short. A batch that ran longer is undone instead (the
                -- block is its subtransaction) and fails the run, as the runner's batch would.
                v_batch_took := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) v_batch_started;
                IF v_batch_took OPERATOR(pg_catalog.>) {{ guard.statement_timeout|literal }}::interval THEN
                    RAISE EXCEPTION 'canceling batch % due to statement timeout: it took % (over [guard] statement_timeout %) and was undone; use a smaller batch_size',
                        v_batches OPERATOR(pg_catalog.+) 1, v_batch_took, {{ guard.statement_timeout|literal }}::interval
                        USING ERRCODE = 'query_canceled';
                END IF;
            EXCEPTION WHEN OTHERS OR query_canceled THEN
                -- Only this batch is undone (the block is a subtransaction).
                -- OTHERS leaves out query_canceled (a cancel, or statement_timeout): named here,
                -- or a cancelled CALL would keep the session's lock and block every later purge.
                GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT, v_sqlstate = RETURNED_SQLSTATE;
            END;
            -- A concurrent change the batch's snapshot did not see undid it (serialization
            -- failure, or a foreign-key violation): take the same batch again in a new
            -- transaction, whose snapshot sees the change; as the runner does, {{ max_race_retries|int }} times in a row
            -- at one size, then at half the size, down to a batch of one.
            IF v_sqlstate IN ('40001', '23503') AND (v_races OPERATOR(pg_catalog.<) {{ max_race_retries|int }}
                                                    OR v_batch_size OPERATOR(pg_catalog.>) 1) THEN
                IF v_races OPERATOR(pg_catalog.<) {{ max_race_retries|int }} THEN
                    v_races := v_races OPERATOR(pg_catalog.+) 1;
                ELSE
                    v_batch_size := v_batch_size OPERATOR(pg_catalog./) 2;
                    v_races := 0;
                END IF;
                v_retries := v_retries OPERATOR(pg_catalog.+) 1;
                v_error := NULL;
                v_sqlstate := NULL;
                PERFORM {{ schema|ident }}."_note_run"(v_run_id, NULL, v_retries, v_throttled);
                COMMIT;
                CONTINUE;
            END IF;
        END IF;
        IF v_error IS NOT NULL THEN
            -- Record why, let go of the lock, then raise the same error so pg_cron shows the
            -- run as failed.
            PERFORM {{ schema|ident }}."_finish_run"(v_run_id, 'failed', v_error);
            PERFORM {{ schema|ident }}."_release_purge_lock"();
            COMMIT;
            RAISE EXCEPTION 'adhoc-gc: purge run % failed: %', v_run_id, v_error USING ERRCODE = v_sqlstate;
        END IF;
        COMMIT;
        EXIT WHEN v_out_of_time OR v_batch."done";
        v_races := 0;
        v_batches := v_batches OPERATOR(pg_catalog.+) 1;
        v_after_key := v_batch."next_after_key";
    END LOOP;

    PERFORM {{ schema|ident }}."_finish_run"(v_run_id, 'succeeded', NULL);
    PERFORM {{ schema|ident }}."_release_purge_lock"();
    COMMIT;
END;
$procedure$;

REVOKE ALL ON PROCEDURE {{ schema|ident }}."purge"(integer, integer, interval, interval, boolean, text, boolean) FROM PUBLIC;

COMMENT ON PROCEDURE {{ schema|ident }}."purge"(integer, integer, interval, interval, boolean, text, boolean) IS
    'adhoc-gc: purges in batches of batch_size, committing after each, until no candidate is left, max_batches or max_runtime; one purge at a time; refuses while the foreign-key audit or a [guard] cap objects (force => true passes the cap). CALL it on its own (pg_cron: as the whole job command).';
