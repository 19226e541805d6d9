{#
  Generated customers for the reference schema (demo and tests). `customers` is rendered
  as an integer literal. Reproducible: the same count gives the same rows.
  One customer in ten of each kind below, ages spread over a year:
    0-5 created manually, by API or by import (never collected), with a case each;
    6   email, ad hoc, no case        -> mostly eligible
    7   chat, ad hoc, contact stamped with a login at creation -> held 6 months
    8   email, ad hoc, location with a case -> held by the case
    9   sms, ad hoc, a monitored device on one location, or contact with a case
#}
SELECT setseed(0.42);

INSERT INTO "public"."customers" ("id", "name", "is_adhoc", "source", "created_at", "updated_at")
SELECT "g",
       'Customer ' || "g",
       "g" % 10 >= 6,
       (ARRAY['manual', 'api', 'import', 'manual', 'api', 'import', 'email', 'chat', 'email', 'sms'])["g" % 10 + 1],
       "t", "t"
FROM (
    SELECT "g", now() - random() * interval '365 days' AS "t"
    FROM generate_series(1, {{ customers|int }}) AS "g"
) AS "s";

-- One or two locations per customer.
INSERT INTO "public"."locations" ("customer_id", "name", "created_at", "updated_at")
SELECT "c"."id", 'Location ' || "n" || ' of ' || "c"."id", "c"."created_at", "c"."created_at"
FROM "public"."customers" AS "c"
CROSS JOIN LATERAL generate_series(1, 1 + ("c"."id" % 3 = 0)::int) AS "n";

-- One contact per location; chat contacts carry a login stamp from their first chat.
INSERT INTO "public"."contacts" ("location_id", "email", "last_login_at", "created_at", "updated_at")
SELECT "l"."id", 'contact' || "l"."id" || '@example.com',
       CASE WHEN "c"."source" = 'chat' THEN "l"."created_at" END,
       "l"."created_at", "l"."created_at"
FROM "public"."locations" AS "l"
JOIN "public"."customers" AS "c" ON "c"."id" = "l"."customer_id";

-- Cases: every non-ad-hoc customer (at a location, raised by a contact), and the ad-hoc
-- kind 8 customers (at a location only: the case that created them).
INSERT INTO "public"."cases" ("location_id", "contact_id", "subject", "created_at")
SELECT "l"."id", CASE WHEN "c"."id" % 10 <= 5 THEN "ct"."id" END, 'Case at location ' || "l"."id", "l"."created_at"
FROM "public"."customers" AS "c"
JOIN "public"."locations" AS "l" ON "l"."customer_id" = "c"."id"
JOIN "public"."contacts" AS "ct" ON "ct"."location_id" = "l"."id"
WHERE "c"."id" % 10 <= 5 OR "c"."id" % 10 = 8;

-- Kind 9: a device on even customers, a case on the contact (only) of odd ones.
INSERT INTO "public"."devices" ("location_id", "serial")
SELECT "l"."id", 'SN-' || "l"."id"
FROM "public"."customers" AS "c"
JOIN "public"."locations" AS "l" ON "l"."customer_id" = "c"."id"
WHERE "c"."id" % 10 = 9 AND "c"."id" % 20 = 19;

INSERT INTO "public"."cases" ("location_id", "contact_id", "subject", "created_at")
SELECT NULL, "ct"."id", 'Case raised by contact ' || "ct"."id", "ct"."created_at"
FROM "public"."customers" AS "c"
JOIN "public"."locations" AS "l" ON "l"."customer_id" = "c"."id"
JOIN "public"."contacts" AS "ct" ON "ct"."location_id" = "l"."id"
WHERE "c"."id" % 10 = 9 AND "c"."id" % 20 = 9;

SELECT setval(pg_get_serial_sequence('"public"."customers"', 'id'), (SELECT max("id") FROM "public"."customers"));

ANALYZE "public"."customers", "public"."locations", "public"."contacts", "public"."cases", "public"."devices";
