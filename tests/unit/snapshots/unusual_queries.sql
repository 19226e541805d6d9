-- name: applied_migrations
SELECT "migration_id" FROM "GC Ops"."_yoyo_migration"

-- name: apply_retention
SELECT "runs_deleted", "purged_deleted" FROM "GC Ops"."_apply_retention"()

-- name: batch_isolation
-- A batch's transaction runs at REPEATABLE READ: purge_batch's safety rests on its one
-- snapshot (docs/design.md). The first statement of the transaction.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ

-- name: batch_statement_timeout
-- Before each batch, in its transaction: how long one batch may run ([guard] statement_timeout).
SELECT set_config('statement_timeout',
                  (extract(epoch FROM '5 minutes'::interval) * 1000)::bigint::text || 'ms',
                  true)

-- name: count_candidates
SELECT count(*) FROM "GC Ops"."candidates"

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS "GC Ops"

-- name: cron_installed
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE "extname" = 'pg_cron')

-- name: cron_job
SELECT "jobid", "jobname", "schedule", "command", "database", "username", "active"
FROM cron.job
WHERE "jobname" = %(job_name)s

-- name: cron_job_runs
SELECT "runid", "status", "return_message", "start_time", "end_time"
FROM cron.job_run_details
WHERE "jobid" = %(jobid)s
ORDER BY "start_time" DESC NULLS LAST
LIMIT %(limit)s

-- doctor

-- name: cron_prune_command
SELECT format('DELETE FROM cron.job_run_details WHERE end_time < now() - %%L::interval', %(keep)s::interval)

-- name: cron_purge_command
-- The job's command: the CALL alone, as pg_cron needs for the procedure to COMMIT.
SELECT format('CALL %%I."purge"(batch_size => %%s, max_runtime => %%L::interval, "trigger" => %%L)',
              %(schema)s::text, %(batch_size)s::integer, %(max_runtime)s::interval, 'pg_cron')

-- name: cron_schedule
SELECT cron.schedule_in_database(%(job_name)s, %(schedule)s, %(command)s, %(database)s)

-- name: cron_settings
-- Where pg_cron stands on this server: loaded at start? which database holds its tables?
SELECT
    'pg_cron' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')) AS "preloaded",
    current_setting('cron.database_name', true) AS "cron_database",
    current_database() AS "current_database",
    current_user AS "current_user"

-- name: cron_unschedule
SELECT cron.unschedule("jobid") FROM cron.job WHERE "jobname" = %(job_name)s

-- name: current_role_name
SELECT current_user::text

-- name: deployed_mapping
SELECT "fingerprint", "package_version" FROM "GC Ops"."deployed_mapping"()

-- name: doctor_column_has_foreign_key
-- Whether the column alone carries a foreign key onto the given table.
SELECT EXISTS (
    SELECT 1
    FROM pg_catalog.pg_constraint AS "con"
    JOIN pg_catalog.pg_class AS "src" ON "src"."oid" = "con"."conrelid"
    JOIN pg_catalog.pg_namespace AS "src_ns" ON "src_ns"."oid" = "src"."relnamespace"
    JOIN pg_catalog.pg_attribute AS "a" ON "a"."attrelid" = "con"."conrelid" AND "a"."attnum" = "con"."conkey"[1]
    JOIN pg_catalog.pg_class AS "tgt" ON "tgt"."oid" = "con"."confrelid"
    JOIN pg_catalog.pg_namespace AS "tgt_ns" ON "tgt_ns"."oid" = "tgt"."relnamespace"
    WHERE "con"."contype" = 'f' AND cardinality("con"."conkey") = 1
      AND "src_ns"."nspname" = %(schema)s AND "src"."relname" = %(table)s AND "a"."attname" = %(column)s
      AND "tgt_ns"."nspname" = %(target_schema)s AND "tgt"."relname" = %(target_table)s
)

