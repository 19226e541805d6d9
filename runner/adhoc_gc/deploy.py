"""Deploy: check the mapping, apply table migrations (yoyo), re-create views and functions.

Tables live in immutable yoyo migrations under migrations/; yoyo runs them with
search_path set to the package schema, so its own bookkeeping tables live there too.
Views and functions are rendered from sql/ and re-created on every deploy, in one
transaction, so a mapping or policy change applies on the next deploy. Before writing
anything, deploy runs all of it once in a transaction that it rolls back (deploy()).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql
from yoyo import read_migrations
from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
from yoyo.connections import parse_uri

from . import __version__
from .catalog import check_mapping
from .db import connect, one_line
from .errors import ConfigError, RunFailed
from .mapping import Mapping
from .purge import describe_unmapped_foreign_keys
from .render import quote_ident, render_grants, render_objects, render_queries
from .resources import migrations_dir

YOYO_MIGRATION_TABLE = "_yoyo_migration"


def migration_files() -> list[Path]:
    return sorted(p for p in migrations_dir().glob("*.sql") if not p.name.endswith(".rollback.sql"))


def _yoyo_backend(dsn: str, schema: str) -> PostgresqlPsycopgBackend:
    """A yoyo backend on our own libpq connection string (yoyo itself wants a URI)."""

    class Backend(PostgresqlPsycopgBackend):
        def connect(self, dburi):
            # yoyo pastes `schema` into SET search_path unquoted: hand it the quoted form.
            self.schema = quote_ident(schema)
            return psycopg.connect(dsn, autocommit=True)

    backend = Backend(parse_uri("postgresql+psycopg:///adhoc_gc"), YOYO_MIGRATION_TABLE)
    backend.init_database()
    return backend


def pending_migrations(dsn: str, schema: str) -> list[str]:
    backend = _yoyo_backend(dsn, schema)
    try:
        return [m.id for m in backend.to_apply(read_migrations(str(migrations_dir())))]
    finally:
        backend.connection.close()


def apply_migrations(dsn: str, schema: str) -> list[str]:
    backend = _yoyo_backend(dsn, schema)
    try:
        migrations = read_migrations(str(migrations_dir()))
        with backend.lock():
            to_apply = backend.to_apply(migrations)
            backend.apply_migrations(to_apply)
        return [m.id for m in to_apply]
    finally:
        backend.connection.close()


def deploy(dsn: str, mapping: Mapping) -> dict:
    """Returns what was done: {"migrations": [...], "objects": [...]}.

    Nothing is left half-deployed: after the catalog checks, the whole deploy (schema,
    pending migrations, objects, grants) first runs in one transaction that is rolled back
    (the trial). Only when the trial succeeds are the migrations applied through yoyo (which
    records them) and the objects and grants created for real, in one transaction. A deploy
    whose trial fails changes nothing, a first deploy included.
    """
    queries = render_queries(mapping)
    objects = render_objects(mapping)
    grants = render_grants(mapping)
    with connect(dsn) as conn:
        check_mapping(conn, mapping, queries)  # raises before anything is written
        unmapped = conn.execute(queries["unmapped_foreign_keys"]).fetchall()
        if unmapped:
            raise ConfigError(f"mapping {mapping.source}: {describe_unmapped_foreign_keys(unmapped)}")
        pending = _pending_migration_files(conn, mapping, queries)
        conn.rollback()  # the checks only read
        try:
            with conn.transaction(force_rollback=True):
                _trial_schema_and_migrations(conn, mapping, queries, pending)
                _create_objects_and_grants(conn, mapping.schema, objects, grants)
        except _StepFailed as failed:
            raise RunFailed(f"deploy failed at {failed.step}, nothing changed: {one_line(failed.error)}") from None
        except psycopg.Error as exc:
            raise RunFailed(f"deploy failed, nothing changed: {one_line(exc)}") from None
        conn.execute(queries["create_schema"])
        conn.commit()
    try:
        applied = apply_migrations(dsn, mapping.schema)
    except Exception as exc:  # yoyo wraps driver errors in its own types
        raise RunFailed(f"applying migrations failed: {one_line(exc)}") from None
    with connect(dsn) as conn:
        try:
            with conn.transaction():
                _create_objects_and_grants(conn, mapping.schema, objects, grants)
        except (_StepFailed, psycopg.Error) as exc:
            # The trial ran the same statements moments ago: something changed since.
            step, error = (exc.step, exc.error) if isinstance(exc, _StepFailed) else ("the commit", exc)
            done = (f"migrations {', '.join(applied)} were applied, the views and functions were not"
                    if applied else "nothing changed")
            raise RunFailed(f"deploy failed at {step} ({done}): {one_line(error)}; run deploy again") from None
    return {"migrations": applied, "objects": [o.path for o in objects], "version": __version__}


class _StepFailed(Exception):
    """A statement of the deploy failed; `step` names what it was creating."""

    def __init__(self, step: str, error: psycopg.Error):
        super().__init__(f"{step}: {one_line(error)}")
        self.step = step
        self.error = error


def _pending_migration_files(conn: psycopg.Connection, mapping: Mapping, queries: dict[str, str]) -> list[Path]:
    """The migration files yoyo has not recorded as applied in the package schema."""
    if not conn.execute(queries["yoyo_migration_table_exists"], {"schema": mapping.schema}).fetchone()[0]:
        return migration_files()
    applied = {row[0] for row in conn.execute(queries["applied_migrations"])}
    return [path for path in migration_files() if path.stem not in applied]


def _trial_schema_and_migrations(conn: psycopg.Connection, mapping: Mapping, queries: dict[str, str],
                                 pending: list[Path]) -> None:
    """The schema and the pending migrations, in the caller's transaction, each migration as
    yoyo runs it (with search_path set to the package schema)."""
    try:
        conn.execute(queries["create_schema"])
    except psycopg.Error as exc:
        raise _StepFailed(f"the schema {mapping.schema!r}", exc) from exc
    search_path = conn.execute(queries["show_search_path"]).fetchone()[0]
    for path in pending:
        try:
            conn.execute(queries["set_local_search_path"], {"search_path": quote_ident(mapping.schema)})
            conn.execute(path.read_text())
            conn.execute(queries["set_local_search_path"], {"search_path": search_path})
        except psycopg.Error as exc:
            raise _StepFailed(f"migration {path.stem}", exc) from exc


def _create_objects_and_grants(conn: psycopg.Connection, schema: str, objects: list, grants: str) -> None:
    """CREATE OR REPLACE each object in order, then the grants, in the caller's transaction."""
    for position, obj in enumerate(objects):
        try:
            _create_object(conn, schema, objects, position)
        except psycopg.Error as exc:
            raise _StepFailed(f"sql/{obj.path}", exc) from exc
    try:
        conn.execute(grants)
    except psycopg.Error as exc:
        raise _StepFailed("sql/grants.sql", exc) from exc


