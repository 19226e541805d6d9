-- adhoc-gc 0.1.0: rendered for mapping built-in defaults (fingerprint a148b87f681b0822)

CREATE SCHEMA IF NOT EXISTS "adhoc_gc";

-- migration adhoc_gc_0001_runs_and_purged (deploy applies it through yoyo, which records it in "adhoc_gc"."_yoyo_migration")
SET search_path TO "adhoc_gc";
-- adhoc-gc: the package's own tables. Applied by yoyo with search_path set to the
-- package schema ([database].schema), so names here are unqualified. IF NOT EXISTS lets a
-- database set up from `adhoc-gc render` output be taken over by `adhoc-gc deploy` later.

CREATE TABLE IF NOT EXISTS "runs" (
    "id" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "started_at" timestamptz NOT NULL DEFAULT clock_timestamp(),
    "finished_at" timestamptz,
    "status" text NOT NULL DEFAULT 'running'
        CHECK ("status" IN ('running', 'succeeded', 'failed', 'skipped', 'abandoned', 'refused')),
    "trigger" text NOT NULL,
    "batch_size" integer NOT NULL CHECK ("batch_size" > 0),
    "max_batches" integer,
    "max_runtime" interval,
    "archive" boolean NOT NULL DEFAULT true,
    "batches" integer NOT NULL DEFAULT 0,
    "customers_deleted" bigint NOT NULL DEFAULT 0,
    "locations_deleted" bigint NOT NULL DEFAULT 0,
    "contacts_deleted" bigint NOT NULL DEFAULT 0,
    "last_key" text,
    "target_batch_seconds" double precision,  -- --target-batch-seconds, when the runner adapted the size
    "batch_retries" integer NOT NULL DEFAULT 0,  -- batches retried smaller after a lock or statement timeout
    "throttled_seconds" double precision NOT NULL DEFAULT 0,  -- paused for replica lag ([throttle])
    "mapping_fingerprint" text,
    "backend_pid" integer NOT NULL DEFAULT pg_backend_pid(),
    "error" text
);

CREATE INDEX IF NOT EXISTS "runs_status_idx" ON "runs" ("status") WHERE "status" = 'running';

COMMENT ON TABLE "runs" IS 'adhoc-gc: one row per purge run.';

CREATE TABLE IF NOT EXISTS "purged" (
    "run_id" bigint NOT NULL REFERENCES "runs" ("id") ON DELETE CASCADE,
    "customer_id" text NOT NULL,
    "purged_at" timestamptz NOT NULL DEFAULT now(),
    "customer" json NOT NULL,
    "locations" json NOT NULL,
    "contacts" json NOT NULL,
    "owned" json NOT NULL DEFAULT '{}',  -- {"owned table name": [rows]} for [[owned]] tables
    "restored_at" timestamptz  -- set by adhoc-gc restore when the rows went back
);

CREATE INDEX IF NOT EXISTS "purged_run_id_idx" ON "purged" ("run_id");
CREATE INDEX IF NOT EXISTS "purged_customer_id_idx" ON "purged" ("customer_id");
CREATE INDEX IF NOT EXISTS "purged_purged_at_idx" ON "purged" ("purged_at");

COMMENT ON TABLE "purged" IS 'adhoc-gc: one row per deleted stack, with the deleted rows as JSON (archive for restore).';
RESET search_path;

-- migration adhoc_gc_0002_purged_without_run_foreign_key (deploy applies it through yoyo, which records it in "adhoc_gc"."_yoyo_migration")
SET search_path TO "adhoc_gc";
-- depends: adhoc_gc_0001_runs_and_purged
-- adhoc-gc: purged no longer references runs through a foreign key. The foreign key's check
-- ran once per archived stack, inside every batch: about a fifth of the archive's cost at
-- 1M customers (docs/performance.md). Only the package's own functions write purged, with
-- the run they are in; _apply_retention deletes a run's archived rows together with the run
-- (what ON DELETE CASCADE did).
ALTER TABLE "purged" DROP CONSTRAINT IF EXISTS "purged_run_id_fkey";
RESET search_path;

BEGIN;

