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
