{#
  Ownership and privileges, run by deploy after the objects, in the same transaction.
  Every function is revoked from PUBLIC in its own file; here the three roles of
  [roles] get exactly what they need:
    owner    owns the package's objects (the deleting functions run with its privileges);
    operator may run purges (runner, CALL, pg_cron) and read the views and runs;
    analyst  may only read the views and runs, and run explain_customer and forecast_days.
#}
{% set s = schema|ident %}
{% set operator_functions = [
    "purge_batch(bigint, text, integer, boolean)",
    "_purge_locked_stacks(bigint, boolean, anyarray)",
    "_start_run(text, integer, integer, interval, boolean)",
    "_finish_run(bigint, text, text)",
    "_record_unstarted_run(text, integer, text, text)",
    "_try_purge_lock()",
    "_release_purge_lock()",
    "_apply_retention()",
    "_guard_refusal(boolean)",
    "_unmapped_foreign_keys()",
    "_replica_lag()",
    "_note_run(bigint, double precision, integer, double precision)",
] %}
{# forecast_days: the forecast view calls it, and a view's readers need EXECUTE on the functions it calls #}
{% set reader_functions = ["explain_customer(text)", "forecast_days(integer)"] %}
{% set owner_functions = ["restore(bigint, text)", "_restore_rows(regclass, json)"] %}
{% set purge_procedure = "purge(integer, integer, interval, interval, boolean, text, boolean)" %}
{% set readable = ["candidates", "eligibility", "runs", "blocked_summary", "forecast", "daily_stats"] %}
-- adhoc-gc: ownership and privileges ([roles])
{% if roles.owner %}
ALTER SCHEMA {{ s }} OWNER TO {{ roles.owner|ident }};
{% for table in ["runs", "purged", "_yoyo_migration", "_yoyo_log", "_yoyo_version", "yoyo_lock"] %}
ALTER TABLE IF EXISTS {{ s }}.{{ table|ident }} OWNER TO {{ roles.owner|ident }};
{% endfor %}
{% for view in readable if view != "runs" %}
ALTER VIEW {{ s }}.{{ view|ident }} OWNER TO {{ roles.owner|ident }};
{% endfor %}
{% for function in operator_functions + reader_functions + owner_functions + ["deployed_mapping()"] %}
ALTER FUNCTION {{ s }}.{{ function }} OWNER TO {{ roles.owner|ident }};
{% endfor %}
ALTER PROCEDURE {{ s }}.{{ purge_procedure }} OWNER TO {{ roles.owner|ident }};
{% endif %}
{% for role in [roles.operator, roles.analyst] if role %}
GRANT USAGE ON SCHEMA {{ s }} TO {{ role|ident }};
GRANT SELECT ON {% for name in readable %}{{ s }}.{{ name|ident }}{{ ", " if not loop.last }}{% endfor %} TO {{ role|ident }};
{% for function in reader_functions %}
GRANT EXECUTE ON FUNCTION {{ s }}.{{ function }} TO {{ role|ident }};
{% endfor %}
{% endfor %}
{% if roles.operator %}
{% for function in operator_functions %}
GRANT EXECUTE ON FUNCTION {{ s }}.{{ function }} TO {{ roles.operator|ident }};
{% endfor %}
GRANT EXECUTE ON PROCEDURE {{ s }}.{{ purge_procedure }} TO {{ roles.operator|ident }};
{% endif %}
