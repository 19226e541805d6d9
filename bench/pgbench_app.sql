-- bench/pgbench_app.sql: the application's own traffic, for `bench/run.py --app-load`
-- (pgbench custom script; run.py passes -D max_customer=... -D max_location=...).
--
-- One transaction: read a customer by id with its locations, then open a case on a
-- random location. Cases go only to locations of non-ad-hoc customers (a location that no
-- purge will delete): a case sent to a stack that a batch holds waits for the batch and then
-- fails its foreign-key check (by design, docs/design.md), and pgbench 15 ends a client at
-- its first error, which would end the measurement rather than measure it. Location ids are
-- sparse (bench/generate.sql), so some draws hit no row and insert nothing.
\set cid random(1, :max_customer)
\set lid random(1, :max_location)
BEGIN;
SELECT "c"."id", "c"."name", "c"."source", "l"."id", "l"."name"
FROM "public"."customers" AS "c"
LEFT JOIN "public"."locations" AS "l" ON "l"."customer_id" = "c"."id"
WHERE "c"."id" = :cid;
INSERT INTO "public"."cases" ("location_id", "subject")
SELECT "l"."id", 'pgbench case'
FROM "public"."locations" AS "l"
JOIN "public"."customers" AS "c" ON "c"."id" = "l"."customer_id"
WHERE "l"."id" = :lid AND NOT "c"."is_adhoc";
END;
