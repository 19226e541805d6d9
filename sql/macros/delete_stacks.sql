{#
  delete_stacks: the one statement that deletes stacks. `batch` is a SELECT of the customers
  to delete (its only column "customer_key") whose WHERE states every rule
  (stack_is_eligible), so the rules are checked inside the DELETE statement itself. Their
  owned rows, contacts, locations and the customers are deleted, archived into purged when
  p_archive, and counted; the statement ends in
      SELECT <last key of the batch, as text>, <customers in the batch>,
             <customers, locations, contacts deleted> INTO {{ into }}
  purge_batch runs it with its keyset SELECT as the batch; _purge_locked_stacks with the
  customers whose rows it has locked one by one. `fn` is the calling function's name, which
  qualifies its parameters p_archive and p_run_id.
#}
{% macro delete_stacks(batch, into, fn) -%}
WITH "batch" AS (
    {{ batch | indent(4) }}
{% for owned_table in owned %}
), "deleted_owned_{{ loop.index }}" AS (
    DELETE FROM {{ owned_table.table|table }} AS "o"
{% if owned_table.references == "customer" %}
    USING "batch" AS "b"
    WHERE "o".{{ owned_table.column|ident }} = "b"."customer_key"
{% elif owned_table.references == "location" %}
    USING {{ location.table|table }} AS "l", "batch" AS "b"
    WHERE "o".{{ owned_table.column|ident }} = "l".{{ location.key|ident }}
      AND "l".{{ location.customer|ident }} = "b"."customer_key"
{% else %}
    USING {{ contact.table|table }} AS "ct", {{ location.table|table }} AS "l", "batch" AS "b"
    WHERE "o".{{ owned_table.column|ident }} = "ct".{{ contact.key|ident }}
      AND "ct".{{ contact.location|ident }} = "l".{{ location.key|ident }}
      AND "l".{{ location.customer|ident }} = "b"."customer_key"
{% endif %}
    RETURNING "b"."customer_key", CASE WHEN {{ fn }}.p_archive THEN to_json("o".*) END AS "row"
{% endfor %}
), "deleted_contacts" AS (
    DELETE FROM {{ contact.table|table }} AS "ct"
    USING {{ location.table|table }} AS "l", "batch" AS "b"
    WHERE "ct".{{ contact.location|ident }} = "l".{{ location.key|ident }}
      AND "l".{{ location.customer|ident }} = "b"."customer_key"
    RETURNING "b"."customer_key", CASE WHEN {{ fn }}.p_archive THEN to_json("ct".*) END AS "row"
), "deleted_locations" AS (
    DELETE FROM {{ location.table|table }} AS "l"
    USING "batch" AS "b"
    WHERE "l".{{ location.customer|ident }} = "b"."customer_key"
    RETURNING "b"."customer_key", CASE WHEN {{ fn }}.p_archive THEN to_json("l".*) END AS "row"
), "deleted_customers" AS (
    DELETE FROM {{ customer.table|table }} AS "c"
    USING "batch" AS "b"
    WHERE "c".{{ customer.key|ident }} = "b"."customer_key"
    RETURNING "b"."customer_key", CASE WHEN {{ fn }}.p_archive THEN to_json("c".*) END AS "row"
), "archived" AS (
    -- One GROUP BY over all the deleted rows: joining the RETURNING sets instead makes
    -- the planner (which expects one row from each) pick nested loops, quadratic in the
    -- batch size (bench/results: 24 of 30 ms at 500 stacks, seconds at 2000).
    INSERT INTO {{ schema|ident }}."purged" ("run_id", "customer_id", "customer", "locations", "contacts", "owned")
    SELECT {{ fn }}.p_run_id, "d"."customer_key"::text,
           (array_agg("d"."row") FILTER (WHERE "d"."part" = 'customer'))[1],
           coalesce(json_agg("d"."row") FILTER (WHERE "d"."part" = 'location'), '[]'::json),
           coalesce(json_agg("d"."row") FILTER (WHERE "d"."part" = 'contact'), '[]'::json),
{% if owned %}
           json_build_object(
{% for owned_table in owned %}
               {{ owned_table.name|literal }},
               coalesce(json_agg("d"."row") FILTER (WHERE "d"."part" = 'owned {{ loop.index }}'), '[]'::json){{ "," if not loop.last }}
{% endfor %}
           )
{% else %}
           '{}'::json
{% endif %}
    FROM (
        SELECT "customer_key", 'customer' AS "part", "row" FROM "deleted_customers"
        UNION ALL
        SELECT "customer_key", 'location', "row" FROM "deleted_locations"
        UNION ALL
        SELECT "customer_key", 'contact', "row" FROM "deleted_contacts"
{% for owned_table in owned %}
        UNION ALL
        SELECT "customer_key", 'owned {{ loop.index }}', "row" FROM "deleted_owned_{{ loop.index }}"
{% endfor %}
    ) AS "d"
    WHERE {{ fn }}.p_archive
    GROUP BY "d"."customer_key"
    RETURNING 1
)
SELECT (SELECT "b"."customer_key"::text FROM "batch" AS "b" ORDER BY "b"."customer_key" DESC LIMIT 1),
       (SELECT count(*) FROM "batch"),
       (SELECT count(*) FROM "deleted_customers"),
       (SELECT count(*) FROM "deleted_locations"),
       (SELECT count(*) FROM "deleted_contacts")
INTO {{ into }};
{%- endmacro %}