-- name: doctor_column_indexes
-- The indexes of one table whose first key column is the given column: whether it is unique
-- on that column alone, and whether a lookup `column = value` can use it (a valid btree or
-- hash index, whole or partial on `column IS NOT NULL`).
SELECT
    "ic"."relname"::text AS "index_name",
    "i"."indisunique" AND "i"."indnkeyatts" = 1 AND "i"."indpred" IS NULL AS "unique_alone",
    "am"."amname"::text AS "method",
    "i"."indisvalid" AS "valid",
    pg_get_expr("i"."indpred", "i"."indrelid") AS "predicate",
    "i"."indisvalid" AND "am"."amname" IN ('btree', 'hash')
        AND ("i"."indpred" IS NULL
             OR pg_get_expr("i"."indpred", "i"."indrelid") = format('(%%s IS NOT NULL)', quote_ident(%(column)s::text)))
        AS "usable"
FROM pg_catalog.pg_index AS "i"
JOIN pg_catalog.pg_class AS "c" ON "c"."oid" = "i"."indrelid"
JOIN pg_catalog.pg_namespace AS "n" ON "n"."oid" = "c"."relnamespace"
JOIN pg_catalog.pg_class AS "ic" ON "ic"."oid" = "i"."indexrelid"
JOIN pg_catalog.pg_am AS "am" ON "am"."oid" = "ic"."relam"
JOIN pg_catalog.pg_attribute AS "a" ON "a"."attrelid" = "c"."oid" AND "a"."attnum" = "i"."indkey"[0]
WHERE "n"."nspname" = %(schema)s AND "c"."relname" = %(table)s AND "a"."attname" = %(column)s
ORDER BY "i"."indisvalid" DESC, "i"."indpred" IS NULL DESC, "i"."indnkeyatts", "ic"."relname"

-- name: doctor_leaf_partitions
-- The partitions holding a partitioned table's rows, at any depth.
SELECT "n"."nspname"::text, "c"."relname"::text
FROM pg_catalog.pg_partition_tree(format('%%I.%%I', %(schema)s::text, %(table)s::text)::regclass) AS "t"
JOIN pg_catalog.pg_class AS "c" ON "c"."oid" = "t"."relid"
JOIN pg_catalog.pg_namespace AS "n" ON "n"."oid" = "c"."relnamespace"
WHERE "t"."isleaf"
ORDER BY 1, 2

-- name: doctor_lookup_plan
-- The plan of one of the purge's lookups, compared as the rules compare it (the looked-up
-- column equal to a key value), with sequential scans priced out: whether an index, or one on
-- every partition, serves it. The identifiers are composed in by doctor.py (psycopg.sql).
EXPLAIN (FORMAT JSON)
SELECT 1 FROM {table} AS "blocker" WHERE "blocker".{column} = (SELECT "k".{key} FROM {key_table} AS "k" LIMIT 1)

-- name: doctor_table_statistics
-- The planner's statistics on one table: when last analyzed (NULL: never), rows changed
-- since, its row estimate (-1: never counted), whether it (or a partition) holds data, and
-- for a partitioned table (whose own changes PostgreSQL does not count) its partitions' live
-- rows now.
SELECT
    greatest("s"."last_analyze", "s"."last_autoanalyze") AS "last_analyzed",
    coalesce("s"."n_mod_since_analyze", 0) AS "changed_since",
    "c"."reltuples"::float8 AS "estimated_rows",
    pg_relation_size("c"."oid") > 0
        OR EXISTS (SELECT 1 FROM pg_partition_tree("c"."oid") AS "t" WHERE pg_relation_size("t"."relid") > 0)
        AS "has_data",
    CASE WHEN "c"."relkind" = 'p' THEN
        (SELECT coalesce(sum("ls"."n_live_tup"), 0)::float8
         FROM pg_partition_tree("c"."oid") AS "t"
         JOIN pg_catalog.pg_stat_user_tables AS "ls" ON "ls"."relid" = "t"."relid"
         WHERE "t"."isleaf")
    END AS "partitions_live_rows"
