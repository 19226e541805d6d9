DELETE FROM "purged" WHERE "run_id" NOT IN (SELECT "id" FROM "runs");
ALTER TABLE "purged" ADD CONSTRAINT "purged_run_id_fkey"
    FOREIGN KEY ("run_id") REFERENCES "runs" ("id") ON DELETE CASCADE;
