{#
  The foreign-key audit: every foreign key in the database that points at the customer,
  location or contact table and that the mapping does not account for (the stack's own
  location -> customer and contact -> location columns, a blocker, or an owned table).
  Deleting a stack would fail on such a key, or worse, cascade or set NULL silently.
  Used before deploy (sql/queries.sql) and by every purge (_unmapped_foreign_keys).
#}
{% macro unmapped_foreign_keys() -%}
WITH "mapped" ("schema", "table", "column", "target_schema", "target_table") AS (
    VALUES
        ({{ location.table.schema|literal }}, {{ location.table.name|literal }}, {{ location.customer|literal }},
         {{ customer.table.schema|literal }}, {{ customer.table.name|literal }}),
        ({{ contact.table.schema|literal }}, {{ contact.table.name|literal }}, {{ contact.location|literal }},
         {{ location.table.schema|literal }}, {{ location.table.name|literal }})
{% for entry in blockers + owned %}
{% set target = {"customer": customer, "location": location, "contact": contact}[entry.references] %}
        , ({{ entry.table.schema|literal }}, {{ entry.table.name|literal }}, {{ entry.column|literal }},
           {{ target.table.schema|literal }}, {{ target.table.name|literal }})
{% endfor %}
), "stack_tables" ("part", "schema", "table") AS (
    VALUES ('customer', {{ customer.table.schema|literal }}, {{ customer.table.name|literal }}),
           ('location', {{ location.table.schema|literal }}, {{ location.table.name|literal }}),
           ('contact', {{ contact.table.schema|literal }}, {{ contact.table.name|literal }})
), "foreign_keys" AS (
    SELECT
        "con"."conname"::text AS "constraint_name",
        "src_ns"."nspname"::text AS "schema",
        "src"."relname"::text AS "table",
        ARRAY(
            SELECT "a"."attname"::text
            FROM unnest("con"."conkey") WITH ORDINALITY AS "k"("attnum", "position")
            JOIN pg_catalog.pg_attribute AS "a" ON "a"."attrelid" = "con"."conrelid" AND "a"."attnum" = "k"."attnum"
            ORDER BY "k"."position"
        ) AS "columns",
        "st"."part" AS "references",
        "st"."schema" AS "target_schema",
        "st"."table" AS "target_table",
        CASE "con"."confdeltype"
            WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE'
            WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT'
        END AS "on_delete"
    FROM pg_catalog.pg_constraint AS "con"
    JOIN pg_catalog.pg_class AS "src" ON "src"."oid" = "con"."conrelid"
    JOIN pg_catalog.pg_namespace AS "src_ns" ON "src_ns"."oid" = "src"."relnamespace"
    JOIN pg_catalog.pg_class AS "tgt" ON "tgt"."oid" = "con"."confrelid"
    JOIN pg_catalog.pg_namespace AS "tgt_ns" ON "tgt_ns"."oid" = "tgt"."relnamespace"
    JOIN "stack_tables" AS "st" ON "st"."schema" = "tgt_ns"."nspname" AND "st"."table" = "tgt"."relname"
    WHERE "con"."contype" = 'f'
      -- a partition's copy of its parent's key is audited once, on the parent
      AND "con"."conparentid" = 0
)
SELECT "fk"."constraint_name", "fk"."schema", "fk"."table", "fk"."columns", "fk"."references",
       "fk"."target_schema", "fk"."target_table", "fk"."on_delete"
FROM "foreign_keys" AS "fk"
WHERE NOT EXISTS (
    SELECT 1 FROM "mapped" AS "m"
    WHERE cardinality("fk"."columns") = 1
      AND "m"."schema" = "fk"."schema" AND "m"."table" = "fk"."table" AND "m"."column" = "fk"."columns"[1]
      AND "m"."target_schema" = "fk"."target_schema" AND "m"."target_table" = "fk"."target_table"
)
ORDER BY "fk"."schema", "fk"."table", "fk"."constraint_name"
{%- endmacro %}
