-- bench/generate.sql: fills the reference schema (sql/reference/app_schema.sql, already
-- created) with :customers generated customers and their stacks, for the benchmark.
--
-- Plain SQL with two psql variables, both integers: `customers` and `seed`.
--   psql -v ON_ERROR_STOP=1 -v customers=100000 -v seed=42 -f bench/generate.sql
-- (bench/run.py runs it exactly like that). Set-based (generate_series) and reproducible:
-- setseed(), parallel query off (a parallel worker has its own random() state), and every
-- random() draw made in a fixed scan order. The same count and seed give the same rows; the
-- timestamps are relative to now(), so which stacks are eligible is the same at any moment
-- (up to the stacks right at a 14-day or 6-month boundary).
--
-- What it makes (shares are of customers unless said otherwise):
--   * 30% ad hoc (`is_adhoc`, source email 50% / chat 30% / sms 20% of them); the rest
--     manual / api / import, never collected.
--   * every customer: 1-3 locations, every location 1-3 contacts.
--   * created_at spread uniformly over the last year (customer, its locations and contacts
--     created together); 20% of customers were edited since (updated_at between creation
--     and now), so some ad-hoc stacks are still held by activity.
--   * non-ad-hoc locations: 80% have 1-3 cases (half of them raised by the location's first
--     contact), 20% a monitored device; 50% of non-ad-hoc contacts have logged in since.
--   * ad-hoc stacks: 15% still hold their original case (on the first location, raised by
--     its first contact), 5% a case raised by a contact only (no location), 2% a device on
--     the first location; chat contacts carry a login stamp from the chat
--     (last_login_at = created_at), so a chat stack is held for 6 months.
--   => roughly 20% of all customers (two thirds of the ad-hoc ones) are eligible now.
--
-- Keys are explicit and sparse: location id = (customer id - 1) * 3 + n, contact id =
-- (location id - 1) * 3 + m (n, m in 1..3), so no window function or join is needed to
-- wire the rows; sequences are moved past the largest key at the end.
--
-- Bulk-load shortcuts (the rows are consistent by construction): foreign-key triggers are
-- skipped (session_replication_role = replica, superuser only); two unlogged staging
-- tables hold the per-customer and per-location draws and are dropped at the end.

\set ON_ERROR_STOP on
\timing on

SET max_parallel_workers_per_gather = 0;
SET session_replication_role = replica;
SET work_mem = '256MB';

SELECT setseed((:seed % 1000000) / 1000000.0);

-- One row of draws per customer. random() sits in a subquery of its own so that each call
-- is evaluated once per row, in generate_series order.
CREATE UNLOGGED TABLE "public"."bench_gen_customers" AS
SELECT "g" AS "id",
       "r_adhoc" < 0.30 AS "is_adhoc",
       CASE WHEN "r_adhoc" < 0.30
            THEN CASE WHEN "r_source" < 0.5 THEN 'email' WHEN "r_source" < 0.8 THEN 'chat' ELSE 'sms' END
            ELSE (ARRAY['manual', 'api', 'import'])[1 + floor("r_source" * 3)::int]
       END AS "source",
       now() - "r_age" * interval '365 days' AS "created_at",
       "r_edit" < 0.20 AS "edited",
       "r_edit_at" AS "r_edit_at",
       1 + floor("r_locations" * 3)::int AS "locations",
       CASE WHEN "r_adhoc" >= 0.30 THEN 0         -- not ad hoc: cases are drawn per location
            WHEN "r_case" < 0.15 THEN 1            -- original case on location 1, by its first contact
            WHEN "r_case" < 0.20 THEN 2            -- a case raised by a contact only
            ELSE 0 END AS "adhoc_case",
       "r_adhoc" < 0.30 AND "r_device" < 0.02 AS "adhoc_device"
FROM (
    SELECT "g", random() AS "r_adhoc", random() AS "r_source", random() AS "r_age",
           random() AS "r_edit", random() AS "r_edit_at", random() AS "r_locations",
           random() AS "r_case", random() AS "r_device"
    FROM generate_series(1, :customers) AS "g"
) AS "draws";

INSERT INTO "public"."customers" ("id", "name", "is_adhoc", "source", "created_at", "updated_at")
SELECT "id", 'Customer ' || "id", "is_adhoc", "source", "created_at",
       CASE WHEN "edited" THEN "created_at" + "r_edit_at" * (now() - "created_at") ELSE "created_at" END
FROM "public"."bench_gen_customers"
ORDER BY "id";

-- One row of draws per location.
CREATE UNLOGGED TABLE "public"."bench_gen_locations" AS
SELECT "id", "customer_id", "n", "is_adhoc", "source", "created_at", "adhoc_case", "adhoc_device",
       1 + floor("r_contacts" * 3)::int AS "contacts",
       CASE WHEN NOT "is_adhoc" AND "r_cases" < 0.8 THEN 1 + floor("r_cases_n" * 3)::int ELSE 0 END AS "cases",
       NOT "is_adhoc" AND "r_device" < 0.2 AS "device",
       "r_case_contact" < 0.5 AS "case_by_contact"
