{#
  The eligibility rules, written once and used by the candidates view and by the batch
  function's lock and DELETE statements, so that what an analyst sees is what gets deleted.
  The eligibility view states the same rules with aggregates (to say *why* and *when*);
  tests/integration/test_rules.py checks that both agree.

  Every identifier goes through |ident or |table (quoted); every value through |literal.
#}

{# The latest of a row's activity columns; NULL columns are ignored (GREATEST's rule). #}
{% macro latest(alias, columns) -%}
{% if columns|length == 1 -%}
{{ alias }}.{{ columns[0]|ident }}::timestamptz
{%- else -%}
GREATEST({% for column in columns %}{{ alias }}.{{ column|ident }}::timestamptz{{ ", " if not loop.last }}{% endfor %})
{%- endif %}
{%- endmacro %}

{% macro inactivity() -%}{{ policy.inactivity|literal }}::interval{%- endmacro %}
{% macro login_window() -%}{{ policy.login_window|literal }}::interval{%- endmacro %}

{# Whether customer row `alias` was created ad hoc. #}
{% macro is_adhoc(alias) -%}
{% if customer.adhoc_values is none -%}
{{ alias }}.{{ customer.adhoc|ident }} IS TRUE
{%- else -%}
{{ alias }}.{{ customer.adhoc|ident }} IN ({% for value in customer.adhoc_values %}{{ value|literal }}{{ ", " if not loop.last }}{% endfor %})
{%- endif %}
{%- endmacro %}

{# A row in some blocker table pointing at `alias`.`key`. #}
{% macro blocker_exists(blocker, alias, key) -%}
EXISTS (SELECT 1 FROM {{ blocker.table|table }} AS "blocker" WHERE "blocker".{{ blocker.column|ident }} = {{ alias }}.{{ key|ident }})
{%- endmacro %}

{#
  The whole stack of customer `c` is eligible now. Stated as NOT EXISTS over the parts
  that would hold it, so PostgreSQL can stop at the first one it finds.
#}
{% macro stack_is_eligible(c) -%}
{{ is_adhoc(c) }}
AND {{ latest(c, customer.activity) }} + {{ inactivity() }} <= now()
{% for blocker in blockers if blocker.references == "customer" %}
AND NOT {{ blocker_exists(blocker, c, customer.key) }}
{% endfor %}
{% set location_blockers = blockers|selectattr("references", "equalto", "location")|list %}
{% set contact_blockers = blockers|selectattr("references", "equalto", "contact")|list %}
{% set check_locations = location.activity or location_blockers %}
{% set check_contacts = contact.activity or contact_blockers or (policy.login_rule and contact.last_login) %}
{% if check_locations or check_contacts %}
{# One walk over the customer's locations, each location's contacts looked at from there:
   walking the locations twice (once for them, once to reach the contacts) cost a tenth
   more per batch (bench/results). #}
AND NOT EXISTS (
    SELECT 1 FROM {{ location.table|table }} AS "l"
    WHERE "l".{{ location.customer|ident }} = {{ c }}.{{ customer.key|ident }}
      AND (
{% if check_locations %}
          {{ location_holds('"l"', location_blockers) }}
{% endif %}
{% if check_contacts %}
          {{ "OR " if check_locations }}EXISTS (
              SELECT 1 FROM {{ contact.table|table }} AS "ct"
              WHERE "ct".{{ contact.location|ident }} = "l".{{ location.key|ident }}
                AND (
                    {{ contact_holds('"ct"', contact_blockers, "\n                    OR ") }}
                )
          )
{% endif %}
      )
)
{% endif %}
{%- endmacro %}

{# Conditions under which one location keeps its stack alive (joined by OR). #}
{% macro location_holds(l, location_blockers) -%}
{%- set conditions = [] -%}
{%- if location.activity -%}{%- do conditions.append(latest(l, location.activity) ~ " + " ~ inactivity() ~ " > now()") -%}{%- endif -%}
{%- for blocker in location_blockers -%}{%- do conditions.append(blocker_exists(blocker, l, location.key)) -%}{%- endfor -%}
{{ conditions|join("\n          OR ") }}
{%- endmacro %}

{# Conditions under which one contact keeps its stack alive. #}
{% macro contact_holds(ct, contact_blockers, separator="\n          OR ") -%}
{%- set conditions = [] -%}
{%- if contact.activity -%}{%- do conditions.append(latest(ct, contact.activity) ~ " + " ~ inactivity() ~ " > now()") -%}{%- endif -%}
{%- if policy.login_rule and contact.last_login -%}{%- do conditions.append(ct ~ "." ~ (contact.last_login|ident) ~ "::timestamptz + " ~ login_window() ~ " > now()") -%}{%- endif -%}
{%- for blocker in contact_blockers -%}{%- do conditions.append(blocker_exists(blocker, ct, contact.key)) -%}{%- endfor -%}
{{ conditions|join(separator) }}
{%- endmacro %}
