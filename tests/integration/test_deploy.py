"""Deploy re-creates views and functions every time, even when a view's columns change;
and a deploy that fails leaves the database as it was, a first deploy included."""

import re

import psycopg
import pytest

import adhoc_gc.deploy
from adhoc_gc.deploy import migration_files
from adhoc_gc.errors import RunFailed
from helpers import DEFAULT_MAPPING, add_stack, assert_one_error_line, deploy_mapping, mapping_from_toml, run_cli


def test_a_view_whose_columns_changed_is_replaced_with_its_dependents(ref_db, ref_conn):
    # What an older version might have left: an eligibility view of another shape, and our
    # own views built on it.
    ref_conn.execute("DROP VIEW adhoc_gc.blocked_summary, adhoc_gc.forecast")
    ref_conn.execute("DROP VIEW adhoc_gc.eligibility")
    ref_conn.execute("CREATE VIEW adhoc_gc.eligibility AS SELECT 1::text AS customer_id, true AS eligible, "
                     "NULL::timestamptz AS eligible_at, '{}'::text[] AS blocked_by")
    ref_conn.execute("CREATE VIEW adhoc_gc.forecast AS SELECT count(*) AS n FROM adhoc_gc.eligibility")
    stack = add_stack(ref_conn)
    deploy_mapping(ref_db, DEFAULT_MAPPING)
    assert ref_conn.execute("SELECT customer_id FROM adhoc_gc.eligibility").fetchall() == [(stack.customer,)]
    assert ref_conn.execute("SELECT count(*) FROM adhoc_gc.forecast").fetchone() == (30,)


def test_an_analysts_view_on_ours_is_never_dropped(ref_db, ref_conn):
    ref_conn.execute("DROP VIEW adhoc_gc.blocked_summary, adhoc_gc.forecast")
    ref_conn.execute("DROP VIEW adhoc_gc.eligibility")
    ref_conn.execute("CREATE VIEW adhoc_gc.eligibility AS SELECT 1::text AS customer_id")
    ref_conn.execute("CREATE VIEW public.my_report AS SELECT * FROM adhoc_gc.eligibility")
    with pytest.raises(RunFailed, match="nothing changed.*depend"):
        deploy_mapping(ref_db, DEFAULT_MAPPING)
    assert ref_conn.execute("SELECT * FROM public.my_report").fetchall() == [("1",)]


def test_deploy_twice_replaces_rather_than_adds(ref_db, ref_conn):
    before = ref_conn.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'adhoc_gc'::regnamespace").fetchone()
    deploy_mapping(ref_db, DEFAULT_MAPPING)
    after = ref_conn.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'adhoc_gc'::regnamespace").fetchone()
    assert before == after, "a re-deploy must replace functions, not add overloads"


# --- nothing is left half-deployed ------------------------------------------------------------

CATALOG = """
    SELECT 'schema', n.nspname, '' FROM pg_namespace AS n
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
    UNION ALL
    SELECT 'relation', n.nspname || '.' || c.relname, c.relkind::text FROM pg_class AS c
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
    UNION ALL
    SELECT 'routine', p.oid::regprocedure::text, p.prokind::text FROM pg_proc AS p
    JOIN pg_namespace AS n ON n.oid = p.pronamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
    ORDER BY 1, 2, 3
"""


def catalog(dsn: str) -> list[tuple]:
    """Every schema, relation and routine outside the system schemas."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(CATALOG).fetchall()


@pytest.fixture
def views_forbidden(app_db):
    """A DBA's event trigger that refuses CREATE VIEW: a deploy fails after its tables."""
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION public.no_views() RETURNS event_trigger LANGUAGE plpgsql AS "
                     "$$BEGIN RAISE EXCEPTION 'views need a change ticket'; END$$")
        conn.execute("CREATE EVENT TRIGGER no_views ON ddl_command_end WHEN TAG IN ('CREATE VIEW') "
                     "EXECUTE FUNCTION public.no_views()")
    yield app_db
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.execute("DROP EVENT TRIGGER IF EXISTS no_views")


