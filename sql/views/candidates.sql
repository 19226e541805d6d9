{% from "macros/rules.sql" import stack_is_eligible, latest with context %}
-- candidates: one row per ad-hoc customer whose whole stack may be deleted now.
-- The batch function deletes exactly these (re-checked at delete time).
CREATE OR REPLACE VIEW {{ schema|ident }}."candidates" AS
SELECT
    "c".{{ customer.key|ident }} AS "customer_id",
    GREATEST(
        {{ latest('"c"', customer.activity) }},
        (SELECT max({{ latest('"l"', location.activity) if location.activity else "NULL::timestamptz" }})
         FROM {{ location.table|table }} AS "l"
         WHERE "l".{{ location.customer|ident }} = "c".{{ customer.key|ident }}),
        (SELECT max({{ latest('"ct"', contact.activity) if contact.activity else "NULL::timestamptz" }})
         FROM {{ location.table|table }} AS "l"
         JOIN {{ contact.table|table }} AS "ct" ON "ct".{{ contact.location|ident }} = "l".{{ location.key|ident }}
         WHERE "l".{{ location.customer|ident }} = "c".{{ customer.key|ident }})
    ) AS "last_activity_at",
    ARRAY(
        SELECT "l".{{ location.key|ident }}
        FROM {{ location.table|table }} AS "l"
        WHERE "l".{{ location.customer|ident }} = "c".{{ customer.key|ident }}
        ORDER BY 1
    ) AS "location_ids",
    ARRAY(
        SELECT "ct".{{ contact.key|ident }}
        FROM {{ location.table|table }} AS "l"
        JOIN {{ contact.table|table }} AS "ct" ON "ct".{{ contact.location|ident }} = "l".{{ location.key|ident }}
        WHERE "l".{{ location.customer|ident }} = "c".{{ customer.key|ident }}
        ORDER BY 1
    ) AS "contact_ids"
FROM {{ customer.table|table }} AS "c"
WHERE {{ stack_is_eligible('"c"') | trim | indent(4) }};

COMMENT ON VIEW {{ schema|ident }}."candidates" IS
    'adhoc-gc: ad-hoc customers whose whole stack (customer, locations, contacts) is eligible for deletion now. One row per customer.';