-- _apply_retention: keeps the package's own history bounded ([retention] in the mapping).
-- Every purge that takes the purge lock calls it first (runner and procedure alike), so it
-- applies whether the purge then succeeds, fails or is refused; a skipped purge, which did
-- not get the lock, touches nothing.
CREATE OR REPLACE FUNCTION "adhoc_gc"."_apply_retention"()
RETURNS TABLE ("runs_deleted" bigint, "purged_deleted" bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    v_purged bigint;
    v_runs bigint;
BEGIN
    DELETE FROM "adhoc_gc"."purged"
    WHERE "purged_at" < now() - '90 days'::interval;
    GET DIAGNOSTICS v_purged = ROW_COUNT;
    -- A deleted run takes its archived rows with it (purged has no foreign key to runs:
    -- migration adhoc_gc_0002).
    WITH "old_runs" AS (
        DELETE FROM "adhoc_gc"."runs"
        WHERE "started_at" < now() - '1 year'::interval
          AND "status" <> 'running'
        RETURNING "id"
    ), "their_archive" AS (
        DELETE FROM "adhoc_gc"."purged"
        WHERE "run_id" IN (SELECT "id" FROM "old_runs")
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM "old_runs"), v_purged + (SELECT count(*) FROM "their_archive")
    INTO v_runs, v_purged;
    RETURN QUERY SELECT v_runs, v_purged;
END;
$function$;

REVOKE ALL ON FUNCTION "adhoc_gc"."_apply_retention"() FROM PUBLIC;

COMMENT ON FUNCTION "adhoc_gc"."_apply_retention"() IS
    'adhoc-gc internal: deletes run records and archived rows older than the [retention] settings.';

-- _finish_run: closes a run with its final status and, on failure, the error text.
CREATE OR REPLACE FUNCTION "adhoc_gc"."_finish_run"(
    p_run_id bigint,
    p_status text,
    p_error text
)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    UPDATE "adhoc_gc"."runs"
    SET "status" = p_status, "finished_at" = clock_timestamp(), "error" = p_error
    WHERE "id" = p_run_id;
$function$;

REVOKE ALL ON FUNCTION "adhoc_gc"."_finish_run"(bigint, text, text) FROM PUBLIC;

COMMENT ON FUNCTION "adhoc_gc"."_finish_run"(bigint, text, text) IS
    'adhoc-gc internal: closes a purge run with its final status.';

-- _guard_refusal: why this run must not delete anything, or NULL to go ahead. A run whose
-- candidates exceed [guard] max_customers_per_run, or max_fraction_of_adhoc of all ad-hoc
-- customers, is refused as a whole: that many at once smells of a wrong mapping or policy.
-- p_force skips the check (adhoc-gc purge --force).
CREATE OR REPLACE FUNCTION "adhoc_gc"."_guard_refusal"(p_force boolean)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    -- No cap configured in [guard].
    RETURN NULL;
END;
$function$;

REVOKE ALL ON FUNCTION "adhoc_gc"."_guard_refusal"(boolean) FROM PUBLIC;

COMMENT ON FUNCTION "adhoc_gc"."_guard_refusal"(boolean) IS
    'adhoc-gc internal: the reason a purge run must be refused under [guard], or NULL.';

-- _note_run: what the runner adapted along the way, recorded on its run: the target batch
-- duration, how many batches it retried smaller, how long it paused for replica lag.
CREATE OR REPLACE FUNCTION "adhoc_gc"."_note_run"(
    p_run_id bigint,
    p_target_batch_seconds double precision,
    p_batch_retries integer,
    p_throttled_seconds double precision
)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    UPDATE "adhoc_gc"."runs"
    SET "target_batch_seconds" = p_target_batch_seconds,
        "batch_retries" = p_batch_retries,
        "throttled_seconds" = p_throttled_seconds
    WHERE "id" = p_run_id;
$function$;

REVOKE ALL ON FUNCTION "adhoc_gc"."_note_run"(bigint, double precision, integer, double precision) FROM PUBLIC;

COMMENT ON FUNCTION "adhoc_gc"."_note_run"(bigint, double precision, integer, double precision) IS
    'adhoc-gc internal: records a run''s batch-size target, retries and replica-lag pauses.';

-- _purge_locked_stacks: purge_batch's way round rows the application holds. p_customer_keys
-- are customers the calling statement has locked, in key order. Locks their locations,
-- contacts and owned rows (skipping rows others hold: such a stack is left for a later run),
-- then deletes the complete stacks that still pass every rule, archives and counts them.
-- Polymorphic in the key type, so that the mapping's key types need not be known to render.
CREATE OR REPLACE FUNCTION "adhoc_gc"."_purge_locked_stacks"(
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
    WITH "locked_locations" AS (
        SELECT "l"."id" AS "location_key", "l"."customer_id" AS "customer_key"
        FROM "public"."locations" AS "l"
        WHERE "l"."customer_id" = ANY (_purge_locked_stacks.p_customer_keys)
        FOR UPDATE OF "l" SKIP LOCKED
    ), "locked_contacts" AS (
        SELECT "ct"."id" AS "contact_key", "ll"."customer_key"
        FROM "public"."contacts" AS "ct"
        JOIN "locked_locations" AS "ll" ON "ct"."location_id" = "ll"."location_key"
        FOR UPDATE OF "ct" SKIP LOCKED
    ), "stack_locations" AS (
        SELECT "l"."id" AS "location_key", "l"."customer_id" AS "customer_key"
        FROM "public"."locations" AS "l"
        WHERE "l"."customer_id" = ANY (_purge_locked_stacks.p_customer_keys)
    ), "stack_contacts" AS (
        SELECT "ct"."id" AS "contact_key", "sl"."customer_key"
        FROM "public"."contacts" AS "ct"
        JOIN "stack_locations" AS "sl" ON "ct"."location_id" = "sl"."location_key"
    )
    SELECT (SELECT count(*) FROM "locked_locations") = (SELECT count(*) FROM "stack_locations")
           AND (SELECT count(*) FROM "locked_contacts") = (SELECT count(*) FROM "stack_contacts")
    INTO _purge_locked_stacks.v_all_locked;

    IF _purge_locked_stacks.v_all_locked THEN
        _purge_locked_stacks.v_complete := _purge_locked_stacks.p_customer_keys;
    ELSE
        -- Someone holds a row of some stack: find which stacks are complete, per customer and
        -- part, rows locked against rows there are. Locking again is a no-op for the rows we
        -- hold already; GROUP BY reads each locking CTE to the end.
        WITH "locked_locations" AS (
            SELECT "l"."id" AS "location_key", "l"."customer_id" AS "customer_key"
            FROM "public"."locations" AS "l"
            WHERE "l"."customer_id" = ANY (_purge_locked_stacks.p_customer_keys)
            FOR UPDATE OF "l" SKIP LOCKED
        ), "locked_contacts" AS (
            SELECT "ct"."id" AS "contact_key", "ll"."customer_key"
            FROM "public"."contacts" AS "ct"
            JOIN "locked_locations" AS "ll" ON "ct"."location_id" = "ll"."location_key"
            FOR UPDATE OF "ct" SKIP LOCKED
        ), "stack_locations" AS (
            SELECT "l"."id" AS "location_key", "l"."customer_id" AS "customer_key"
            FROM "public"."locations" AS "l"
            WHERE "l"."customer_id" = ANY (_purge_locked_stacks.p_customer_keys)
        ), "stack_contacts" AS (
            SELECT "ct"."id" AS "contact_key", "sl"."customer_key"
            FROM "public"."contacts" AS "ct"
            JOIN "stack_locations" AS "sl" ON "ct"."location_id" = "sl"."location_key"
        ),
        "locked_counts" AS (
            SELECT "customer_key", 'location' AS "part", count(*) AS "n" FROM "locked_locations" GROUP BY 1
            UNION ALL
            SELECT "customer_key", 'contact', count(*) FROM "locked_contacts" GROUP BY 1
        ), "stack_counts" AS (
            SELECT "customer_key", 'location' AS "part", count(*) AS "n" FROM "stack_locations" GROUP BY 1
            UNION ALL
            SELECT "customer_key", 'contact', count(*) FROM "stack_contacts" GROUP BY 1
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
    WITH "batch" AS (
        SELECT "c"."id" AS "customer_key"
        FROM "public"."customers" AS "c"
        WHERE "c"."id" = ANY (_purge_locked_stacks.v_complete)
          AND "c"."is_adhoc" IS TRUE
          AND GREATEST("c"."created_at"::timestamptz, "c"."updated_at"::timestamptz) + '14 days'::interval <= now()
          AND NOT EXISTS (
              SELECT 1 FROM "public"."locations" AS "l"
              WHERE "l"."customer_id" = "c"."id"
                AND (
                    GREATEST("l"."created_at"::timestamptz, "l"."updated_at"::timestamptz) + '14 days'::interval > now()
                    OR EXISTS (SELECT 1 FROM "public"."cases" AS "blocker" WHERE "blocker"."location_id" = "l"."id")
                    OR EXISTS (SELECT 1 FROM "public"."devices" AS "blocker" WHERE "blocker"."location_id" = "l"."id")
                    OR EXISTS (
                        SELECT 1 FROM "public"."contacts" AS "ct"
                        WHERE "ct"."location_id" = "l"."id"
                          AND (
                              GREATEST("ct"."created_at"::timestamptz, "ct"."updated_at"::timestamptz) + '14 days'::interval > now()
                              OR "ct"."last_login_at"::timestamptz + '6 months'::interval > now()
                              OR EXISTS (SELECT 1 FROM "public"."cases" AS "blocker" WHERE "blocker"."contact_id" = "ct"."id")
                          )
                    )
                )
          )
    ), "deleted_contacts" AS (
        DELETE FROM "public"."contacts" AS "ct"
        USING "public"."locations" AS "l", "batch" AS "b"
        WHERE "ct"."location_id" = "l"."id"
          AND "l"."customer_id" = "b"."customer_key"
        RETURNING "b"."customer_key", CASE WHEN _purge_locked_stacks.p_archive THEN to_json("ct".*) END AS "row"
    ), "deleted_locations" AS (
        DELETE FROM "public"."locations" AS "l"
        USING "batch" AS "b"
        WHERE "l"."customer_id" = "b"."customer_key"
        RETURNING "b"."customer_key", CASE WHEN _purge_locked_stacks.p_archive THEN to_json("l".*) END AS "row"
    ), "deleted_customers" AS (
        DELETE FROM "public"."customers" AS "c"
        USING "batch" AS "b"
        WHERE "c"."id" = "b"."customer_key"
        RETURNING "b"."customer_key", CASE WHEN _purge_locked_stacks.p_archive THEN to_json("c".*) END AS "row"
    ), "archived" AS (
        -- One GROUP BY over all the deleted rows: joining the RETURNING sets instead makes
        -- the planner (which expects one row from each) pick nested loops, quadratic in the
        -- batch size (bench/results: 24 of 30 ms at 500 stacks, seconds at 2000).
        INSERT INTO "adhoc_gc"."purged" ("run_id", "customer_id", "customer", "locations", "contacts", "owned")
        SELECT _purge_locked_stacks.p_run_id, "d"."customer_key"::text,
               (array_agg("d"."row") FILTER (WHERE "d"."part" = 'customer'))[1],
               coalesce(json_agg("d"."row") FILTER (WHERE "d"."part" = 'location'), '[]'::json),
               coalesce(json_agg("d"."row") FILTER (WHERE "d"."part" = 'contact'), '[]'::json),
               '{}'::json
        FROM (
            SELECT "customer_key", 'customer' AS "part", "row" FROM "deleted_customers"
            UNION ALL
            SELECT "customer_key", 'location', "row" FROM "deleted_locations"
            UNION ALL
            SELECT "customer_key", 'contact', "row" FROM "deleted_contacts"
        ) AS "d"
        WHERE _purge_locked_stacks.p_archive
        GROUP BY "d"."customer_key"
        RETURNING 1
    )
    SELECT (SELECT "b"."customer_key"::text FROM "batch" AS "b" ORDER BY "b"."customer_key" DESC LIMIT 1),
           (SELECT count(*) FROM "batch"),
           (SELECT count(*) FROM "deleted_customers"),
           (SELECT count(*) FROM "deleted_locations"),
           (SELECT count(*) FROM "deleted_contacts")
    INTO v_last_key, v_examined, v_customers, v_locations, v_contacts;

    RETURN QUERY SELECT _purge_locked_stacks.p_customer_keys[cardinality(_purge_locked_stacks.p_customer_keys)]::text, false,
                        cardinality(_purge_locked_stacks.p_customer_keys), _purge_locked_stacks.v_customers, _purge_locked_stacks.v_locations, _purge_locked_stacks.v_contacts;
END;
$function$;

REVOKE ALL ON FUNCTION "adhoc_gc"."_purge_locked_stacks"(bigint, boolean, anyarray) FROM PUBLIC;

COMMENT ON FUNCTION "adhoc_gc"."_purge_locked_stacks"(bigint, boolean, anyarray) IS
    'adhoc-gc internal: locks and deletes the stacks of customers locked by purge_batch. Do not call directly.';

-- _record_unstarted_run: a purge that did not start still leaves a row in runs, so its
-- schedule can be seen to have fired: 'skipped' (another purge holds the lock) or
-- 'refused' (a guard rail or the foreign-key audit stopped it), with the reason.
CREATE OR REPLACE FUNCTION "adhoc_gc"."_record_unstarted_run"(
    p_trigger text,
    p_batch_size integer,
    p_status text,
    p_reason text
)
RETURNS bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    INSERT INTO "adhoc_gc"."runs"
        ("trigger", "batch_size", "status", "finished_at", "error", "mapping_fingerprint")
    VALUES (p_trigger, p_batch_size, p_status, clock_timestamp(), p_reason, 'a148b87f681b0822')
    RETURNING "id";
$function$;

REVOKE ALL ON FUNCTION "adhoc_gc"."_record_unstarted_run"(text, integer, text, text) FROM PUBLIC;

COMMENT ON FUNCTION "adhoc_gc"."_record_unstarted_run"(text, integer, text, text) IS
    'adhoc-gc internal: records a purge that was skipped or refused, with the reason.';

-- _release_purge_lock: gives back the lock _try_purge_lock took in this session.
CREATE OR REPLACE FUNCTION "adhoc_gc"."_release_purge_lock"()
RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT pg_advisory_unlock(1633970275, hashtext('adhoc_gc'));
$function$;

REVOKE ALL ON FUNCTION "adhoc_gc"."_release_purge_lock"() FROM PUBLIC;

COMMENT ON FUNCTION "adhoc_gc"."_release_purge_lock"() IS
    'adhoc-gc internal: releases the one-purge-at-a-time advisory lock held by this session.';

-- _replica_lag: the largest replay lag of any streaming standby ('0' without standbys), or
-- NULL when this function's owner may not see it (pg_stat_replication shows lag columns
-- only to superusers and members of pg_read_all_stats, e.g. through pg_monitor).
CREATE OR REPLACE FUNCTION "adhoc_gc"."_replica_lag"()
RETURNS interval
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT CASE
        WHEN (SELECT "rolsuper" FROM pg_roles WHERE "rolname" = current_user)
          OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')
        -- replay_lag keeps growing while a standby falls behind; NULL once it has caught up
        THEN coalesce((SELECT max("replay_lag") FROM pg_stat_replication), interval '0')
    END;
$function$;

REVOKE ALL ON FUNCTION "adhoc_gc"."_replica_lag"() FROM PUBLIC;

COMMENT ON FUNCTION "adhoc_gc"."_replica_lag"() IS
    'adhoc-gc internal: the largest standby replay lag, or NULL when the owner lacks pg_read_all_stats.';

-- _restore_rows: inserts archived rows (a JSON array of to_json(row) objects) back into
-- p_table with their original keys. Columns are the table's current ones, less generated
-- columns; keys absent from the JSON (columns added since) get NULL.
CREATE OR REPLACE FUNCTION "adhoc_gc"."_restore_rows"(p_table regclass, p_rows json)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    v_columns text;
    v_count bigint;
BEGIN
    IF p_rows IS NULL OR json_array_length(p_rows) = 0 THEN
        RETURN 0;
    END IF;
    SELECT string_agg(quote_ident("attname"), ', ' ORDER BY "attnum") INTO v_columns
    FROM pg_attribute
    WHERE "attrelid" = p_table AND "attnum" > 0 AND NOT "attisdropped" AND "attgenerated" = '';
    EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM json_populate_recordset(NULL::%s, $1)',
                   p_table, v_columns, v_columns, p_table)
        USING p_rows;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$function$;

REVOKE ALL ON FUNCTION "adhoc_gc"."_restore_rows"(regclass, json) FROM PUBLIC;

COMMENT ON FUNCTION "adhoc_gc"."_restore_rows"(regclass, json) IS
    'adhoc-gc internal: puts archived rows back into their table with their original keys.';

-- _start_run: records a new purge run as running and returns its id. Call it holding the
-- purge lock: any other run still marked running then belongs to a session that died
-- without closing it, and is marked abandoned. The caller commits before the first batch,
-- so a crash leaves a trace.
CREATE OR REPLACE FUNCTION "adhoc_gc"."_start_run"(
    p_trigger text,
    p_batch_size integer,
    p_max_batches integer,
    p_max_runtime interval,
    p_archive boolean
)
RETURNS bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    UPDATE "adhoc_gc"."runs"
    SET "status" = 'abandoned',
        "finished_at" = clock_timestamp(),
        "error" = 'the session running it ended before the run finished'
    WHERE "status" = 'running';

    INSERT INTO "adhoc_gc"."runs"
        ("trigger", "batch_size", "max_batches", "max_runtime", "archive", "mapping_fingerprint")
    VALUES (p_trigger, p_batch_size, p_max_batches, p_max_runtime, p_archive, 'a148b87f681b0822')
    RETURNING "id";
$function$;

REVOKE ALL ON FUNCTION "adhoc_gc"."_start_run"(text, integer, integer, interval, boolean) FROM PUBLIC;

COMMENT ON FUNCTION "adhoc_gc"."_start_run"(text, integer, integer, interval, boolean) IS
    'adhoc-gc internal: records a new purge run (marking runs of dead sessions abandoned) and returns its id.';

-- _try_purge_lock: one purge at a time per package schema, whoever starts it (runner,
-- pg_cron or a person). A session-level advisory lock: it survives the per-batch COMMITs
-- and is released when the session ends, so a crashed purge never keeps it.
CREATE OR REPLACE FUNCTION "adhoc_gc"."_try_purge_lock"()
RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    -- First key: 'adhc' in ASCII, so the lock is told apart from the application's own.
    SELECT pg_try_advisory_lock(1633970275, hashtext('adhoc_gc'));
$function$;

REVOKE ALL ON FUNCTION "adhoc_gc"."_try_purge_lock"() FROM PUBLIC;

COMMENT ON FUNCTION "adhoc_gc"."_try_purge_lock"() IS
    'adhoc-gc internal: takes the one-purge-at-a-time advisory lock for this session, if free.';

-- _unmapped_foreign_keys: the foreign-key audit (sql/macros/audit.sql). Every purge refuses
-- to start while this returns a row.
CREATE OR REPLACE FUNCTION "adhoc_gc"."_unmapped_foreign_keys"()
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
WITH "mapped" ("schema", "table", "column", "target_schema", "target_table") AS (
    VALUES
        ('public', 'locations', 'customer_id',
         'public', 'customers'),
        ('public', 'contacts', 'location_id',
         'public', 'locations')
        , ('public', 'cases', 'location_id',
           'public', 'locations')
        , ('public', 'cases', 'contact_id',
           'public', 'contacts')
        , ('public', 'devices', 'location_id',
           'public', 'locations')
), "stack_tables" ("part", "schema", "table") AS (
    VALUES ('customer', 'public', 'customers'),
           ('location', 'public', 'locations'),
           ('contact', 'public', 'contacts')
), "foreign_keys" AS (
    SELECT
        "con"."conname"::text AS "constraint_name",
        "src_ns"."nspname"::text AS "schema",
        "src"."relname"::text AS "table",
        ARRAY(
            SELECT "a"."attname"::text
            FROM unnest("con"."conkey") WITH ORDINALITY AS "k"("attnum", "position")
            JOIN pg_catalog.pg_attribute AS "a" ON "a"."attrelid" = "con"."conrelid" AND "a"."attnum" = "k"."attnum"
            ORDER BY "k"."position"
        ) AS "columns",
        "st"."part" AS "references",
        "st"."schema" AS "target_schema",
        "st"."table" AS "target_table",
        CASE "con"."confdeltype"
            WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE'
            WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT'
        END AS "on_delete"
    FROM pg_catalog.pg_constraint AS "con"
    JOIN pg_catalog.pg_class AS "src" ON "src"."oid" = "con"."conrelid"
    JOIN pg_catalog.pg_namespace AS "src_ns" ON "src_ns"."oid" = "src"."relnamespace"
    JOIN pg_catalog.pg_class AS "tgt" ON "tgt"."oid" = "con"."confrelid"
    JOIN pg_catalog.pg_namespace AS "tgt_ns" ON "tgt_ns"."oid" = "tgt"."relnamespace"
    JOIN "stack_tables" AS "st" ON "st"."schema" = "tgt_ns"."nspname" AND "st"."table" = "tgt"."relname"
    WHERE "con"."contype" = 'f'
      -- a partition's copy of its parent's key is audited once, on the parent
      AND "con"."conparentid" = 0
)
SELECT "fk"."constraint_name", "fk"."schema", "fk"."table", "fk"."columns", "fk"."references",
       "fk"."target_schema", "fk"."target_table", "fk"."on_delete"
FROM "foreign_keys" AS "fk"
WHERE NOT EXISTS (
    SELECT 1 FROM "mapped" AS "m"
    WHERE cardinality("fk"."columns") = 1
      AND "m"."schema" = "fk"."schema" AND "m"."table" = "fk"."table" AND "m"."column" = "fk"."columns"[1]
      AND "m"."target_schema" = "fk"."target_schema" AND "m"."target_table" = "fk"."target_table"
)
ORDER BY "fk"."schema", "fk"."table", "fk"."constraint_name"
$function$;

REVOKE ALL ON FUNCTION "adhoc_gc"."_unmapped_foreign_keys"() FROM PUBLIC;

COMMENT ON FUNCTION "adhoc_gc"."_unmapped_foreign_keys"() IS
    'adhoc-gc internal: foreign keys pointing at the stack tables that the mapping neither maps as a blocker nor as owned.';

-- deployed_mapping: the fingerprint of the mapping these objects were rendered from, so a
-- runner holding a different mapping can refuse to purge with it. Open to every role
-- (PUBLIC keeps EXECUTE): it tells nothing about customers.
CREATE OR REPLACE FUNCTION "adhoc_gc"."deployed_mapping"()
RETURNS TABLE ("fingerprint" text, "package_version" text)
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT 'a148b87f681b0822'::text, '0.1.0'::text;
$function$;

COMMENT ON FUNCTION "adhoc_gc"."deployed_mapping"() IS
    'adhoc-gc: fingerprint of the mapping the deployed views and functions were rendered from.';

-- explain_customer: whether a customer exists and was created ad hoc, for `adhoc-gc explain`
-- (the eligibility view has rows for ad-hoc customers only). SECURITY DEFINER so that an
-- analyst or operator needs no privilege on the customer table itself.
CREATE OR REPLACE FUNCTION "adhoc_gc"."explain_customer"(p_customer_id text)
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
    v_key "public"."customers"."id"%TYPE := p_customer_id;
BEGIN
    RETURN QUERY
    SELECT "c"."id"::text, "c"."is_adhoc" IS TRUE, "c"."is_adhoc"::text
    FROM "public"."customers" AS "c"
    WHERE "c"."id" = explain_customer.v_key;
END;
$function$;

REVOKE ALL ON FUNCTION "adhoc_gc"."explain_customer"(text) FROM PUBLIC;

COMMENT ON FUNCTION "adhoc_gc"."explain_customer"(text) IS
    'adhoc-gc: whether the customer with this key exists and was created ad hoc (for adhoc-gc explain).';

-- forecast_days: how many stacks become eligible on each of the next p_days days if nothing
-- changes (no new activity, login or blocker), from today (the session's time zone), with
-- the running total. The `forecast` view is forecast_days(30). Stacks a blocker holds never
-- become eligible on their own and are not counted; nor are those eligible already.
-- Not SECURITY DEFINER: it reads the eligibility view with the caller's privileges.
-- PL/pgSQL, so the view it reads need not exist yet when it is created (views come after
-- functions in a deploy).
CREATE OR REPLACE FUNCTION "adhoc_gc"."forecast_days"(p_days integer)
RETURNS TABLE ("day" date, "becoming_eligible" bigint, "cumulative" numeric)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    IF p_days IS NULL OR p_days < 1 OR p_days > 3660 THEN
        RAISE EXCEPTION 'adhoc-gc: forecast_days needs a number of days from 1 to 3660, not %',
            coalesce(p_days::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The eligibility view once, bucketed by day, then joined to the days: a join on the
    -- time range made the planner read the view once per day (137 s for 30 days at 1M).
    RETURN QUERY
    WITH "upcoming" AS MATERIALIZED (
        SELECT date_trunc('day', "e"."eligible_at") AS "day", count(*) AS "stacks"
        FROM "adhoc_gc"."eligibility" AS "e"
        WHERE NOT "e"."eligible"
          AND "e"."eligible_at" >= date_trunc('day', now())
          AND "e"."eligible_at" < date_trunc('day', now()) + p_days * interval '1 day'
        GROUP BY 1
    )
    SELECT
        "d"."day"::date,
        coalesce("u"."stacks", 0),
        sum(coalesce("u"."stacks", 0)) OVER (ORDER BY "d"."day")
    FROM generate_series(date_trunc('day', now()), date_trunc('day', now()) + (p_days - 1) * interval '1 day',
                         interval '1 day') AS "d"("day")
    LEFT JOIN "upcoming" AS "u" ON "u"."day" = "d"."day"
    ORDER BY "d"."day";
END;
$function$;

REVOKE ALL ON FUNCTION "adhoc_gc"."forecast_days"(integer) FROM PUBLIC;

COMMENT ON FUNCTION "adhoc_gc"."forecast_days"(integer) IS
    'adhoc-gc: for each of the next p_days days (1 to 3660, from today), how many stacks become eligible that day if nothing changes, and the running total; the forecast view is forecast_days(30).';

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
CREATE OR REPLACE FUNCTION "adhoc_gc"."purge_batch"(
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
    v_from "public"."customers"."id"%TYPE;
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
    SELECT "status" INTO purge_batch.v_status FROM "adhoc_gc"."runs" WHERE "id" = purge_batch.p_run_id FOR UPDATE;
    IF purge_batch.v_status IS DISTINCT FROM 'running' THEN
        RAISE EXCEPTION 'adhoc-gc: run % is not running (status %)', purge_batch.p_run_id, coalesce(purge_batch.v_status, 'unknown')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Keyset start: the first key, inclusive, or the key after p_after_key. Written as one
    -- range condition so every batch is an index range scan from where the last one stopped.
    IF purge_batch.p_after_key IS NULL THEN
        -- ORDER BY ... LIMIT 1, not min(): PostgreSQL has no min() for uuid keys.
        SELECT "c"."id" INTO purge_batch.v_from FROM "public"."customers" AS "c"
        ORDER BY "c"."id" LIMIT 1;
    ELSE
        purge_batch.v_from := purge_batch.p_after_key;
    END IF;

    -- The whole batch in one statement. Rows the application holds are waited for 50 ms at
    -- most (well under deadlock_timeout, so the application never sees a deadlock error);
    -- then the statement is undone (the block is a subtransaction) and the batch taken again
    -- with every row locked SKIP LOCKED first.
    BEGIN
        PERFORM set_config('lock_timeout', '50ms', true);
        WITH "batch" AS (
            SELECT "c"."id" AS "customer_key"
            FROM "public"."customers" AS "c"
            WHERE "c"."id" >= purge_batch.v_from
              AND ("c"."id" > purge_batch.v_from OR purge_batch.p_after_key IS NULL)
              AND "c"."is_adhoc" IS TRUE
              AND GREATEST("c"."created_at"::timestamptz, "c"."updated_at"::timestamptz) + '14 days'::interval <= now()
              AND NOT EXISTS (
                  SELECT 1 FROM "public"."locations" AS "l"
                  WHERE "l"."customer_id" = "c"."id"
                    AND (
                        GREATEST("l"."created_at"::timestamptz, "l"."updated_at"::timestamptz) + '14 days'::interval > now()
                        OR EXISTS (SELECT 1 FROM "public"."cases" AS "blocker" WHERE "blocker"."location_id" = "l"."id")
                        OR EXISTS (SELECT 1 FROM "public"."devices" AS "blocker" WHERE "blocker"."location_id" = "l"."id")
                        OR EXISTS (
                            SELECT 1 FROM "public"."contacts" AS "ct"
                            WHERE "ct"."location_id" = "l"."id"
                              AND (
                                  GREATEST("ct"."created_at"::timestamptz, "ct"."updated_at"::timestamptz) + '14 days'::interval > now()
                                  OR "ct"."last_login_at"::timestamptz + '6 months'::interval > now()
                                  OR EXISTS (SELECT 1 FROM "public"."cases" AS "blocker" WHERE "blocker"."contact_id" = "ct"."id")
                              )
                        )
                    )
              )
            ORDER BY "c"."id"
            LIMIT purge_batch.p_batch_size
            FOR UPDATE OF "c" SKIP LOCKED
        ), "deleted_contacts" AS (
            DELETE FROM "public"."contacts" AS "ct"
            USING "public"."locations" AS "l", "batch" AS "b"
            WHERE "ct"."location_id" = "l"."id"
              AND "l"."customer_id" = "b"."customer_key"
            RETURNING "b"."customer_key", CASE WHEN purge_batch.p_archive THEN to_json("ct".*) END AS "row"
        ), "deleted_locations" AS (
            DELETE FROM "public"."locations" AS "l"
            USING "batch" AS "b"
            WHERE "l"."customer_id" = "b"."customer_key"
            RETURNING "b"."customer_key", CASE WHEN purge_batch.p_archive THEN to_json("l".*) END AS "row"
        ), "deleted_customers" AS (
            DELETE FROM "public"."customers" AS "c"
            USING "batch" AS "b"
            WHERE "c"."id" = "b"."customer_key"
            RETURNING "b"."customer_key", CASE WHEN purge_batch.p_archive THEN to_json("c".*) END AS "row"
        ), "archived" AS (
            -- One GROUP BY over all the deleted rows: joining the RETURNING sets instead makes
            -- the planner (which expects one row from each) pick nested loops, quadratic in the
            -- batch size (bench/results: 24 of 30 ms at 500 stacks, seconds at 2000).
            INSERT INTO "adhoc_gc"."purged" ("run_id", "customer_id", "customer", "locations", "contacts", "owned")
            SELECT purge_batch.p_run_id, "d"."customer_key"::text,
                   (array_agg("d"."row") FILTER (WHERE "d"."part" = 'customer'))[1],
                   coalesce(json_agg("d"."row") FILTER (WHERE "d"."part" = 'location'), '[]'::json),
                   coalesce(json_agg("d"."row") FILTER (WHERE "d"."part" = 'contact'), '[]'::json),
                   '{}'::json
            FROM (
                SELECT "customer_key", 'customer' AS "part", "row" FROM "deleted_customers"
                UNION ALL
                SELECT "customer_key", 'location', "row" FROM "deleted_locations"
                UNION ALL
                SELECT "customer_key", 'contact', "row" FROM "deleted_contacts"
            ) AS "d"
            WHERE purge_batch.p_archive
            GROUP BY "d"."customer_key"
            RETURNING 1
        )
        SELECT (SELECT "b"."customer_key"::text FROM "batch" AS "b" ORDER BY "b"."customer_key" DESC LIMIT 1),
               (SELECT count(*) FROM "batch"),
               (SELECT count(*) FROM "deleted_customers"),
               (SELECT count(*) FROM "deleted_locations"),
               (SELECT count(*) FROM "deleted_contacts")
        INTO v_last_key, v_examined, v_customers, v_locations, v_contacts;
    EXCEPTION WHEN lock_not_available THEN
        purge_batch.v_held := true;
    END;
    -- [guard] lock_timeout bounds what the careful way cannot lock ahead (a trigger's
    -- writes, a cascade).
    PERFORM set_config('lock_timeout',
                       (extract(epoch FROM '5 seconds'::interval) * 1000)::bigint::text || 'ms',
                       true);
    IF purge_batch.v_held THEN
        SELECT "r"."next_after_key", "r"."examined",
               "r"."customers_deleted", "r"."locations_deleted", "r"."contacts_deleted"
        INTO purge_batch.v_last_key, purge_batch.v_examined, purge_batch.v_customers, purge_batch.v_locations, purge_batch.v_contacts
        FROM "adhoc_gc"."_purge_locked_stacks"(
            purge_batch.p_run_id,
            purge_batch.p_archive,
            ARRAY(SELECT "c"."id" AS "customer_key"
                  FROM "public"."customers" AS "c"
                  WHERE "c"."id" >= purge_batch.v_from
                    AND ("c"."id" > purge_batch.v_from OR purge_batch.p_after_key IS NULL)
                    AND "c"."is_adhoc" IS TRUE
                    AND GREATEST("c"."created_at"::timestamptz, "c"."updated_at"::timestamptz) + '14 days'::interval <= now()
                    AND NOT EXISTS (
                        SELECT 1 FROM "public"."locations" AS "l"
                        WHERE "l"."customer_id" = "c"."id"
                          AND (
                              GREATEST("l"."created_at"::timestamptz, "l"."updated_at"::timestamptz) + '14 days'::interval > now()
                              OR EXISTS (SELECT 1 FROM "public"."cases" AS "blocker" WHERE "blocker"."location_id" = "l"."id")
                              OR EXISTS (SELECT 1 FROM "public"."devices" AS "blocker" WHERE "blocker"."location_id" = "l"."id")
                              OR EXISTS (
                                  SELECT 1 FROM "public"."contacts" AS "ct"
                                  WHERE "ct"."location_id" = "l"."id"
                                    AND (
                                        GREATEST("ct"."created_at"::timestamptz, "ct"."updated_at"::timestamptz) + '14 days'::interval > now()
                                        OR "ct"."last_login_at"::timestamptz + '6 months'::interval > now()
                                        OR EXISTS (SELECT 1 FROM "public"."cases" AS "blocker" WHERE "blocker"."contact_id" = "ct"."id")
                                    )
                              )
                          )
                    )
                  ORDER BY "c"."id"
                  LIMIT purge_batch.p_batch_size
                  FOR UPDATE OF "c" SKIP LOCKED)
        ) AS "r";
    END IF;

    IF purge_batch.v_examined = 0 THEN
        RETURN QUERY SELECT NULL::text, true, 0, 0, 0, 0;
        RETURN;
    END IF;
    UPDATE "adhoc_gc"."runs"
    SET "batches" = "batches" + 1,
        "customers_deleted" = "customers_deleted" + purge_batch.v_customers,
        "locations_deleted" = "locations_deleted" + purge_batch.v_locations,
        "contacts_deleted" = "contacts_deleted" + purge_batch.v_contacts,
        "last_key" = purge_batch.v_last_key
    WHERE "id" = purge_batch.p_run_id;
    RETURN QUERY SELECT purge_batch.v_last_key, false, purge_batch.v_examined, purge_batch.v_customers, purge_batch.v_locations, purge_batch.v_contacts;
END;
$function$;

REVOKE ALL ON FUNCTION "adhoc_gc"."purge_batch"(bigint, text, integer, boolean) FROM PUBLIC;

COMMENT ON FUNCTION "adhoc_gc"."purge_batch"(bigint, text, integer, boolean) IS
    'adhoc-gc: deletes the next batch of eligible stacks after p_after_key (keyset order) for run p_run_id, re-checking every rule; returns the key to continue after. One call per transaction.';

-- restore: puts archived stacks back, with their original keys, in one transaction: all
-- stacks of run p_run_id, or the stack of customer p_customer_id (or both filters at once).
-- Refuses the whole restore if any key is taken again. The archive rows are marked
-- restored_at, so a stack is not restored twice.
CREATE OR REPLACE FUNCTION "adhoc_gc"."restore"(p_run_id bigint, p_customer_id text)
RETURNS TABLE ("stacks" bigint, "customers" bigint, "locations" bigint, "contacts" bigint, "owned_rows" bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
-- Parameters and variables are qualified (restore.name): an application column of the same
-- name in a statement would otherwise be taken for the variable, or the variable for it.
<<restore>>
DECLARE
    v_stacks bigint;
    v_customers bigint;
    v_locations bigint;
    v_contacts bigint;
    v_owned bigint := 0;
    v_message text;
    v_detail text;
BEGIN
    IF restore.p_run_id IS NULL AND restore.p_customer_id IS NULL THEN
        RAISE EXCEPTION 'adhoc-gc: restore needs a run id or a customer key' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    CREATE TEMPORARY TABLE "adhoc_gc_restoring" ON COMMIT DROP AS
    SELECT "p".*
    FROM "adhoc_gc"."purged" AS "p"
    WHERE (restore.p_run_id IS NULL OR "p"."run_id" = restore.p_run_id)
      AND (restore.p_customer_id IS NULL OR "p"."customer_id" = restore.p_customer_id)
      AND "p"."restored_at" IS NULL;
    SELECT count(*) INTO restore.v_stacks FROM pg_temp."adhoc_gc_restoring";
    IF restore.v_stacks = 0 THEN
        RAISE EXCEPTION 'adhoc-gc: nothing to restore for run %, customer % (never archived, already restored, or past [retention])',
            coalesce(restore.p_run_id::text, 'any'), coalesce(restore.p_customer_id, 'any')
            USING ERRCODE = 'no_data_found';
    END IF;
    BEGIN
        -- Parents first, so the foreign keys hold at every step.
        restore.v_customers := "adhoc_gc"."_restore_rows"('"public"."customers"'::regclass,
            (SELECT json_agg("r"."customer") FROM pg_temp."adhoc_gc_restoring" AS "r"));
        restore.v_locations := "adhoc_gc"."_restore_rows"('"public"."locations"'::regclass,
            (SELECT json_agg("row") FROM pg_temp."adhoc_gc_restoring" AS "r", json_array_elements("r"."locations") AS "row"));
        restore.v_contacts := "adhoc_gc"."_restore_rows"('"public"."contacts"'::regclass,
            (SELECT json_agg("row") FROM pg_temp."adhoc_gc_restoring" AS "r", json_array_elements("r"."contacts") AS "row"));
    EXCEPTION WHEN unique_violation THEN
        GET STACKED DIAGNOSTICS restore.v_message = MESSAGE_TEXT, restore.v_detail = PG_EXCEPTION_DETAIL;
        RAISE EXCEPTION 'adhoc-gc: cannot restore: a key is taken again (%: %); nothing was restored',
            restore.v_message, restore.v_detail USING ERRCODE = 'unique_violation';
    END;
    UPDATE "adhoc_gc"."purged" AS "p"
    SET "restored_at" = now()
    FROM pg_temp."adhoc_gc_restoring" AS "r"
    WHERE "p"."run_id" = "r"."run_id" AND "p"."customer_id" = "r"."customer_id" AND "p"."restored_at" IS NULL;
    DROP TABLE pg_temp."adhoc_gc_restoring";
    RETURN QUERY SELECT restore.v_stacks, restore.v_customers, restore.v_locations, restore.v_contacts, restore.v_owned;
END;
$function$;

REVOKE ALL ON FUNCTION "adhoc_gc"."restore"(bigint, text) FROM PUBLIC;

COMMENT ON FUNCTION "adhoc_gc"."restore"(bigint, text) IS
    'adhoc-gc: puts archived stacks back with their original keys (a run, a customer, or both filters), all or nothing; refuses if a key is taken again.';

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
CREATE OR REPLACE PROCEDURE "adhoc_gc"."purge"(
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
    IF NOT "adhoc_gc"."_try_purge_lock"() THEN
        PERFORM "adhoc_gc"."_record_unstarted_run"(v_trigger, "purge"."batch_size", 'skipped',
                                                         'another purge is running');
        RAISE NOTICE 'adhoc-gc: another purge is running; this one is skipped';
        RETURN;
    END IF;

    -- This session holds the lock from here on: an error (or a cancel) before the run
    -- starts lets go of it before it is raised, like one during a batch.
    BEGIN
        -- [retention] first: every purge that holds the lock prunes the package's history,
        -- whether it then succeeds, fails or is refused (committed with the run's first row).
        PERFORM "adhoc_gc"."_apply_retention"();
        SELECT pg_catalog.string_agg(pg_catalog.format(
                   'foreign key %I on %I.%I (%s) references the %s table and is neither a blocker nor owned',
                   "fk"."constraint_name", "fk"."schema", "fk"."table",
                   pg_catalog.array_to_string("fk"."columns", ', '), "fk"."references"), '; ')
        INTO v_refusal
        FROM "adhoc_gc"."_unmapped_foreign_keys"() AS "fk";
        IF v_refusal IS NULL THEN
            v_refusal := "adhoc_gc"."_guard_refusal"("purge"."force");
        END IF;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT, v_sqlstate = RETURNED_SQLSTATE;
    END;
    IF v_error IS NOT NULL THEN
        PERFORM "adhoc_gc"."_release_purge_lock"();
        RAISE EXCEPTION 'adhoc-gc: purge failed before its run started: %', v_error USING ERRCODE = v_sqlstate;
    END IF;
    IF v_refusal IS NOT NULL THEN
        PERFORM "adhoc_gc"."_record_unstarted_run"(v_trigger, "purge"."batch_size", 'refused', v_refusal);
        PERFORM "adhoc_gc"."_release_purge_lock"();
        COMMIT;
        -- An error, so that pg_cron's job_run_details shows it too.
        RAISE EXCEPTION 'adhoc-gc: purge refused: %', v_refusal USING ERRCODE = 'check_violation';
    END IF;

    v_run_id := "adhoc_gc"."_start_run"(v_trigger, "purge"."batch_size", "purge"."max_batches",
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
                FROM "adhoc_gc"."purge_batch"(v_run_id, v_after_key, v_batch_size, "purge"."archive");
                -- [guard] statement_timeout, per batch. PostgreSQL arms statement_timeout once
                -- per statement a client sends (here: the whole CALL), so setting it in here
                -- could not cut a batch short. A batch that ran longer is undone instead (the
                -- block is its subtransaction) and fails the run, as the runner's batch would.
                v_batch_took := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) v_batch_started;
                IF v_batch_took OPERATOR(pg_catalog.>) '5 minutes'::interval THEN
                    RAISE EXCEPTION 'canceling batch % due to statement timeout: it took % (over [guard] statement_timeout %) and was undone; use a smaller batch_size',
                        v_batches OPERATOR(pg_catalog.+) 1, v_batch_took, '5 minutes'::interval
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
            -- transaction, whose snapshot sees the change; as the runner does, 5 times in a row
            -- at one size, then at half the size, down to a batch of one.
            IF v_sqlstate IN ('40001', '23503') AND (v_races OPERATOR(pg_catalog.<) 5
                                                    OR v_batch_size OPERATOR(pg_catalog.>) 1) THEN
                IF v_races OPERATOR(pg_catalog.<) 5 THEN
                    v_races := v_races OPERATOR(pg_catalog.+) 1;
                ELSE
                    v_batch_size := v_batch_size OPERATOR(pg_catalog./) 2;
                    v_races := 0;
                END IF;
                v_retries := v_retries OPERATOR(pg_catalog.+) 1;
                v_error := NULL;
                v_sqlstate := NULL;
                PERFORM "adhoc_gc"."_note_run"(v_run_id, NULL, v_retries, v_throttled);
                COMMIT;
                CONTINUE;
            END IF;
        END IF;
        IF v_error IS NOT NULL THEN
            -- Record why, let go of the lock, then raise the same error so pg_cron shows the
            -- run as failed.
            PERFORM "adhoc_gc"."_finish_run"(v_run_id, 'failed', v_error);
            PERFORM "adhoc_gc"."_release_purge_lock"();
            COMMIT;
            RAISE EXCEPTION 'adhoc-gc: purge run % failed: %', v_run_id, v_error USING ERRCODE = v_sqlstate;
        END IF;
        COMMIT;
        EXIT WHEN v_out_of_time OR v_batch."done";
        v_races := 0;
        v_batches := v_batches OPERATOR(pg_catalog.+) 1;
        v_after_key := v_batch."next_after_key";
    END LOOP;

    PERFORM "adhoc_gc"."_finish_run"(v_run_id, 'succeeded', NULL);
    PERFORM "adhoc_gc"."_release_purge_lock"();
    COMMIT;
END;
$procedure$;

REVOKE ALL ON PROCEDURE "adhoc_gc"."purge"(integer, integer, interval, interval, boolean, text, boolean) FROM PUBLIC;

COMMENT ON PROCEDURE "adhoc_gc"."purge"(integer, integer, interval, interval, boolean, text, boolean) IS
    'adhoc-gc: purges in batches of batch_size, committing after each, until no candidate is left, max_batches or max_runtime; one purge at a time; refuses while the foreign-key audit or a [guard] cap objects (force => true passes the cap). CALL it on its own (pg_cron: as the whole job command).';

-- eligibility: one row per ad-hoc customer, saying whether its stack may be deleted now,
-- what holds it (blocked_by) and when it becomes eligible if nothing changes (eligible_at).
-- The same rules as the candidates view, stated with aggregates so they can explain.
CREATE OR REPLACE VIEW "adhoc_gc"."eligibility" AS
SELECT
    "c"."id" AS "customer_id",
    coalesce("verdict"."eligible_at" <= now(), false) AS "eligible",
    "verdict"."eligible_at",
    "stack"."last_activity_at",
    "stack"."last_login_at",
    "verdict"."blocked_by",
    coalesce("locations"."location_ids", '{}') AS "location_ids",
    coalesce("contacts"."contact_ids", '{}') AS "contact_ids"
FROM "public"."customers" AS "c"
-- Per customer, through the foreign-key indexes, one walk over its locations and one over
-- its contacts, each also asking its blockers: the view reads only ad-hoc customers'
-- stacks. Grouping the whole locations and contacts tables first (then joining), and a
-- walk per blocker, took 15.9 s for `WHERE eligible` at 1M (bench/results).
CROSS JOIN LATERAL (
    SELECT
        array_agg("l"."id" ORDER BY "l"."id") AS "location_ids",
        max(GREATEST("l"."created_at"::timestamptz, "l"."updated_at"::timestamptz)) AS "last_activity_at"
        , bool_or(EXISTS (SELECT 1 FROM "public"."cases" AS "blocker" WHERE "blocker"."location_id" = "l"."id")) AS "held_1"
        , bool_or(EXISTS (SELECT 1 FROM "public"."devices" AS "blocker" WHERE "blocker"."location_id" = "l"."id")) AS "held_3"
    FROM "public"."locations" AS "l"
    WHERE "l"."customer_id" = "c"."id"
) AS "locations"
CROSS JOIN LATERAL (
    SELECT
        array_agg("ct"."id" ORDER BY "ct"."id") AS "contact_ids",
        max(GREATEST("ct"."created_at"::timestamptz, "ct"."updated_at"::timestamptz)) AS "last_activity_at",
        max("ct"."last_login_at"::timestamptz) AS "last_login_at"
        , bool_or(EXISTS (SELECT 1 FROM "public"."cases" AS "blocker" WHERE "blocker"."contact_id" = "ct"."id")) AS "held_2"
    FROM "public"."locations" AS "l"
    JOIN "public"."contacts" AS "ct" ON "ct"."location_id" = "l"."id"
    WHERE "l"."customer_id" = "c"."id"
) AS "contacts"
CROSS JOIN LATERAL (
    SELECT
        GREATEST("c"."created_at"::timestamptz, "c"."updated_at"::timestamptz) AS "customer_activity_at",
        GREATEST(GREATEST("c"."created_at"::timestamptz, "c"."updated_at"::timestamptz), "locations"."last_activity_at", "contacts"."last_activity_at") AS "last_activity_at",
        "contacts"."last_login_at"
) AS "stack"
CROSS JOIN LATERAL (
    SELECT array_remove(ARRAY[
        CASE WHEN "locations"."held_1" THEN 'location_case' END,
        CASE WHEN "contacts"."held_2" THEN 'contact_case' END,
        CASE WHEN "locations"."held_3" THEN 'location_device' END
    ]::text[], NULL) AS "held_by"
) AS "blockers"
CROSS JOIN LATERAL (
    SELECT
        -- NULL while a blocker holds the stack, or while the customer row has no activity
        -- value at all (nothing tells how old it is).
        CASE WHEN cardinality("blockers"."held_by") = 0 AND "stack"."customer_activity_at" IS NOT NULL
             THEN GREATEST(
                 "stack"."last_activity_at" + '14 days'::interval,
                 "stack"."last_login_at" + '6 months'::interval
             )
        END AS "eligible_at",
        array_remove(ARRAY[
            CASE WHEN "stack"."customer_activity_at" IS NULL
                   OR "stack"."last_activity_at" + '14 days'::interval > now() THEN 'activity' END,
            CASE WHEN "stack"."last_login_at" + '6 months'::interval > now() THEN 'login' END
        ]::text[], NULL) || "blockers"."held_by" AS "blocked_by"
) AS "verdict"
WHERE "c"."is_adhoc" IS TRUE;

COMMENT ON VIEW "adhoc_gc"."eligibility" IS
    'adhoc-gc: one row per ad-hoc customer: eligible now or not, what holds it (blocked_by: activity, login, or a blocker name) and when it becomes eligible if nothing changes (eligible_at; NULL while a blocker holds it).';

-- blocked_summary: how many ad-hoc customers each rule or blocker holds, and how many are
-- eligible now. A customer held for two reasons counts under both, so the percentages
-- (of all ad-hoc customers) can add up to more than 100.
CREATE OR REPLACE VIEW "adhoc_gc"."blocked_summary" AS
WITH "verdicts" AS MATERIALIZED (
    SELECT "e"."eligible", "e"."blocked_by" FROM "adhoc_gc"."eligibility" AS "e"
)
SELECT "reason", count(*) AS "customers",
       round(100.0 * count(*) / nullif((SELECT count(*) FROM "verdicts"), 0), 1) AS "percent_of_adhoc"
FROM (
    SELECT 'eligible now' AS "reason" FROM "verdicts" WHERE "eligible"
    UNION ALL
    SELECT "held"."reason" FROM "verdicts", unnest("verdicts"."blocked_by") AS "held"("reason")
) AS "reasons"
GROUP BY "reason";

COMMENT ON VIEW "adhoc_gc"."blocked_summary" IS
    'adhoc-gc: per reason (eligible now, activity, login, or a blocker name), how many ad-hoc customers it holds and their percentage of all ad-hoc customers.';

-- candidates: one row per ad-hoc customer whose whole stack may be deleted now.
-- The batch function deletes exactly these (re-checked at delete time).
CREATE OR REPLACE VIEW "adhoc_gc"."candidates" AS
SELECT
    "c"."id" AS "customer_id",
    GREATEST(
        GREATEST("c"."created_at"::timestamptz, "c"."updated_at"::timestamptz),
        (SELECT max(GREATEST("l"."created_at"::timestamptz, "l"."updated_at"::timestamptz))
         FROM "public"."locations" AS "l"
         WHERE "l"."customer_id" = "c"."id"),
        (SELECT max(GREATEST("ct"."created_at"::timestamptz, "ct"."updated_at"::timestamptz))
         FROM "public"."locations" AS "l"
         JOIN "public"."contacts" AS "ct" ON "ct"."location_id" = "l"."id"
         WHERE "l"."customer_id" = "c"."id")
    ) AS "last_activity_at",
    ARRAY(
        SELECT "l"."id"
        FROM "public"."locations" AS "l"
        WHERE "l"."customer_id" = "c"."id"
        ORDER BY 1
    ) AS "location_ids",
    ARRAY(
        SELECT "ct"."id"
        FROM "public"."locations" AS "l"
        JOIN "public"."contacts" AS "ct" ON "ct"."location_id" = "l"."id"
        WHERE "l"."customer_id" = "c"."id"
        ORDER BY 1
    ) AS "contact_ids"
FROM "public"."customers" AS "c"
WHERE "c"."is_adhoc" IS TRUE
    AND GREATEST("c"."created_at"::timestamptz, "c"."updated_at"::timestamptz) + '14 days'::interval <= now()
    AND NOT EXISTS (
        SELECT 1 FROM "public"."locations" AS "l"
        WHERE "l"."customer_id" = "c"."id"
          AND (
              GREATEST("l"."created_at"::timestamptz, "l"."updated_at"::timestamptz) + '14 days'::interval > now()
              OR EXISTS (SELECT 1 FROM "public"."cases" AS "blocker" WHERE "blocker"."location_id" = "l"."id")
              OR EXISTS (SELECT 1 FROM "public"."devices" AS "blocker" WHERE "blocker"."location_id" = "l"."id")
              OR EXISTS (
                  SELECT 1 FROM "public"."contacts" AS "ct"
                  WHERE "ct"."location_id" = "l"."id"
                    AND (
                        GREATEST("ct"."created_at"::timestamptz, "ct"."updated_at"::timestamptz) + '14 days'::interval > now()
                        OR "ct"."last_login_at"::timestamptz + '6 months'::interval > now()
                        OR EXISTS (SELECT 1 FROM "public"."cases" AS "blocker" WHERE "blocker"."contact_id" = "ct"."id")
                    )
              )
          )
    );

COMMENT ON VIEW "adhoc_gc"."candidates" IS
    'adhoc-gc: ad-hoc customers whose whole stack (customer, locations, contacts) is eligible for deletion now. One row per customer.';

-- daily_stats: per day (of the run's start), what the purges did: runs by outcome and the
-- customers, locations and contacts deleted.
CREATE OR REPLACE VIEW "adhoc_gc"."daily_stats" AS
SELECT
    "r"."started_at"::date AS "day",
    count(*) AS "runs",
    count(*) FILTER (WHERE "r"."status" = 'succeeded') AS "succeeded",
    count(*) FILTER (WHERE "r"."status" IN ('failed', 'abandoned')) AS "failures",
    count(*) FILTER (WHERE "r"."status" IN ('skipped', 'refused')) AS "skipped_or_refused",
    sum("r"."customers_deleted") AS "customers_deleted",
    sum("r"."locations_deleted") AS "locations_deleted",
    sum("r"."contacts_deleted") AS "contacts_deleted"
FROM "adhoc_gc"."runs" AS "r"
GROUP BY "r"."started_at"::date;

COMMENT ON VIEW "adhoc_gc"."daily_stats" IS
    'adhoc-gc: per day, purge runs (succeeded, failures, skipped or refused) and the customers, locations and contacts deleted.';

-- forecast: how many stacks become eligible on each of the next 30 days if nothing changes
-- (no new activity, login or blocker). Stacks a blocker holds never become eligible on
-- their own and are not counted. Another horizon: forecast_days(N), which this view calls.
CREATE OR REPLACE VIEW "adhoc_gc"."forecast" AS
SELECT "f"."day", "f"."becoming_eligible", "f"."cumulative"
FROM "adhoc_gc"."forecast_days"(30) AS "f";

COMMENT ON VIEW "adhoc_gc"."forecast" IS
    'adhoc-gc: for each of the next 30 days, how many stacks become eligible that day if nothing changes, and the running total (forecast_days(30); forecast_days(N) for another horizon).';

-- adhoc-gc: ownership and privileges ([roles])

COMMIT;