def _create_object(conn: psycopg.Connection, schema: str, objects: list, position: int) -> None:
    obj = objects[position]
    try:
        with conn.transaction():
            conn.execute(obj.sql)
    except psycopg.errors.InvalidTableDefinition:
        # CREATE OR REPLACE VIEW cannot change a column's name or type (a new version's
        # view, or a mapping whose key type changed). Drop it and the package's views
        # after it (they may depend on it; each is re-created in its turn below).
        # Without CASCADE: if an analyst's view depends on one, the deploy fails and
        # says so rather than dropping their view.
        if not obj.path.startswith("views/"):
            raise
        for later in reversed([o for o in objects[position:] if o.path.startswith("views/")]):
            conn.execute(sql.SQL("DROP VIEW IF EXISTS {}.{}").format(
                sql.Identifier(schema), sql.Identifier(Path(later.path).stem)))
        conn.execute(obj.sql)


def render_deploy_sql(mapping: Mapping, objects_only: bool = False) -> str:
    """The SQL that deploy runs, for DBAs who ship SQL through their own tooling."""
    schema = quote_ident(mapping.schema)
    parts = [
        f"-- adhoc-gc {__version__}: rendered for mapping {mapping.source} (fingerprint {mapping.fingerprint()})",
    ]
    if not objects_only:
        parts.append(render_queries(mapping)["create_schema"] + ";")
        for path in migration_files():
            parts.append(
                f"-- migration {path.stem} (deploy applies it through yoyo, which records it in "
                f"{schema}.{quote_ident(YOYO_MIGRATION_TABLE)})\n"
                f"SET search_path TO {schema};\n{path.read_text().strip()}\nRESET search_path;"
            )
    parts.append("BEGIN;")
    parts.extend(obj.sql.strip() for obj in render_objects(mapping))
    parts.append(render_grants(mapping).strip())
    parts.append("COMMIT;")
    return "\n\n".join(parts) + "\n"

