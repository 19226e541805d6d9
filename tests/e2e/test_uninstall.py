"""`adhoc-gc uninstall` end to end: the CLI in a subprocess against real databases.

It drops what deploy created and nothing else: the application database's schema dump is
byte-for-byte what it was before deploy; without --drop-data the tables and their rows stay
and deploy installs on top of them again; the pg_cron jobs go; a user's object that depends
on the package stops it (exit 2) before anything changed.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from adhoc_gc.render import render_objects
from adhoc_gc.throwaway import find_bindir
from adhoc_gc.uninstall import package_objects

from helpers import DEFAULT_MAPPING, add_stack, run_cli, stack_exists

# pg_dump lines that vary between two dumps of the same schema: the versions in the header,
# and (PostgreSQL 13.22, 14.19, 15.14, 16.10, 17.6 and later) the random \restrict key.
VARYING_DUMP_LINE = re.compile(r"^(-- Dumped (from database|by pg_dump) version .*|\\(un)?restrict .*)$")




def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess:
    result = run_cli(*args)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == code, (
        f"adhoc-gc {' '.join(args)}: exit {result.returncode}, expected {code}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}")
    if code != 0:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("adhoc-gc: error: "), result.stderr
        assert result.stdout == ""
    return result


def schema_dump(dsn: str) -> str:
    dumped = subprocess.run([str(find_bindir() / "pg_dump"), "--schema-only", "--dbname", dsn],
                            check=False, capture_output=True, text=True, timeout=60)
    assert dumped.returncode == 0, dumped.stderr
    return "\n".join(line for line in dumped.stdout.splitlines() if not VARYING_DUMP_LINE.match(line)) + "\n"


def package_catalog(dsn: str, schema: str = "adhoc_gc") -> list[tuple[str, str]]:
    """Every relation and routine in the package schema, with its kind."""
    with psycopg.connect(dsn) as conn:
        return conn.execute("""
            SELECT c.relname::text, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %(schema)s
            UNION ALL
            SELECT p.proname::text, p.prokind::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = %(schema)s
            ORDER BY 1, 2""", {"schema": schema}).fetchall()


def schema_exists(dsn: str, schema: str = "adhoc_gc") -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", (schema,)).fetchone()[0]


# --- what it drops -------------------------------------------------------------------------

def test_it_drops_every_object_deploy_creates():
    """The drop list is derived from sql/: each rendered file creates the object of its name."""
    rendered = {obj.path: obj.sql for obj in render_objects(DEFAULT_MAPPING)}
    keyword = {"views": "VIEW", "functions": "FUNCTION", "procedures": "PROCEDURE"}
    assert sorted(f"{kind}/{name}.sql" for kind, name in package_objects()) == sorted(rendered)
    for kind, name in package_objects():
        assert f'CREATE OR REPLACE {keyword[kind]} "adhoc_gc"."{name}"' in rendered[f"{kind}/{name}.sql"]
    order = [name for _, name in package_objects()]
    assert order.index("forecast") < order.index("eligibility")  # views before the views they read
    assert order.index("blocked_summary") < order.index("eligibility")


@pytest.fixture
def roles(app_db):
    """[roles] for the reference schema, granted on the application's tables before deploy."""
    suffix = uuid.uuid4().hex[:8]
    names = {kind: f"gc_{kind}_{suffix}" for kind in ("owner", "operator", "analyst")}
    with psycopg.connect(app_db, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'CREATE ROLE "{name}" LOGIN')
        conn.execute(f'GRANT SELECT, UPDATE, INSERT, DELETE ON customers, locations, contacts TO "{names["owner"]}"')
        conn.execute(f'GRANT SELECT ON cases, devices TO "{names["owner"]}"')
    yield "[roles]\n" + "".join(f'{kind} = "{name}"\n' for kind, name in names.items())
    with psycopg.connect(app_db, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'DROP OWNED BY "{name}" CASCADE')
            conn.execute(f'DROP ROLE "{name}"')


@pytest.mark.parametrize("variant", ["defaults", "schema-with-a-space", "roles"])
def test_drop_data_leaves_the_schema_dump_as_before_deploy(app_db, tmp_path, request, variant):
    schema = {"schema-with-a-space": "GC Müll ops"}.get(variant, "adhoc_gc")
    config = tmp_path / "adhoc-gc.toml"
    config.write_text(f'[database]\nschema = "{schema}"\n'
                      + (request.getfixturevalue("roles") if variant == "roles" else ""))
    before = schema_dump(app_db)

    cli("deploy", "--dsn", app_db, "--config", str(config))
    with psycopg.connect(app_db, autocommit=True) as conn:
        stacks = [add_stack(conn) for _ in range(3)]
        kept = add_stack(conn, age="1 day")
    cli("purge", "--dsn", app_db, "--config", str(config))
    assert schema_dump(app_db) != before

    result = cli("uninstall", "--drop-data", "--dsn", app_db, "--config", str(config))

    assert f"uninstalled adhoc-gc from schema {schema!r}" in result.stdout
    assert "dropped 5 views, 1 procedure, 17 functions" in result.stdout
    assert "dropped tables: runs, purged, _yoyo_migration, _yoyo_log, _yoyo_version, yoyo_lock" in result.stdout
    assert f"dropped schema {schema!r}" in result.stdout
    assert not schema_exists(app_db, schema)
    assert schema_dump(app_db) == before
    with psycopg.connect(app_db) as conn:  # the application's rows: what the purge left
        assert not any(stack_exists(conn, s) for s in stacks) and stack_exists(conn, kept)


