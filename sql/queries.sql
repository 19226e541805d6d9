{% from "macros/audit.sql" import unmapped_foreign_keys with context %}
{#
  The runner's queries, each under a "-- name: NAME" header, looked up by name
  (adhoc_gc.render.render_queries). Values are psycopg parameters: %(name)s; a literal
  percent sign is written %%.
#}
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

-- name: enum_labels
SELECT "e"."enumlabel"
FROM pg_catalog.pg_enum AS "e"
JOIN pg_catalog.pg_type AS "t" ON "t"."oid" = "e"."enumtypid"
JOIN pg_catalog.pg_attribute AS "a" ON "a"."atttypid" = "t"."oid"
JOIN pg_catalog.pg_class AS "c" ON "c"."oid" = "a"."attrelid"
JOIN pg_catalog.pg_namespace AS "n" ON "n"."oid" = "c"."relnamespace"
WHERE "n"."nspname" = %(schema)s AND "c"."relname" = %(table)s AND "a"."attname" = %(column)s

-- name: unmapped_foreign_keys
-- Run by deploy before anything is written (purges call _unmapped_foreign_keys()).
{{ unmapped_foreign_keys() }}

-- name: unmapped_foreign_keys_deployed
SELECT * FROM {{ schema|ident }}."_unmapped_foreign_keys"()

-- name: role_exists
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE "rolname" = %(role)s)

-- name: role_table_privilege
SELECT has_table_privilege(%(role)s, format('%%I.%%I', %(schema)s::text, %(table)s::text), %(privilege)s)

-- name: interval_is_positive
SELECT %(value)s::interval > interval '0'

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS {{ schema|ident }}

-- name: deployed_mapping
SELECT "fingerprint", "package_version" FROM {{ schema|ident }}."deployed_mapping"()

-- name: start_run
SELECT {{ schema|ident }}."_start_run"(%(trigger)s, %(batch_size)s, %(max_batches)s, %(max_runtime)s, %(archive)s)

-- name: in_recovery
SELECT pg_is_in_recovery()

-- name: try_purge_lock
SELECT {{ schema|ident }}."_try_purge_lock"()

-- name: release_purge_lock
SELECT {{ schema|ident }}."_release_purge_lock"()

-- name: record_unstarted_run
SELECT {{ schema|ident }}."_record_unstarted_run"(%(trigger)s, %(batch_size)s, %(status)s, %(reason)s)

-- name: guard_refusal
SELECT {{ schema|ident }}."_guard_refusal"(%(force)s)

-- name: batch_statement_timeout
-- Before each batch, in its transaction: how long one batch may run ([guard] statement_timeout).
SELECT set_config('statement_timeout',
                  (extract(epoch FROM {{ guard.statement_timeout|literal }}::interval) * 1000)::bigint::text || 'ms',
                  true)

-- name: apply_retention
SELECT "runs_deleted", "purged_deleted" FROM {{ schema|ident }}."_apply_retention"()

-- name: finish_run
SELECT {{ schema|ident }}."_finish_run"(%(run_id)s, %(status)s, %(error)s)

-- name: purge_batch
SELECT "next_after_key", "done", "examined", "customers_deleted", "locations_deleted", "contacts_deleted"
FROM {{ schema|ident }}."purge_batch"(%(run_id)s, %(after_key)s, %(batch_size)s, %(archive)s)

-- name: restore
SELECT "stacks", "customers", "locations", "contacts", "owned_rows"
FROM {{ schema|ident }}."restore"(%(run_id)s, %(customer_id)s)

-- name: replica_lag
-- The largest standby replay lag in seconds (NULL: not visible to the owner), and whether
-- it exceeds [throttle] max_replica_lag.
SELECT extract(epoch FROM "lag")::double precision,
       "lag" > {{ (throttle.max_replica_lag or '0')|literal }}::interval
FROM (SELECT {{ schema|ident }}."_replica_lag"() AS "lag") AS "l"

-- name: note_run
SELECT {{ schema|ident }}."_note_run"(%(run_id)s, %(target_batch_seconds)s, %(batch_retries)s, %(throttled_seconds)s)