FROM pg_catalog.pg_class AS "c"
JOIN pg_catalog.pg_namespace AS "n" ON "n"."oid" = "c"."relnamespace"
LEFT JOIN pg_catalog.pg_stat_user_tables AS "s" ON "s"."relid" = "c"."oid"
WHERE "n"."nspname" = %(schema)s AND "c"."relname" = %(table)s AND "c"."relkind" IN ('r', 'p')

-- report

-- name: enum_labels
SELECT "e"."enumlabel"
FROM pg_catalog.pg_enum AS "e"
JOIN pg_catalog.pg_type AS "t" ON "t"."oid" = "e"."enumtypid"
JOIN pg_catalog.pg_attribute AS "a" ON "a"."atttypid" = "t"."oid"
JOIN pg_catalog.pg_class AS "c" ON "c"."oid" = "a"."attrelid"
JOIN pg_catalog.pg_namespace AS "n" ON "n"."oid" = "c"."relnamespace"
WHERE "n"."nspname" = %(schema)s AND "c"."relname" = %(table)s AND "a"."attname" = %(column)s

-- name: example_stacks
-- One ad-hoc customer for each verdict (eligible now, or each thing that holds it), for
-- the demo's tour of the rules.
SELECT DISTINCT ON ("reason") "reason", "customer_id"::text, "eligible", "eligible_at", "blocked_by"
FROM (
    SELECT CASE WHEN "e"."eligible" THEN 'eligible now' ELSE "e"."blocked_by"[1] END AS "reason", "e".*
    FROM "GC Ops"."eligibility" AS "e"
    WHERE "e"."eligible" OR cardinality("e"."blocked_by") = 1
) AS "verdicts"
ORDER BY "reason", "customer_id"

-- name: explain_customer
-- The customer row as adhoc-gc sees it: whether it exists and is ad hoc.
SELECT "customer_id", "adhoc", "adhoc_value" FROM "GC Ops"."explain_customer"(%(customer_id)s)

-- name: explain_eligibility
-- inactive_long_enough tells the two reasons for 'activity' apart: recent activity in the
-- stack, or a customer row without any activity value (which is never collected).
SELECT "eligible", "eligible_at", "last_activity_at", "last_login_at", "blocked_by",
       "location_ids"::text[], "contact_ids"::text[], now() AS "now",
       coalesce("last_activity_at" + %(inactivity)s::interval <= now(), false) AS "inactive_long_enough"
FROM "GC Ops"."eligibility"
WHERE "customer_id" = %(customer_id)s

-- name: finish_run
SELECT "GC Ops"."_finish_run"(%(run_id)s, %(status)s, %(error)s)

-- name: guard_refusal
SELECT "GC Ops"."_guard_refusal"(%(force)s)

-- name: in_recovery
SELECT pg_is_in_recovery()

-- name: interval_fits_timestamps
-- The rules add the intervals to timestamps and subtract them from now(): both must stay
-- inside PostgreSQL's range ('100000000 years' does not).
SELECT now() - %(value)s::interval, now() + %(value)s::interval

-- name: interval_is_positive
SELECT %(value)s::interval > interval '0'

-- name: interval_milliseconds
-- An interval as the whole milliseconds the batches set a timeout to (rounded, as they do).
SELECT (extract(epoch FROM %(value)s::interval) * 1000)::bigint

-- name: list_runs
-- The last runs, newest first; read by name (adhoc_gc.purge.fetch_runs).
SELECT "id", "started_at", "finished_at", "status", "trigger", "batch_size", "batches",
       "customers_deleted", "locations_deleted", "contacts_deleted", "error",
       "max_batches", "max_runtime", "archive", "target_batch_seconds", "batch_retries", "throttled_seconds"
FROM "GC Ops"."runs"
ORDER BY "id" DESC
LIMIT %(limit)s

-- name: metrics_last_run
-- The newest run: its status, start (epoch seconds), how long it took (still running: so
-- far) and what it deleted.
SELECT
    "status",
    extract(epoch FROM "started_at")::float8 AS "started",
    extract(epoch FROM coalesce("finished_at", clock_timestamp()) - "started_at")::float8 AS "duration",
    "customers_deleted",
    "locations_deleted",
    "contacts_deleted"