def test_a_failed_first_deploy_leaves_nothing_behind(views_forbidden):
    dsn = views_forbidden
    before = catalog(dsn)
    assert ("schema", "adhoc_gc", "") not in before
    result = run_cli("deploy", "--dsn", dsn, env={"ADHOC_GC_CONFIG": ""})
    assert result.returncode == 1, result.stderr
    line = assert_one_error_line(result.stderr)
    assert re.fullmatch(r"adhoc-gc: error: deploy failed at sql/views/\w+\.sql, nothing changed: "
                        r"views need a change ticket", line), line
    assert result.stdout == ""
    # No schema, no runs or purged table, no yoyo bookkeeping: the database is as it was.
    assert catalog(dsn) == before

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP EVENT TRIGGER no_views")
    assert run_cli("deploy", "--dsn", dsn, env={"ADHOC_GC_CONFIG": ""}).returncode == 0
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM adhoc_gc.candidates").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM adhoc_gc._yoyo_migration").fetchone() == (len(migration_files()),)


def test_a_user_object_in_the_way_stops_a_first_deploy_and_changes_nothing(app_db):
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA adhoc_gc")
        conn.execute("CREATE TABLE adhoc_gc.forecast (day date, note text)")  # not a view
    before = catalog(app_db)
    with pytest.raises(RunFailed, match=r'^deploy failed at sql/views/forecast\.sql, nothing changed: '
                                        r'"forecast" is not a view$'):
        deploy_mapping(app_db, DEFAULT_MAPPING)
    after = catalog(app_db)
    assert after == before
    assert [name for kind, name, _ in after if name.startswith("adhoc_gc.")] == ["adhoc_gc.forecast"]


def test_a_failed_re_deploy_keeps_the_deployed_mapping(ref_db, ref_conn):
    deployed = ref_conn.execute("SELECT fingerprint FROM adhoc_gc.deployed_mapping()").fetchone()
    before = catalog(ref_db)
    ref_conn.execute("CREATE FUNCTION public.no_views() RETURNS event_trigger LANGUAGE plpgsql AS "
                     "$$BEGIN RAISE EXCEPTION 'views need a change ticket'; END$$")
    ref_conn.execute("CREATE EVENT TRIGGER no_views ON ddl_command_end WHEN TAG IN ('CREATE VIEW') "
                     "EXECUTE FUNCTION public.no_views()")
    try:
        with pytest.raises(RunFailed, match="nothing changed: views need a change ticket"):
            deploy_mapping(ref_db, mapping_from_toml('[policy]\ninactivity = "20 days"\n'))
    finally:
        ref_conn.execute("DROP EVENT TRIGGER no_views")
        ref_conn.execute("DROP FUNCTION public.no_views()")
    assert catalog(ref_db) == before
    assert ref_conn.execute("SELECT fingerprint FROM adhoc_gc.deployed_mapping()").fetchone() == deployed
    stack = add_stack(ref_conn, age="15 days")  # eligible under the deployed 14 days, not under 20
    assert ref_conn.execute("SELECT customer_id FROM adhoc_gc.candidates").fetchall() == [(stack.customer,)]


def test_a_change_between_the_trial_and_the_deploy_is_reported_as_it_is(app_db, monkeypatch):
    """The trial cannot foresee a change made while deploy runs (here: an event trigger
    created right after the migrations): the error then says what was applied."""
    apply_migrations = adhoc_gc.deploy.apply_migrations

    def apply_then_forbid_views(dsn, schema):
        applied = apply_migrations(dsn, schema)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE FUNCTION public.no_views() RETURNS event_trigger LANGUAGE plpgsql AS "
                         "$$BEGIN RAISE EXCEPTION 'views need a change ticket'; END$$")
            conn.execute("CREATE EVENT TRIGGER no_views ON ddl_command_end WHEN TAG IN ('CREATE VIEW') "
                         "EXECUTE FUNCTION public.no_views()")
        return applied

    monkeypatch.setattr(adhoc_gc.deploy, "apply_migrations", apply_then_forbid_views)
    try:
        every_migration = ", ".join(path.stem for path in migration_files())
        with pytest.raises(RunFailed, match=rf"^deploy failed at sql/views/\w+\.sql \(migrations "
                                            rf"{every_migration} were applied, the views and functions "
                                            r"were not\): views need a change ticket; run deploy again$"):
            deploy_mapping(app_db, DEFAULT_MAPPING)
    finally:
        with psycopg.connect(app_db, autocommit=True) as conn:
            conn.execute("DROP EVENT TRIGGER IF EXISTS no_views")
    monkeypatch.undo()
    deploy_mapping(app_db, DEFAULT_MAPPING)  # and deploying again completes it
    with psycopg.connect(app_db) as conn:
        assert conn.execute("SELECT count(*) FROM adhoc_gc.candidates").fetchone() == (0,)
