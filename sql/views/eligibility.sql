{% from "macros/rules.sql" import latest, inactivity, login_window, is_adhoc, blocker_exists with context %}
-- eligibility: one row per ad-hoc customer, saying whether its stack may be deleted now,
-- what holds it (blocked_by) and when it becomes eligible if nothing changes (eligible_at).
-- The same rules as the candidates view, stated with aggregates so they can explain.
CREATE OR REPLACE VIEW {{ schema|ident }}."eligibility" AS
SELECT
    "c".{{ customer.key|ident }} AS "customer_id",
    coalesce("verdict"."eligible_at" <= now(), false) AS "eligible",
    "verdict"."eligible_at",
    "stack"."last_activity_at",
    "stack"."last_login_at",
    "verdict"."blocked_by",
    coalesce("locations"."location_ids", '{}') AS "location_ids",
    coalesce("contacts"."contact_ids", '{}') AS "contact_ids"
FROM {{ customer.table|table }} AS "c"
-- Per customer, through the foreign-key indexes, one walk over its locations and one over
-- its contacts, each also asking its blockers: the view reads only ad-hoc customers'
-- stacks. Grouping the whole locations and contacts tables first (then joining), and a
-- walk per blocker, took 15.9 s for `WHERE eligible` at 1M (bench/results).
CROSS JOIN LATERAL (
    SELECT
        array_agg("l".{{ location.key|ident }} ORDER BY "l".{{ location.key|ident }}) AS "location_ids",
        max({{ latest('"l"', location.activity) if location.activity else "NULL::timestamptz" }}) AS "last_activity_at"
{% for blocker in blockers %}{% if blocker.references == "location" %}
        , bool_or({{ blocker_exists(blocker, '"l"', location.key) }}) AS "held_{{ loop.index }}"
{% endif %}{% endfor %}
    FROM {{ location.table|table }} AS "l"
    WHERE "l".{{ location.customer|ident }} = "c".{{ customer.key|ident }}
) AS "locations"
CROSS JOIN LATERAL (
    SELECT
        array_agg("ct".{{ contact.key|ident }} ORDER BY "ct".{{ contact.key|ident }}) AS "contact_ids",
        max({{ latest('"ct"', contact.activity) if contact.activity else "NULL::timestamptz" }}) AS "last_activity_at",
        max({{ ('"ct".' ~ (contact.last_login|ident) ~ "::timestamptz") if contact.last_login else "NULL::timestamptz" }}) AS "last_login_at"
{% for blocker in blockers %}{% if blocker.references == "contact" %}
        , bool_or({{ blocker_exists(blocker, '"ct"', contact.key) }}) AS "held_{{ loop.index }}"
{% endif %}{% endfor %}
    FROM {{ location.table|table }} AS "l"
    JOIN {{ contact.table|table }} AS "ct" ON "ct".{{ contact.location|ident }} = "l".{{ location.key|ident }}
    WHERE "l".{{ location.customer|ident }} = "c".{{ customer.key|ident }}
) AS "contacts"
CROSS JOIN LATERAL (
    SELECT
        {{ latest('"c"', customer.activity) }} AS "customer_activity_at",
        GREATEST({{ latest('"c"', customer.activity) }}, "locations"."last_activity_at", "contacts"."last_activity_at") AS "last_activity_at",
        "contacts"."last_login_at"
) AS "stack"
CROSS JOIN LATERAL (
    SELECT array_remove(ARRAY[
{% for blocker in blockers %}
{% if blocker.references == "customer" %}
        CASE WHEN {{ blocker_exists(blocker, '"c"', customer.key) }} THEN {{ blocker.name|literal }} END{{ "," if not loop.last }}
{% elif blocker.references == "location" %}
        CASE WHEN "locations"."held_{{ loop.index }}" THEN {{ blocker.name|literal }} END{{ "," if not loop.last }}
{% else %}
        CASE WHEN "contacts"."held_{{ loop.index }}" THEN {{ blocker.name|literal }} END{{ "," if not loop.last }}
{% endif %}
{% endfor %}
{% if not blockers %}
        NULL
{% endif %}
    ]::text[], NULL) AS "held_by"
) AS "blockers"
CROSS JOIN LATERAL (
    SELECT
        -- NULL while a blocker holds the stack, or while the customer row has no activity
        -- value at all (nothing tells how old it is).
        CASE WHEN cardinality("blockers"."held_by") = 0 AND "stack"."customer_activity_at" IS NOT NULL
             THEN GREATEST(
                 "stack"."last_activity_at" + {{ inactivity() }}{% if policy.login_rule and contact.last_login %},
                 "stack"."last_login_at" + {{ login_window() }}{% endif %}

             )
        END AS "eligible_at",
        array_remove(ARRAY[
            CASE WHEN "stack"."customer_activity_at" IS NULL
                   OR "stack"."last_activity_at" + {{ inactivity() }} > now() THEN 'activity' END,
{% if policy.login_rule and contact.last_login %}
            CASE WHEN "stack"."last_login_at" + {{ login_window() }} > now() THEN 'login' END
{% else %}
            NULL
{% endif %}
        ]::text[], NULL) || "blockers"."held_by" AS "blocked_by"
) AS "verdict"
WHERE {{ is_adhoc('"c"') }};

COMMENT ON VIEW {{ schema|ident }}."eligibility" IS
    'adhoc-gc: one row per ad-hoc customer: eligible now or not, what holds it (blocked_by: activity, login, or a blocker name) and when it becomes eligible if nothing changes (eligible_at; NULL while a blocker holds it).';