FROM "GC Ops"."runs"
ORDER BY "id" DESC
LIMIT 1

-- name: metrics_last_success
-- When the newest succeeded run finished (epoch seconds), NULL when none is in the runs table.
SELECT extract(epoch FROM max(coalesce("finished_at", "started_at")))::float8
FROM "GC Ops"."runs"
WHERE "status" = 'succeeded'

-- name: metrics_runs_by_status
-- The runs in the runs table (kept for [retention] runs) by status, and the customers they deleted.
SELECT "status", count(*) AS "runs", coalesce(sum("customers_deleted"), 0)::bigint AS "customers_deleted"
FROM "GC Ops"."runs"
GROUP BY "status"
ORDER BY "status"

-- uninstall

-- name: metrics_summary
-- The database's name (a label of every metric) and how many customers are ad hoc.
-- Sent without parameters: a value of [customer] adhoc_values may hold a percent sign.
SELECT
    current_database() AS "database",
    (SELECT count(*) FROM "Crm Zone"."Kunden Zq" AS "c" WHERE "c"."Herkunft_Zq" IN ('e-mail', 'it''s chat')) AS "adhoc_customers"

-- name: note_run
SELECT "GC Ops"."_note_run"(%(run_id)s, %(target_batch_seconds)s, %(batch_retries)s, %(throttled_seconds)s)

-- name: plan_blockers
SELECT "reason", count(*) AS "customers"
FROM "GC Ops"."eligibility", unnest("blocked_by") AS "reason"
GROUP BY "reason"
ORDER BY count(*) DESC, "reason"

-- name: plan_sample
SELECT "customer_id"::text, "last_activity_at", "location_ids"::text[], "contact_ids"::text[]
FROM "GC Ops"."candidates"
ORDER BY "customer_id"
LIMIT %(limit)s

-- name: plan_summary
-- How many ad-hoc customers there are, how many are eligible, and what holds the rest.
SELECT
    count(*) AS "adhoc_customers",
    count(*) FILTER (WHERE "eligible") AS "eligible",
    count(*) FILTER (WHERE NOT "eligible") AS "held"
FROM "GC Ops"."eligibility"

-- name: purge_batch
SELECT "next_after_key", "done", "examined", "customers_deleted", "locations_deleted", "contacts_deleted"
FROM "GC Ops"."purge_batch"(%(run_id)s, %(after_key)s, %(batch_size)s, %(archive)s)

-- name: record_unstarted_run
SELECT "GC Ops"."_record_unstarted_run"(%(trigger)s, %(batch_size)s, %(status)s, %(reason)s)

-- name: release_purge_lock
SELECT "GC Ops"."_release_purge_lock"()

-- name: replica_lag
-- The largest standby replay lag in seconds (NULL: not visible to the owner), and whether
-- it exceeds [throttle] max_replica_lag.
SELECT extract(epoch FROM "lag")::double precision,
       "lag" > '0'::interval
FROM (SELECT "GC Ops"."_replica_lag"() AS "lag") AS "l"

-- name: report_backlog_behind
-- No history of the backlog is kept; for each of the last 29 days this gives the bounds of
-- an estimate of the backlog at the end of that day: the stacks eligible now that were
-- already eligible then (eligible_at on or before that day; "waiting"), and the customers
-- purged on the days after it (each may or may not have been eligible then; "purged_after").
WITH "waiting" AS (
    SELECT "eligible_at"::date AS "since", count(*) AS "stacks"
    FROM "GC Ops"."eligibility"
    WHERE "eligible"
    GROUP BY "eligible_at"::date
), "deleted" AS (
    SELECT "day", "customers_deleted"
    FROM "GC Ops"."daily_stats"
    WHERE "day" > now()::date - 30 AND "day" <= now()::date
)
SELECT
    "d"."day",
    (SELECT coalesce(sum("w"."stacks"), 0) FROM "waiting" AS "w" WHERE "w"."since" <= "d"."day")::bigint AS "waiting",
    (SELECT coalesce(sum("x"."customers_deleted"), 0) FROM "deleted" AS "x" WHERE "x"."day" > "d"."day")::bigint
        AS "purged_after"
