-- depends: adhoc_gc_0001_runs_and_purged
-- adhoc-gc: purged no longer references runs through a foreign key. The foreign key's check
-- ran once per archived stack, inside every batch: about a fifth of the archive's cost at
-- 1M customers (docs/performance.md). Only the package's own functions write purged, with
-- the run they are in; _apply_retention deletes a run's archived rows together with the run
-- (what ON DELETE CASCADE did).
ALTER TABLE "purged" DROP CONSTRAINT IF EXISTS "purged_run_id_fkey";
