"""`adhoc-gc uninstall`: remove what deploy (and schedule) created, and nothing else.

1. Refuse, before changing anything, while a user's object depends on what would be dropped
   (a view on `eligibility`, a foreign key to `runs`, ...): uninstall never CASCADEs into the
   user's objects. Refuse too while a purge runs (it holds the purge lock).
2. Unschedule the pg_cron jobs of this schema, when pg_cron is loaded and created.
3. In one transaction: drop the views (each before the views it reads), the procedure and
   the functions, all without CASCADE; with `drop_data` also the tables (runs, purged,
   yoyo's bookkeeping, unless it records another project's migrations too: then only the
   package's rows leave it) and then the schema, if nothing else is left in it.

Only where yoyo recorded the package's migrations in the schema is the package deployed
there: elsewhere uninstall drops nothing, even objects that share the package's names.

Without `drop_data` the tables stay with their rows; `deploy` installs on top of them again.
The application's tables are never touched: only objects named by the package, in its schema.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from .db import connect, one_line
from .deploy import YOYO_MIGRATION_TABLE, migration_files
from .errors import ConfigError, RunFailed
from .mapping import Mapping
from .render import object_paths, render_template
from .schedule import PRUNE_SUFFIX, default_job_name, inspect_cron

UNINSTALL_FILE = "uninstall.sql"
DATA_TABLES = ("runs", "purged")
YOYO_TABLES = (YOYO_MIGRATION_TABLE, "_yoyo_log", "_yoyo_version", "yoyo_lock")
PACKAGE_TABLES = DATA_TABLES + YOYO_TABLES


def package_objects() -> list[tuple[str, str]]:
    """(kind, name) of every view, procedure and function deploy creates, in drop order:
    the reverse of deploy's order (views, each before what it reads, then procedures, then
    functions)."""
    return [(Path(path).parent.name, Path(path).stem) for path in reversed(object_paths())]


def render_uninstall_sql(mapping: Mapping, objects: list[tuple[str, str]], tables: tuple[str, ...]) -> str:
    return render_template(UNINSTALL_FILE, mapping, objects=objects, tables=list(tables))


def uninstall(dsn: str, mapping: Mapping, queries: dict[str, str], *, drop_data: bool,
              job_name: str | None = None) -> dict:
    """Returns what was done (see the keys at the end)."""
    objects = package_objects()
    views = [name for kind, name in objects if kind == "views"]
    routines = [name for kind, name in objects if kind != "views"]
    ours = [path.stem for path in migration_files()]
    with connect(dsn) as conn:
        applied: set[str] = set()
        if conn.execute(queries["yoyo_migration_table_exists"], {"schema": mapping.schema}).fetchone()[0]:
            applied = {row[0] for row in conn.execute(queries["applied_migrations"])}
        # Deployed here = yoyo recorded one of the package's migrations in this schema, or (see
        # below) the package's deployed_mapping() is there. Objects
        # that merely share the package's names (a `runs` table, a `restore` function of the
        # application's own) are not the package's, and are never dropped.
        # A rendered install (`adhoc-gc render | psql`) leaves yoyo empty: there, the package's
        # own deployed_mapping(), carrying its comment, tells.
        deployed = bool(applied & set(ours)) or conn.execute(
            queries["uninstall_rendered_install"], {"schema": mapping.schema}).fetchone()[0]
        # yoyo's tables are shared when they record another project's migrations too.
        shared_yoyo = bool(applied - set(ours))
        own_tables = DATA_TABLES + (() if shared_yoyo else YOYO_TABLES)
        present = dict(conn.execute(queries["uninstall_present"], {
            "schema": mapping.schema, "relations": views + list(PACKAGE_TABLES), "routines": routines,
        }).fetchall()) if deployed else {}
        conn.commit()
        drop_objects = [(kind, name) for kind, name in objects if name in present]
        drop_tables = tuple(t for t in own_tables if present.get(t) == "r") if drop_data else ()
        kept_tables = tuple(t for t in own_tables if present.get(t) == "r") if not drop_data else ()

        # 1. Refuse while a user's object depends on what is dropped, or a purge runs.
        dependents = conn.execute(queries["uninstall_dependents"], {
            "schema": mapping.schema,
            "relations": [n for k, n in drop_objects if k == "views"] + list(drop_tables),
            "routines": [n for k, n in drop_objects if k != "views"],
        }).fetchall()
        conn.commit()
        if dependents:
            listed = "; ".join(f"{dependent} depends on {target}" for dependent, target in dependents)
            raise ConfigError(f"uninstall refused, nothing was changed: {listed}. Drop or change "
                              f"{'it' if len(dependents) == 1 else 'them'} first (uninstall never drops with CASCADE)")
        if "_try_purge_lock" in present:
            # Session-level: held until this connection closes, so no purge starts meanwhile.
            if not conn.execute(queries["try_purge_lock"]).fetchone()[0]:
                raise RunFailed(f"a purge is running in schema {mapping.schema!r}: uninstall again when it has "
                                "finished; nothing was changed")
            conn.commit()

        # 2. The pg_cron jobs, when pg_cron is there.
        cron = inspect_cron(conn, dsn, queries)
        removed_jobs: list[str] = []
        if cron.preloaded and cron.installed:
            name = job_name or default_job_name(cron.target_database, mapping)
            with connect(cron.dsn) as cron_conn:
                with cron_conn.transaction():
                    removed_jobs = [row[0] for row in cron_conn.execute(queries["uninstall_cron_jobs"], {
                        "job_name": name, "database": cron.target_database, "schema": mapping.schema,
                        "prune_suffix": PRUNE_SUFFIX,
                    }).fetchall()]

        # 3. One transaction: objects, then (with drop_data) tables and the schema.
        kept_rows = None
        schema_dropped = False
        schema_kept_because = None
        try:
            with conn.transaction():
                if drop_objects or drop_tables:
                    conn.execute(render_uninstall_sql(mapping, drop_objects, drop_tables))
                if drop_data and deployed and shared_yoyo:
                    conn.execute(queries["uninstall_forget_migrations"], {"migrations": ours})
                    conn.execute(queries["uninstall_forget_migration_log"], {"migrations": ours})
                if drop_data and deployed:
                    if mapping.schema == "public":
                        schema_kept_because = "it is the public schema"
                    else:
                        try:
                            with conn.transaction():
                                conn.execute(queries["uninstall_drop_schema"])
                            schema_dropped = True
                        except psycopg.errors.DependentObjectsStillExist as exc:
                            schema_kept_because = "it still holds " + _details(exc)
                if set(DATA_TABLES) <= set(kept_tables):
                    kept_rows = dict(zip(DATA_TABLES, conn.execute(queries["uninstall_kept_rows"]).fetchone()))
        except psycopg.errors.DependentObjectsStillExist as exc:  # created since the check above
            raise ConfigError(f"uninstall refused, no object was dropped{_jobs_note(removed_jobs)}: {_details(exc)}. "
                              "Drop or change it first (uninstall never drops with CASCADE)") from None
        except psycopg.Error as exc:
            raise RunFailed(f"uninstall failed, no object was dropped{_jobs_note(removed_jobs)}: "
                            f"{one_line(exc)}") from None
    return {
        "schema": mapping.schema,
        "database": cron.target_database,
        "installed": deployed,
        "pg_cron": "loaded" if cron.preloaded and cron.installed else (
            "extension not created" if cron.preloaded else "not loaded"),
        "cron_jobs_removed": removed_jobs,
        "dropped": {kind: [n for k, n in drop_objects if k == kind] for kind in ("views", "procedures", "functions")},
        "tables_dropped": list(drop_tables),
        "tables_kept": list(kept_tables),
        "rows_kept": kept_rows,
        "schema_dropped": schema_dropped,
        "schema_kept_because": schema_kept_because,
    }


def _jobs_note(removed_jobs: list[str]) -> str:
    return f" (the pg_cron jobs {', '.join(removed_jobs)} were removed already)" if removed_jobs else ""


def _details(exc: psycopg.Error) -> str:
    """PostgreSQL's DETAIL (one line per dependent object) as one line, else the message."""
    detail = exc.diag.message_detail
    if detail:
        return "; ".join(line.strip() for line in detail.splitlines() if line.strip())
    return one_line(exc)