def test_without_drop_data_the_tables_and_rows_stay_and_deploy_works_again(ref_db):
    with psycopg.connect(ref_db, autocommit=True) as conn:
        stacks = [add_stack(conn) for _ in range(3)]
    cli("purge", "--dsn", ref_db)

    result = cli("uninstall", "--dsn", ref_db)

    assert "dropped 5 views, 1 procedure, 17 functions" in result.stdout
    assert "kept tables (1 run, 3 archived stacks): runs, purged, _yoyo_migration" in result.stdout
    assert "adhoc-gc uninstall --drop-data" in result.stdout
    assert sorted(name for name, kind in package_catalog(ref_db) if kind in ("r", "v", "f", "p")) == [
        "_yoyo_log", "_yoyo_migration", "_yoyo_version", "purged", "runs", "yoyo_lock"]
    with psycopg.connect(ref_db) as conn:
        assert conn.execute("SELECT count(*) FROM adhoc_gc.runs").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM adhoc_gc.purged").fetchone()[0] == 3
    assert "is not deployed" in cli("plan", "--dsn", ref_db, code=2).stderr

    # Deploy on top: no migration to apply, the archive is usable, runs continue.
    again = cli("deploy", "--dsn", ref_db)
    assert "migrations applied: none pending" in again.stdout
    cli("restore", "--run", "1", "--dsn", ref_db)
    with psycopg.connect(ref_db) as conn:
        assert all(stack_exists(conn, s) for s in stacks)
    purged = json.loads(cli("purge", "--dsn", ref_db, "--json").stdout)
    assert purged["run_id"] == 2 and purged["customers_deleted"] == 3

    # And --drop-data later removes the rest.
    later = cli("uninstall", "--drop-data", "--dsn", ref_db)
    assert "dropped 5 views" in later.stdout and "dropped tables: runs, purged" in later.stdout
    assert not schema_exists(ref_db)


def test_uninstall_again_or_where_never_deployed_changes_nothing(app_db):
    before = schema_dump(app_db)
    result = cli("uninstall", "--drop-data", "--dsn", app_db)
    assert "adhoc-gc is not installed in schema 'adhoc_gc'" in result.stdout
    assert "pg_cron not loaded: no job to remove" in result.stdout
    assert schema_dump(app_db) == before


