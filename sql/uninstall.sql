{#
  adhoc-gc uninstall: drops what deploy created, in the caller's transaction, never with
  CASCADE (a user's object that depends on one of these stops it, and nothing is dropped).
    objects  [(kind, name)]: "views", "procedures" or "functions" and the object's name,
             in drop order: views first, each before the views it reads; each name is
             unique in the schema, so no argument list is needed
    tables   the package's tables (runs, purged, yoyo's), only with --drop-data
#}
{% set s = schema|ident %}
{% set keyword = {"views": "VIEW", "procedures": "PROCEDURE", "functions": "FUNCTION"} %}
-- adhoc-gc: uninstall
{% for kind, name in objects %}
DROP {{ keyword[kind] }} IF EXISTS {{ s }}.{{ name|ident }};
{% endfor %}
{% if tables %}
DROP TABLE IF EXISTS {% for table in tables %}{{ s }}.{{ table|ident }}{{ ", " if not loop.last }}{% endfor %};
{% endif %}
