-- name: apply_retention
SELECT "runs_deleted", "purged_deleted" FROM "GC Ops"."_apply_retention"()

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

-- name: deployed_mapping
SELECT "fingerprint", "package_version" FROM "GC Ops"."deployed_mapping"()

-- name: enum_labels
SELECT "e"."enumlabel"
FROM pg_catalog.pg_enum AS "e"
JOIN pg_catalog.pg_type AS "t" ON "t"."oid" = "e"."enumtypid"
JOIN pg_catalog.pg_attribute AS "a" ON "a"."atttypid" = "t"."oid"
JOIN pg_catalog.pg_class AS "c" ON "c"."oid" = "a"."attrelid"
JOIN pg_catalog.pg_namespace AS "n" ON "n"."oid" = "c"."relnamespace"
WHERE "n"."nspname" = %(schema)s AND "c"."relname" = %(table)s AND "a"."attname" = %(column)s

-- name: explain_customer
-- The customer row as adhoc-gc sees it: whether it exists and is ad hoc.
SELECT
    "c"."kunde_nr_zq"::text AS "customer_id",
    "c"."Herkunft_Zq"::text = ANY (%(adhoc_values)s) AS "adhoc",
    "c"."Herkunft_Zq"::text AS "adhoc_value"
FROM "Crm Zone"."Kunden Zq" AS "c"
WHERE "c"."kunde_nr_zq" = %(customer_id)s

-- name: explain_eligibility
SELECT "eligible", "eligible_at", "last_activity_at", "last_login_at", "blocked_by",
       "location_ids"::text[], "contact_ids"::text[], now() AS "now"
FROM "GC Ops"."eligibility"
WHERE "customer_id" = %(customer_id)s

-- name: finish_run
SELECT "GC Ops"."_finish_run"(%(run_id)s, %(status)s, %(error)s)

-- name: in_recovery
SELECT pg_is_in_recovery()

-- name: interval_is_positive
SELECT %(value)s::interval > interval '0'

-- name: list_runs
SELECT "id", "started_at", "finished_at", "status", "trigger", "batch_size", "batches",
       "customers_deleted", "locations_deleted", "contacts_deleted", "error"
FROM "GC Ops"."runs"
ORDER BY "id" DESC
LIMIT %(limit)s

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

-- name: record_skipped_run
SELECT "GC Ops"."_record_skipped_run"(%(trigger)s, %(batch_size)s, %(reason)s)

-- name: release_purge_lock
SELECT "GC Ops"."_release_purge_lock"()

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

