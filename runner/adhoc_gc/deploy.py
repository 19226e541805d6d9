"""Deploy: check the mapping, apply table migrations (yoyo), re-create views and functions.

Tables live in immutable yoyo migrations under migrations/; yoyo runs them with
search_path set to the package schema, so its own bookkeeping tables live there too.
Views and functions are rendered from sql/ and re-created on every deploy, in one
transaction, so a mapping or policy change applies on the next deploy.
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
    """Returns what was done: {"migrations": [...], "objects": [...]}."""
    queries = render_queries(mapping)
    objects = render_objects(mapping)
    with connect(dsn) as conn:
        check_mapping(conn, mapping, queries)  # raises before anything is written
        unmapped = conn.execute(queries["unmapped_foreign_keys"]).fetchall()
        if unmapped:
            raise ConfigError(f"mapping {mapping.source}: {describe_unmapped_foreign_keys(unmapped)}")
        conn.execute(queries["create_schema"])
        conn.commit()
    try:
        applied = apply_migrations(dsn, mapping.schema)
    except Exception as exc:  # yoyo wraps driver errors in its own types
        raise RunFailed(f"applying migrations failed: {one_line(exc)}") from None
    with connect(dsn) as conn:
        try:
            with conn.transaction():
                _create_objects(conn, mapping.schema, objects)
                conn.execute(render_grants(mapping))
        except psycopg.Error as exc:
            raise RunFailed(f"deploying views and functions failed, nothing changed: {one_line(exc)}") from None
    return {"migrations": applied, "objects": [o.path for o in objects], "version": __version__}


def _create_objects(conn: psycopg.Connection, schema: str, objects: list) -> None:
    """CREATE OR REPLACE each object in order, in the caller's transaction."""
    for position, obj in enumerate(objects):
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