def test_a_schema_holding_a_users_object_is_kept(ref_db):
    with psycopg.connect(ref_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE adhoc_gc.my_notes (note text)")
        conn.execute("INSERT INTO adhoc_gc.my_notes VALUES ('mine')")

    result = cli("uninstall", "--drop-data", "--dsn", ref_db)

    assert "dropped tables: runs, purged" in result.stdout
    assert "kept schema 'adhoc_gc': it still holds table adhoc_gc.my_notes" in result.stdout
    assert [name for name, kind in package_catalog(ref_db) if kind == "r"] == ["my_notes"]
    with psycopg.connect(ref_db) as conn:
        assert conn.execute("SELECT note FROM adhoc_gc.my_notes").fetchall() == [("mine",)]


def test_where_never_deployed_the_applications_own_objects_of_the_same_names_stay(app_db, tmp_path):
    """The application has its own `runs`, `purged`, `candidates`, `restore` and `purge` in
    public, and in a schema of its own: uninstall of a package that was never deployed there
    must not take them for the package's."""
    with psycopg.connect(app_db, autocommit=True) as conn:
        for schema in ("public", "app2"):
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            conn.execute(f"CREATE TABLE {schema}.runs (id int PRIMARY KEY, note text)")
            conn.execute(f"INSERT INTO {schema}.runs VALUES (1, 'precious')")
            conn.execute(f"CREATE TABLE {schema}.purged (id int)")
            conn.execute(f"INSERT INTO {schema}.purged VALUES (7)")
            conn.execute(f"CREATE VIEW {schema}.candidates AS SELECT id FROM {schema}.runs")
            conn.execute(f"CREATE FUNCTION {schema}.restore(bigint, text) RETURNS int LANGUAGE sql AS 'SELECT 1'")
            conn.execute(f"CREATE PROCEDURE {schema}.purge() LANGUAGE sql AS 'SELECT 1'")
    before = schema_dump(app_db)
    for schema in ("public", "app2"):
        config = tmp_path / f"{schema}.toml"
        config.write_text(f'[database]\nschema = "{schema}"\n')
        for drop_data in ((), ("--drop-data",)):
            result = cli("uninstall", *drop_data, "--config", str(config), "--dsn", app_db)
            assert f"adhoc-gc is not installed in schema {schema!r}" in result.stdout, result.stdout
            assert "dropped" not in result.stdout and "kept tables" not in result.stdout, result.stdout
    assert schema_dump(app_db) == before
    with psycopg.connect(app_db) as conn:
        for schema in ("public", "app2"):
            assert conn.execute(f"SELECT note FROM {schema}.runs").fetchall() == [("precious",)]
            assert conn.execute(f"SELECT id FROM {schema}.purged").fetchall() == [(7,)]


def test_an_install_from_rendered_sql_is_uninstalled_too(app_db):
    """`adhoc-gc render | psql` records no yoyo migrations: deployed_mapping() tells."""
    from adhoc_gc.deploy import render_deploy_sql

    before = schema_dump(app_db)
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.execute(render_deploy_sql(DEFAULT_MAPPING))
    result = cli("uninstall", "--drop-data", "--dsn", app_db)
    assert "uninstalled adhoc-gc from schema 'adhoc_gc'" in result.stdout, result.stdout
    assert "dropped 5 views" in result.stdout and "dropped tables: runs, purged" in result.stdout, result.stdout
    assert schema_dump(app_db) == before


def test_yoyo_tables_that_another_project_records_in_stay_with_its_rows(app_db, tmp_path):
    """Deployed into a schema where the application keeps its own yoyo migrations: --drop-data
    takes only the package's migrations out of yoyo's tables, and deploy installs again."""
    from yoyo import read_migrations

    from adhoc_gc.deploy import _yoyo_backend

    theirs = tmp_path / "their_migrations"
    theirs.mkdir()
    (theirs / "0001_app_settings.sql").write_text("CREATE TABLE app_settings (key text PRIMARY KEY);\n")
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA shared")
    backend = _yoyo_backend(app_db, "shared")
    try:
        with backend.lock():
            backend.apply_migrations(backend.to_apply(read_migrations(str(theirs))))
    finally:
        backend.connection.close()
    config = tmp_path / "shared.toml"
    config.write_text('[database]\nschema = "shared"\n')
    cli("deploy", "--config", str(config), "--dsn", app_db)

    result = cli("uninstall", "--drop-data", "--config", str(config), "--dsn", app_db)

    assert "dropped tables: runs, purged" in result.stdout, result.stdout
    assert "kept schema 'shared': it still holds" in result.stdout, result.stdout
    tables = sorted(name for name, kind in package_catalog(app_db, "shared") if kind == "r")
    assert tables == ["_yoyo_log", "_yoyo_migration", "_yoyo_version", "app_settings", "yoyo_lock"], tables
    with psycopg.connect(app_db) as conn:
        recorded = conn.execute("SELECT migration_id FROM shared._yoyo_migration").fetchall()
        logged = conn.execute("SELECT DISTINCT migration_id FROM shared._yoyo_log").fetchall()
    assert recorded == [("0001_app_settings",)] and logged == [("0001_app_settings",)]

    again = cli("deploy", "--config", str(config), "--dsn", app_db)
    assert "migrations applied: adhoc_gc_0001" in again.stdout, again.stdout


# --- what stops it --------------------------------------------------------------------------

USER_OBJECTS = [
    pytest.param("CREATE VIEW public.held_report AS SELECT customer_id FROM adhoc_gc.eligibility WHERE NOT eligible",
                 ["view held_report depends on view adhoc_gc.eligibility"], id="view-on-eligibility"),
    pytest.param("CREATE FUNCTION public.eligible_count() RETURNS bigint LANGUAGE sql "
                 "BEGIN ATOMIC SELECT count(*) FROM adhoc_gc.candidates; END",
                 ["function eligible_count() depends on view adhoc_gc.candidates"], id="function-on-candidates"),
    pytest.param("CREATE FUNCTION public.first_candidates() RETURNS SETOF adhoc_gc.candidates LANGUAGE sql "
                 "AS 'SELECT NULL::adhoc_gc.candidates LIMIT 0'",
                 ["function first_candidates() depends on type adhoc_gc.candidates"], id="function-of-row-type"),
    pytest.param("CREATE VIEW adhoc_gc.my_runs AS SELECT id FROM adhoc_gc.daily_stats, adhoc_gc.runs",
                 ["view adhoc_gc.my_runs depends on view adhoc_gc.daily_stats"], id="view-in-the-package-schema"),
    pytest.param("CREATE TABLE public.run_notes (run_id bigint REFERENCES adhoc_gc.runs (id))",
                 ["table run_notes depends on table adhoc_gc.runs"], id="foreign-key-to-runs"),
]


@pytest.mark.parametrize("statement, named", USER_OBJECTS)
def test_a_users_dependent_object_stops_it_before_anything_changes(ref_db, statement, named):
    with psycopg.connect(ref_db, autocommit=True) as conn:
        conn.execute(statement)
    before = package_catalog(ref_db)

    result = cli("uninstall", "--drop-data", "--dsn", ref_db, code=2)

    line = result.stderr
    assert "uninstall refused, nothing was changed" in line and "CASCADE" in line
    for text in named:
        assert text in line, line
    assert package_catalog(ref_db) == before
    assert "candidates" in [name for name, _ in before]
    cli("plan", "--dsn", ref_db)  # still deployed and working


def test_a_foreign_key_to_runs_does_not_stop_it_without_drop_data(ref_db):
    with psycopg.connect(ref_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.run_notes (run_id bigint REFERENCES adhoc_gc.runs (id))")
    result = cli("uninstall", "--dsn", ref_db)
    assert "kept tables" in result.stdout
    assert "refused" in cli("uninstall", "--drop-data", "--dsn", ref_db, code=2).stderr


def test_it_waits_for_no_purge(ref_db):
    """A running purge holds the purge lock: uninstall refuses at once and changes nothing."""
    before = package_catalog(ref_db)
    with psycopg.connect(ref_db, autocommit=True) as purging:
        assert purging.execute("SELECT adhoc_gc._try_purge_lock()").fetchone()[0]
        result = cli("uninstall", "--drop-data", "--dsn", ref_db, code=1)
    assert "a purge is running in schema 'adhoc_gc'" in result.stderr and "nothing was changed" in result.stderr
    assert package_catalog(ref_db) == before


# --- pg_cron ----------------------------------------------------------------------------------

def test_the_pg_cron_jobs_go_too(cron_db, cron_server):
    dbname = conninfo_to_dict(cron_db)["dbname"]

    def jobs() -> list[str]:
        with psycopg.connect(cron_server.dsn(), autocommit=True) as cron:
            return [row[0] for row in cron.execute(
                "SELECT jobname FROM cron.job WHERE database = %s OR jobname LIKE %s ORDER BY jobid",
                (dbname, f"%{dbname}%"))]

    cli("schedule", "--dsn", cron_db, "--cron", "30 3 * * *", "--prune-cron-history", "14 days")
    cli("schedule", "--dsn", cron_db, "--cron", "0 4 * * 0", "--job-name", "weekly extra purge")
    default = f"adhoc-gc:{dbname}:adhoc_gc"
    assert jobs() == [default, default + ":prune-history", "weekly extra purge"]

    # Refused: the jobs stay with everything else.
    with psycopg.connect(cron_db, autocommit=True) as conn:
        conn.execute("CREATE VIEW public.held_report AS SELECT customer_id FROM adhoc_gc.eligibility")
    cli("uninstall", "--dsn", cron_db, code=2)
    assert len(jobs()) == 3

    with psycopg.connect(cron_db, autocommit=True) as conn:
        conn.execute("DROP VIEW public.held_report")
    result = cli("uninstall", "--dsn", cron_db, "--drop-data")

    assert f"removed pg_cron job(s): {default}, {default}:prune-history, weekly extra purge" in result.stdout
    assert jobs() == []
    assert not schema_exists(cron_db)
    again = cli("uninstall", "--dsn", cron_db, "--json")
    assert json.loads(again.stdout)["cron_jobs_removed"] == [] and not json.loads(again.stdout)["installed"]


def test_the_drop_itself_never_cascades(ref_db):
    """Were the check blind (an object created between it and the DROP), the DROP without
    CASCADE still stops, and the transaction leaves everything in place."""
    from adhoc_gc.errors import ConfigError
    from adhoc_gc.render import render_queries
    from adhoc_gc.uninstall import uninstall

    with psycopg.connect(ref_db, autocommit=True) as conn:
        conn.execute("CREATE VIEW public.held_report AS SELECT customer_id FROM adhoc_gc.eligibility")
    before = package_catalog(ref_db)
    blind = {**render_queries(DEFAULT_MAPPING), "uninstall_dependents": "SELECT NULL, NULL WHERE false"}

    with pytest.raises(ConfigError, match="no object was dropped: view held_report depends on view adhoc_gc.elig"):
        uninstall(ref_db, DEFAULT_MAPPING, blind, drop_data=True)

    assert package_catalog(ref_db) == before