FROM (SELECT now()::date - "n" AS "day" FROM generate_series(1, 29) AS "n") AS "d"
ORDER BY "d"."day"

-- name: report_context
-- When the report was taken (every report query runs in one read-only REPEATABLE READ
-- transaction, so now() is the same in all of them), and the time zone that dates are in.
SELECT now() AS "as_of", current_setting('TimeZone') AS "time_zone", current_database() AS "database"

-- name: report_forecast
SELECT "day", "becoming_eligible", "cumulative"::bigint
FROM "GC Ops"."forecast"
ORDER BY "day"

-- name: report_funnel
-- The funnel in one pass over eligibility; each stage is a subset of the one before:
-- ad-hoc customers -> inactive (the activity rule passes) -> and free of blockers (no
-- blocker name in blocked_by; the time rules are not blockers) -> eligible now (the login
-- rule passes too).
SELECT
    count(*) AS "adhoc_customers",
    count(*) FILTER (WHERE NOT 'activity' = ANY ("blocked_by")) AS "inactive",
    count(*) FILTER (
        WHERE NOT 'activity' = ANY ("blocked_by")
          AND NOT "blocked_by" && ARRAY['Vertrag (offen)', 'Zugang', 'l''appareil']::text[]
    ) AS "free_of_blockers",
    count(*) FILTER (WHERE "eligible") AS "eligible_now"
FROM "GC Ops"."eligibility"

-- name: report_holds
-- What holds the ad-hoc customers that are not eligible (a customer held for two reasons
-- counts under both; percent of all ad-hoc customers).
SELECT "reason", "customers", "percent_of_adhoc"
FROM "GC Ops"."blocked_summary"
WHERE "reason" <> 'eligible now'
ORDER BY "customers" DESC, "reason"

-- metrics

-- name: report_no_jit
-- In the report's transaction only: no JIT compilation. The planner's cost for the views'
-- joins crosses jit_above_cost even on small tables, and compiling took over 2 s per query
-- (report_backlog_behind, report_forecast) where running them took milliseconds.
SELECT set_config('jit', 'off', true)

-- name: report_purged
-- Purged in the last 7 and the last 30 days (today included), from the runs table through
-- daily_stats: it counts also when the archive is off.
SELECT
    "w"."days",
    coalesce(sum("s"."runs"), 0)::bigint AS "runs",
    coalesce(sum("s"."failures"), 0)::bigint AS "failures",
    coalesce(sum("s"."customers_deleted"), 0)::bigint AS "customers",
    coalesce(sum("s"."locations_deleted"), 0)::bigint AS "locations",
    coalesce(sum("s"."contacts_deleted"), 0)::bigint AS "contacts"
FROM (VALUES (7), (30)) AS "w"("days")
LEFT JOIN "GC Ops"."daily_stats" AS "s"
    ON "s"."day" > now()::date - "w"."days" AND "s"."day" <= now()::date
GROUP BY "w"."days"
ORDER BY "w"."days"

-- name: report_purged_per_day
-- Each of the last 30 days (today last), days without a run included.
SELECT
    "d"."day",
    coalesce("s"."runs", 0)::bigint AS "runs",
    coalesce("s"."failures", 0)::bigint AS "failures",
    coalesce("s"."customers_deleted", 0)::bigint AS "customers",
    coalesce("s"."locations_deleted", 0)::bigint AS "locations",
    coalesce("s"."contacts_deleted", 0)::bigint AS "contacts"
FROM (SELECT now()::date - "n" AS "day" FROM generate_series(0, 29) AS "n") AS "d"
LEFT JOIN "GC Ops"."daily_stats" AS "s" ON "s"."day" = "d"."day"
ORDER BY "d"."day"