FROM (
    SELECT ("c"."id" - 1) * 3 + "n" AS "id", "c"."id" AS "customer_id", "n", "c"."is_adhoc", "c"."source",
           "c"."created_at" + "n" * interval '1 minute' AS "created_at",
           "c"."adhoc_case", "c"."adhoc_device",
           random() AS "r_contacts", random() AS "r_cases", random() AS "r_cases_n",
           random() AS "r_device", random() AS "r_case_contact"
    FROM "public"."bench_gen_customers" AS "c"
    CROSS JOIN LATERAL generate_series(1, "c"."locations") AS "n"
) AS "draws";

INSERT INTO "public"."locations" ("id", "customer_id", "name", "created_at", "updated_at")
SELECT "id", "customer_id", 'Location ' || "n" || ' of ' || "customer_id", "created_at", "created_at"
FROM "public"."bench_gen_locations"
ORDER BY "id";

-- Contacts: chat contacts logged in when they chatted; half the non-ad-hoc ones since.
INSERT INTO "public"."contacts" ("id", "location_id", "email", "last_login_at", "created_at", "updated_at")
SELECT "id", "location_id", 'contact' || "id" || '@example.com',
       CASE WHEN "source" = 'chat' THEN "created_at"
            WHEN NOT "is_adhoc" AND "r_login" < 0.5 THEN "created_at" + "r_login_at" * (now() - "created_at")
       END,
       "created_at", "created_at"
FROM (
    SELECT ("l"."id" - 1) * 3 + "m" AS "id", "l"."id" AS "location_id", "l"."is_adhoc", "l"."source",
           "l"."created_at", random() AS "r_login", random() AS "r_login_at"
    FROM "public"."bench_gen_locations" AS "l"
    CROSS JOIN LATERAL generate_series(1, "l"."contacts") AS "m"
) AS "draws"
ORDER BY "id";

-- Cases of non-ad-hoc locations: 1-3 each, half raised by the location's first contact.
INSERT INTO "public"."cases" ("location_id", "contact_id", "subject", "created_at")
SELECT "l"."id",
       CASE WHEN "l"."case_by_contact" THEN ("l"."id" - 1) * 3 + 1 END,
       'Case ' || "k" || ' at location ' || "l"."id",
       "l"."created_at"
FROM "public"."bench_gen_locations" AS "l"
CROSS JOIN LATERAL generate_series(1, "l"."cases") AS "k"
WHERE "l"."cases" > 0
ORDER BY "l"."id", "k";

-- Ad-hoc stacks that still hold their original case: on location 1, raised by its first
-- contact (adhoc_case = 1), or raised by that contact with no location (adhoc_case = 2).
INSERT INTO "public"."cases" ("location_id", "contact_id", "subject", "created_at")
SELECT CASE WHEN "l"."adhoc_case" = 1 THEN "l"."id" END,
       ("l"."id" - 1) * 3 + 1,
       'Original ' || "l"."source" || ' case of customer ' || "l"."customer_id",
       "l"."created_at"
FROM "public"."bench_gen_locations" AS "l"
WHERE "l"."adhoc_case" > 0 AND "l"."n" = 1
ORDER BY "l"."id";

INSERT INTO "public"."devices" ("location_id", "serial")
SELECT "l"."id", 'SN-' || "l"."id"
FROM "public"."bench_gen_locations" AS "l"
WHERE "l"."device" OR ("l"."adhoc_device" AND "l"."n" = 1)
ORDER BY "l"."id";

DROP TABLE "public"."bench_gen_locations";
DROP TABLE "public"."bench_gen_customers";
RESET session_replication_role;

SELECT setval(pg_get_serial_sequence('"public"."customers"', 'id'), (SELECT max("id") FROM "public"."customers"));
SELECT setval(pg_get_serial_sequence('"public"."locations"', 'id'), (SELECT max("id") FROM "public"."locations"));
SELECT setval(pg_get_serial_sequence('"public"."contacts"', 'id'), (SELECT max("id") FROM "public"."contacts"));

ANALYZE "public"."customers", "public"."locations", "public"."contacts", "public"."cases", "public"."devices";

SELECT 'customers' AS "table", count(*) AS "rows" FROM "public"."customers"
UNION ALL SELECT 'ad-hoc customers', count(*) FROM "public"."customers" WHERE "is_adhoc"
UNION ALL SELECT 'locations', count(*) FROM "public"."locations"
UNION ALL SELECT 'contacts', count(*) FROM "public"."contacts"
UNION ALL SELECT 'cases', count(*) FROM "public"."cases"
UNION ALL SELECT 'devices', count(*) FROM "public"."devices";