-- name: example_stacks
-- One ad-hoc customer for each verdict (eligible now, or each thing that holds it), for
-- the demo's tour of the rules.
SELECT DISTINCT ON ("reason") "reason", "customer_id"::text, "eligible", "eligible_at", "blocked_by"
FROM (
    SELECT CASE WHEN "e"."eligible" THEN 'eligible now' ELSE "e"."blocked_by"[1] END AS "reason", "e".*
    FROM {{ schema|ident }}."eligibility" AS "e"
    WHERE "e"."eligible" OR cardinality("e"."blocked_by") = 1
) AS "verdicts"
ORDER BY "reason", "customer_id"

-- name: count_candidates
SELECT count(*) FROM {{ schema|ident }}."candidates"

-- name: plan_summary
-- How many ad-hoc customers there are, how many are eligible, and what holds the rest.
SELECT
    count(*) AS "adhoc_customers",
    count(*) FILTER (WHERE "eligible") AS "eligible",
    count(*) FILTER (WHERE NOT "eligible") AS "held"
FROM {{ schema|ident }}."eligibility"

-- name: plan_blockers
SELECT "reason", count(*) AS "customers"
FROM {{ schema|ident }}."eligibility", unnest("blocked_by") AS "reason"
GROUP BY "reason"
ORDER BY count(*) DESC, "reason"

-- name: plan_sample
SELECT "customer_id"::text, "last_activity_at", "location_ids"::text[], "contact_ids"::text[]
FROM {{ schema|ident }}."candidates"
ORDER BY "customer_id"
LIMIT %(limit)s

-- name: list_runs
SELECT "id", "started_at", "finished_at", "status", "trigger", "batch_size", "batches",
       "customers_deleted", "locations_deleted", "contacts_deleted", "error"
FROM {{ schema|ident }}."runs"
ORDER BY "id" DESC
LIMIT %(limit)s

-- name: explain_customer
-- The customer row as adhoc-gc sees it: whether it exists and is ad hoc.
SELECT "customer_id", "adhoc", "adhoc_value" FROM {{ schema|ident }}."explain_customer"(%(customer_id)s)

-- name: explain_eligibility
SELECT "eligible", "eligible_at", "last_activity_at", "last_login_at", "blocked_by",
       "location_ids"::text[], "contact_ids"::text[], now() AS "now"
FROM {{ schema|ident }}."eligibility"
WHERE "customer_id" = %(customer_id)s

-- name: cron_settings
-- Where pg_cron stands on this server: loaded at start? which database holds its tables?
SELECT
    'pg_cron' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')) AS "preloaded",
    current_setting('cron.database_name', true) AS "cron_database",
    current_database() AS "current_database",
    current_user AS "current_user"

-- name: cron_installed
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE "extname" = 'pg_cron')

-- name: cron_purge_command
-- The job's command: the CALL alone, as pg_cron needs for the procedure to COMMIT.
SELECT format('CALL %%I."purge"(batch_size => %%s, max_runtime => %%L::interval, "trigger" => %%L)',
              %(schema)s::text, %(batch_size)s::integer, %(max_runtime)s::interval, 'pg_cron')

-- name: cron_prune_command
SELECT format('DELETE FROM cron.job_run_details WHERE end_time < now() - %%L::interval', %(keep)s::interval)

-- name: cron_schedule
SELECT cron.schedule_in_database(%(job_name)s, %(schedule)s, %(command)s, %(database)s)

-- name: cron_unschedule
SELECT cron.unschedule("jobid") FROM cron.job WHERE "jobname" = %(job_name)s

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

-- name: doctor_table_statistics
-- The planner's statistics on one table: when last analyzed (NULL: never), rows changed
-- since, its row estimate (-1: never counted), and whether it (or a partition) holds data.
SELECT
    greatest("s"."last_analyze", "s"."last_autoanalyze") AS "last_analyzed",
    coalesce("s"."n_mod_since_analyze", 0) AS "changed_since",
    "c"."reltuples"::float8 AS "estimated_rows",
    pg_relation_size("c"."oid") > 0
        OR EXISTS (SELECT 1 FROM pg_partition_tree("c"."oid") AS "t" WHERE pg_relation_size("t"."relid") > 0)
        AS "has_data"
FROM pg_catalog.pg_class AS "c"
JOIN pg_catalog.pg_namespace AS "n" ON "n"."oid" = "c"."relnamespace"
LEFT JOIN pg_catalog.pg_stat_user_tables AS "s" ON "s"."relid" = "c"."oid"
WHERE "n"."nspname" = %(schema)s AND "c"."relname" = %(table)s AND "c"."relkind" IN ('r', 'p')