-- name: restore
SELECT "stacks", "customers", "locations", "contacts", "owned_rows"
FROM "GC Ops"."restore"(%(run_id)s, %(customer_id)s)

-- name: role_exists
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE "rolname" = %(role)s)

-- name: role_schema_usage
SELECT has_schema_privilege(%(role)s, %(schema)s, 'USAGE')

-- name: role_sees_replica_lag
-- What _replica_lag asks of the functions' owner: superuser, or a member of
-- pg_read_all_stats (pg_monitor is one).
SELECT coalesce((SELECT "rolsuper" FROM pg_catalog.pg_roles WHERE "rolname" = %(role)s), false)
    OR pg_has_role(%(role)s, 'pg_read_all_stats', 'MEMBER')

-- name: role_table_privilege
SELECT has_table_privilege(%(role)s, format('%%I.%%I', %(schema)s::text, %(table)s::text), %(privilege)s)

-- name: set_local_search_path
-- For the rest of the transaction: deploy's trial runs each migration as yoyo does, with
-- search_path set to the package schema, then sets it back.
SELECT pg_catalog.set_config('search_path', %(search_path)s, true)

-- name: show_search_path
SELECT pg_catalog.current_setting('search_path')

-- name: start_run
SELECT "GC Ops"."_start_run"(%(trigger)s, %(batch_size)s, %(max_batches)s, %(max_runtime)s, %(archive)s)

-- name: table_columns
-- Columns of one table: name, type name, type category ('N' numeric, 'S' string, 'D' date/time,
-- 'E' enum, 'U' user), and whether the column alone carries a unique index.
SELECT
    "a"."attname" AS "column",
    format_type("a"."atttypid", "a"."atttypmod") AS "type",
    "t"."typname" AS "type_name",
    "t"."typcategory" AS "category",
    EXISTS (
        SELECT 1 FROM pg_catalog.pg_index AS "i"
        WHERE "i"."indrelid" = "c"."oid" AND "i"."indisunique" AND "i"."indpred" IS NULL
          AND "i"."indnkeyatts" = 1 AND "i"."indkey"[0] = "a"."attnum"
    ) AS "unique"
FROM pg_catalog.pg_class AS "c"
JOIN pg_catalog.pg_namespace AS "n" ON "n"."oid" = "c"."relnamespace"
JOIN pg_catalog.pg_attribute AS "a" ON "a"."attrelid" = "c"."oid" AND "a"."attnum" > 0 AND NOT "a"."attisdropped"
JOIN pg_catalog.pg_type AS "t" ON "t"."oid" = "a"."atttypid"
WHERE "n"."nspname" = %(schema)s AND "c"."relname" = %(table)s AND "c"."relkind" IN ('r', 'p')

-- name: table_kind
SELECT "c"."relkind"
FROM pg_catalog.pg_class AS "c"
JOIN pg_catalog.pg_namespace AS "n" ON "n"."oid" = "c"."relnamespace"
WHERE "n"."nspname" = %(schema)s AND "c"."relname" = %(table)s

-- name: try_purge_lock
SELECT "GC Ops"."_try_purge_lock"()

-- name: uninstall_cron_jobs
-- In pg_cron's database: unschedules this package's jobs, returning their names: the named
-- job, any job CALLing this schema's purge procedure in this database, and the
-- history-pruning job of each.
WITH "purge_jobs" AS (
    SELECT "jobid", "jobname"
    FROM cron.job
    WHERE "jobname" = %(job_name)s
       OR ("database" = %(database)s AND starts_with("command", format('CALL %%I."purge"(', %(schema)s::text)))
)
SELECT coalesce("j"."jobname", 'job ' || "j"."jobid"), cron.unschedule("j"."jobid")
FROM cron.job AS "j"
WHERE "j"."jobid" IN (SELECT "jobid" FROM "purge_jobs")
   OR "j"."jobname" IN (SELECT "jobname" || %(prune_suffix)s FROM "purge_jobs")
ORDER BY "j"."jobid"

