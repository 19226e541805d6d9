-- daily_stats: per day (of the run's start), what the purges did: runs by outcome and the
-- customers, locations and contacts deleted.
CREATE OR REPLACE VIEW {{ schema|ident }}."daily_stats" AS
SELECT
    "r"."started_at"::date AS "day",
    count(*) AS "runs",
    count(*) FILTER (WHERE "r"."status" = 'succeeded') AS "succeeded",
    count(*) FILTER (WHERE "r"."status" IN ('failed', 'abandoned')) AS "failures",
    count(*) FILTER (WHERE "r"."status" IN ('skipped', 'refused')) AS "skipped_or_refused",
    sum("r"."customers_deleted") AS "customers_deleted",
    sum("r"."locations_deleted") AS "locations_deleted",
    sum("r"."contacts_deleted") AS "contacts_deleted"
FROM {{ schema|ident }}."runs" AS "r"
GROUP BY "r"."started_at"::date;

COMMENT ON VIEW {{ schema|ident }}."daily_stats" IS
    'adhoc-gc: per day, purge runs (succeeded, failures, skipped or refused) and the customers, locations and contacts deleted.';