-- name: uninstall_dependents
-- What depends on the objects uninstall drops (the relations and routines named, in the
-- package schema, with their row types) and is not one of them: a user's view, function,
-- trigger, default or foreign key. Each would stop the DROP, which never CASCADEs. A rule,
-- trigger, default, constraint or policy is named as its table or view.
WITH "dropped" AS (
    SELECT 'pg_catalog.pg_class'::regclass::oid AS "classid", "c"."oid" AS "objid"
    FROM pg_catalog.pg_class AS "c"
    JOIN pg_catalog.pg_namespace AS "n" ON "n"."oid" = "c"."relnamespace"
    WHERE "n"."nspname" = %(schema)s AND "c"."relname" = ANY (%(relations)s::text[])
    UNION ALL
    SELECT 'pg_catalog.pg_proc'::regclass::oid, "p"."oid"
    FROM pg_catalog.pg_proc AS "p"
    JOIN pg_catalog.pg_namespace AS "n" ON "n"."oid" = "p"."pronamespace"
    WHERE "n"."nspname" = %(schema)s AND "p"."proname" = ANY (%(routines)s::text[])
), "referenced" AS (
    SELECT "classid", "objid" FROM "dropped"
    UNION ALL
    SELECT 'pg_catalog.pg_type'::regclass::oid, "t"."oid"
    FROM pg_catalog.pg_type AS "t"
    WHERE "t"."typrelid" IN (SELECT "objid" FROM "dropped" WHERE "classid" = 'pg_catalog.pg_class'::regclass::oid)
    UNION ALL
    SELECT 'pg_catalog.pg_type'::regclass::oid, "t"."typarray"
    FROM pg_catalog.pg_type AS "t"
    WHERE "t"."typrelid" IN (SELECT "objid" FROM "dropped" WHERE "classid" = 'pg_catalog.pg_class'::regclass::oid)
      AND "t"."typarray" <> 0
), "dependents" AS (
    SELECT
        coalesce("owner"."classid", "dep"."classid") AS "classid",
        coalesce("owner"."objid", "dep"."objid") AS "objid",
        "dep"."refclassid",
        "dep"."refobjid"
    FROM pg_catalog.pg_depend AS "dep"
    LEFT JOIN LATERAL (
        SELECT 'pg_catalog.pg_class'::regclass::oid AS "classid", "o"."relid" AS "objid"
        FROM (
            SELECT "ev_class" FROM pg_catalog.pg_rewrite
            WHERE "dep"."classid" = 'pg_catalog.pg_rewrite'::regclass AND "oid" = "dep"."objid"
            UNION ALL
            SELECT "tgrelid" FROM pg_catalog.pg_trigger
            WHERE "dep"."classid" = 'pg_catalog.pg_trigger'::regclass AND "oid" = "dep"."objid"
            UNION ALL
            SELECT "adrelid" FROM pg_catalog.pg_attrdef
            WHERE "dep"."classid" = 'pg_catalog.pg_attrdef'::regclass AND "oid" = "dep"."objid"
            UNION ALL
            SELECT "conrelid" FROM pg_catalog.pg_constraint
            WHERE "dep"."classid" = 'pg_catalog.pg_constraint'::regclass AND "oid" = "dep"."objid" AND "conrelid" <> 0
            UNION ALL
            SELECT "polrelid" FROM pg_catalog.pg_policy
            WHERE "dep"."classid" = 'pg_catalog.pg_policy'::regclass AND "oid" = "dep"."objid"
        ) AS "o"("relid")
    ) AS "owner" ON true
    WHERE "dep"."deptype" = 'n'
      AND ("dep"."refclassid", "dep"."refobjid") IN (SELECT "classid", "objid" FROM "referenced")
)
SELECT DISTINCT
    pg_catalog.pg_describe_object("classid", "objid", 0) AS "dependent",
    pg_catalog.pg_describe_object("refclassid", "refobjid", 0) AS "depends_on"
FROM "dependents"
WHERE ("classid", "objid") NOT IN (SELECT "classid", "objid" FROM "referenced")
ORDER BY "dependent", "depends_on"

-- name: uninstall_drop_schema
-- Without CASCADE: a schema still holding anything (a user's object) stays.
DROP SCHEMA "GC Ops"

-- name: uninstall_forget_migration_log
DELETE FROM "GC Ops"."_yoyo_log" WHERE "migration_id" = ANY (%(migrations)s::text[])

-- name: uninstall_forget_migrations
-- With --drop-data, where yoyo's tables also record migrations that are not the package's
-- (it was deployed into a schema whose yoyo tables another project uses): those tables
-- stay, and only the package's own migrations are taken out of them.
DELETE FROM "GC Ops"."_yoyo_migration" WHERE "migration_id" = ANY (%(migrations)s::text[])

-- name: uninstall_kept_rows
SELECT (SELECT count(*) FROM "GC Ops"."runs"), (SELECT count(*) FROM "GC Ops"."purged")

-- name: uninstall_present
-- Which of the package's objects exist in its schema, and their kind: 'v' view, 'r' table,
-- 'f' function, 'p' procedure.
SELECT "c"."relname"::text AS "name", "c"."relkind"::text AS "kind"
FROM pg_catalog.pg_class AS "c"
JOIN pg_catalog.pg_namespace AS "n" ON "n"."oid" = "c"."relnamespace"
WHERE "n"."nspname" = %(schema)s AND "c"."relname" = ANY (%(relations)s::text[]) AND "c"."relkind" IN ('v', 'r')
UNION ALL
SELECT "p"."proname"::text, "p"."prokind"::text
FROM pg_catalog.pg_proc AS "p"
JOIN pg_catalog.pg_namespace AS "n" ON "n"."oid" = "p"."pronamespace"
WHERE "n"."nspname" = %(schema)s AND "p"."proname" = ANY (%(routines)s::text[])

-- name: uninstall_rendered_install
-- Whether the package's own deployed_mapping() is in the schema (its comment is deploy's,
-- which an application's function of the same name does not carry).
SELECT EXISTS (
    SELECT 1
    FROM pg_catalog.pg_proc AS "p"
    JOIN pg_catalog.pg_namespace AS "n" ON "n"."oid" = "p"."pronamespace"
    WHERE "n"."nspname" = %(schema)s AND "p"."proname" = 'deployed_mapping'
      AND pg_catalog.obj_description("p"."oid", 'pg_proc') LIKE 'adhoc-gc: %%'
)

-- name: unmapped_foreign_keys
-- Run by deploy before anything is written (purges call _unmapped_foreign_keys()).
WITH "mapped" ("schema", "table", "column", "target_schema", "target_table") AS (
    VALUES
        ('Außen Zone', 'Standort Zq', 'kunde_ref_zq',
         'Crm Zone', 'Kunden Zq'),
        ('Crm Zone', 'kontakte_zq', 'standort_ref_zq',
         'Außen Zone', 'Standort Zq')
        , ('Crm Zone', 'Vertrag Zq', 'kunde_fk_zq',
           'Crm Zone', 'Kunden Zq')
        , ('Außen Zone', 'Zugang Zq', 'standort_fk_zq',
           'Außen Zone', 'Standort Zq')
        , ('public', 'geraete_zq', 'kontakt_fk_zq',
           'Crm Zone', 'kontakte_zq')
), "stack_tables" ("part", "schema", "table") AS (
    VALUES ('customer', 'Crm Zone', 'Kunden Zq'),
           ('location', 'Außen Zone', 'Standort Zq'),
           ('contact', 'Crm Zone', 'kontakte_zq')
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

-- name: unmapped_foreign_keys_deployed
SELECT * FROM "GC Ops"."_unmapped_foreign_keys"()

-- name: yoyo_migration_table_exists
-- Whether yoyo has recorded migrations in the package schema yet (deploy's trial runs the
-- ones it has not).
SELECT pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %(schema)s::text, '_yoyo_migration')) IS NOT NULL

