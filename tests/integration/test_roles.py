"""Least privilege: [roles] get exactly their part; nothing planted in public is ever used."""

import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from helpers import add_stack, deploy_mapping, mapping_from_toml, run_cli, stack_exists


@pytest.fixture
def roles(ref_db):
    suffix = uuid.uuid4().hex[:8]  # roles are cluster-wide: unique per test
    names = {kind: f"gc_{kind}_{suffix}" for kind in ("owner", "operator", "analyst", "stranger")}
    with psycopg.connect(ref_db, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'CREATE ROLE "{name}" LOGIN')
        conn.execute(f'GRANT SELECT, UPDATE, INSERT, DELETE ON customers, locations, contacts TO "{names["owner"]}"')
        conn.execute(f'GRANT SELECT ON cases, devices TO "{names["owner"]}"')
        conn.execute(f'GRANT CREATE ON SCHEMA public TO "{names["stranger"]}"')
    mapping = mapping_from_toml(
        f'[roles]\nowner = "{names["owner"]}"\noperator = "{names["operator"]}"\nanalyst = "{names["analyst"]}"\n')
    deploy_mapping(ref_db, mapping)
    yield names, mapping
    with psycopg.connect(ref_db, autocommit=True) as conn:
        conn.execute("DROP SCHEMA adhoc_gc CASCADE")
        conn.execute("DROP FUNCTION IF EXISTS public.now() CASCADE")
        conn.execute("DROP OPERATOR IF EXISTS public.= (bigint, bigint)")
        conn.execute("DROP FUNCTION IF EXISTS public.always_true(bigint, bigint)")
        for name in names.values():
            conn.execute(f'DROP OWNED BY "{name}" CASCADE')
            conn.execute(f'DROP ROLE "{name}"')


def _as(dsn, role):
    return make_conninfo(dsn, user=role)


def _config(tmp_path, mapping_text):
    path = tmp_path / "adhoc-gc.toml"
    path.write_text(mapping_text)
    return str(path)


def test_deploy_checks_the_roles(app_db):
    mapping = mapping_from_toml('[roles]\nowner = "no_such_role_x"\n')
    with pytest.raises(Exception, match="no_such_role_x.*does not exist"):
        deploy_mapping(app_db, mapping)


def test_owner_needs_privileges_on_the_stack_tables(app_db):
    with psycopg.connect(app_db, autocommit=True) as conn:
        role = f"gc_weak_{uuid.uuid4().hex[:8]}"
        conn.execute(f'CREATE ROLE "{role}"')
    try:
        with pytest.raises(Exception, match="lacks SELECT, UPDATE, DELETE, INSERT on public.customers"):
            deploy_mapping(app_db, mapping_from_toml(f'[roles]\nowner = "{role}"\n'))
    finally:
        with psycopg.connect(app_db, autocommit=True) as conn:
            conn.execute(f'DROP ROLE "{role}"')


def test_owner_needs_usage_on_the_tables_schema_and_the_fixes_are_runnable_sql(fresh_db):
    """Tables in a schema of their own, with names that need quotes: every fix deploy names
    is SQL that runs as printed, and once they have run, deploy passes."""
    dsn = fresh_db()
    role = f"GC Owner {uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "Ops App"')
        conn.execute('CREATE TABLE "Ops App"."Customers" (id bigint PRIMARY KEY, is_adhoc boolean, created_at timestamptz)')
        conn.execute('CREATE TABLE "Ops App"."Locations" (id bigint PRIMARY KEY, '
                     'customer_id bigint REFERENCES "Ops App"."Customers", created_at timestamptz)')
        conn.execute('CREATE TABLE "Ops App"."Contacts" (id bigint PRIMARY KEY, '
                     'location_id bigint REFERENCES "Ops App"."Locations", created_at timestamptz)')
        conn.execute('CREATE TABLE "Ops App"."Cases" (id bigint PRIMARY KEY, '
                     'location_id bigint REFERENCES "Ops App"."Locations")')
        conn.execute('CREATE INDEX ON "Ops App"."Cases" (location_id)')
        conn.execute(f'CREATE ROLE "{role}"')
        conn.execute(f'GRANT SELECT, UPDATE, DELETE, INSERT ON ALL TABLES IN SCHEMA "Ops App" TO "{role}"')
    mapping = mapping_from_toml(f"""
[customer]
table = "Ops App.Customers"
activity = ["created_at"]
[location]
table = "Ops App.Locations"
activity = ["created_at"]
[contact]
table = "Ops App.Contacts"
activity = ["created_at"]
[[blockers]]
table = "Ops App.Cases"
column = "location_id"
references = "location"
[policy]
login_rule = false
[roles]
owner = "{role}"
""")
    try:
        with pytest.raises(Exception) as refused:
            deploy_mapping(dsn, mapping)
        message = str(refused.value)
        assert f"lacks USAGE on schema 'Ops App' (GRANT USAGE ON SCHEMA \"Ops App\" TO \"{role}\")" in message
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'GRANT USAGE ON SCHEMA "Ops App" TO "{role}"')
            conn.execute(f'REVOKE INSERT ON "Ops App"."Contacts" FROM "{role}"')
        with pytest.raises(Exception) as refused:
            deploy_mapping(dsn, mapping)
        fix = str(refused.value).split("(GRANT ", 1)[1].split(")")[0]
        assert fix == f'INSERT ON "Ops App"."Contacts" TO "{role}"', fix
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("GRANT " + fix)
        deploy_mapping(dsn, mapping)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def test_throttling_needs_an_owner_that_sees_the_standby_lag(app_db):
    """[throttle] max_replica_lag reads pg_stat_replication as the functions' owner: deploy
    refuses an owner that cannot, naming the GRANT, instead of every purge stopping."""
    role = f"gc_throttled_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}"')
        conn.execute(f'GRANT SELECT, UPDATE, DELETE, INSERT ON ALL TABLES IN SCHEMA public TO "{role}"')
    mapping = mapping_from_toml(f'[throttle]\nmax_replica_lag = "30 seconds"\n[roles]\nowner = "{role}"\n')
    try:
        with pytest.raises(Exception, match=rf'cannot see standby replay lag.*GRANT pg_monitor TO "{role}"'):
            deploy_mapping(app_db, mapping)
        with psycopg.connect(app_db, autocommit=True) as conn:
            conn.execute(f'GRANT pg_monitor TO "{role}"')
        deploy_mapping(app_db, mapping)
    finally:
        with psycopg.connect(app_db, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def test_analyst_reads_the_views_and_cannot_delete(ref_db, ref_conn, roles, tmp_path):
    names, mapping = roles
    stack = add_stack(ref_conn)
    analyst = _as(ref_db, names["analyst"])
    with psycopg.connect(analyst, autocommit=True) as conn:
        assert conn.execute("SELECT customer_id FROM adhoc_gc.candidates").fetchall() == [(stack.customer,)]
        assert conn.execute("SELECT count(*) FROM adhoc_gc.eligibility").fetchone() == (1,)
        conn.execute("SELECT count(*) FROM adhoc_gc.runs")
        for view in ("blocked_summary", "forecast", "daily_stats"):  # the other views docs/analysts.md shows
            conn.execute(f"SELECT * FROM adhoc_gc.{view}").fetchall()
        for attempt in (
            "SELECT * FROM adhoc_gc.purge_batch(1, NULL, 10)",
            "SELECT adhoc_gc._start_run('x', 1, NULL, NULL, true)",
            "CALL adhoc_gc.purge()",
            "SELECT * FROM adhoc_gc.restore(1, NULL)",
            "SELECT count(*) FROM adhoc_gc.purged",
            "DELETE FROM customers",
            "SELECT count(*) FROM customers",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(attempt)
    config = _config(tmp_path, mapping_text(names))
    assert run_cli("plan", "--dsn", analyst, "--config", config).returncode == 0
    explained = run_cli("explain", str(stack.customer), "--dsn", analyst, "--config", config)
    assert explained.returncode == 0 and "ELIGIBLE" in explained.stdout
    denied = run_cli("purge", "--dsn", analyst, "--config", config)
    assert denied.returncode == 1 and "permission denied" in denied.stderr
    assert stack_exists(ref_conn, stack)


def test_operator_runs_purges_and_nothing_else(ref_db, ref_conn, roles, tmp_path):
    names, _ = roles
    stacks = [add_stack(ref_conn) for _ in range(3)]
    operator = _as(ref_db, names["operator"])
    config = _config(tmp_path, mapping_text(names))
    result = run_cli("purge", "--dsn", operator, "--config", config, "--batch-size", "2")
    assert result.returncode == 0, result.stderr
    assert not any(stack_exists(ref_conn, s) for s in stacks)
    more = add_stack(ref_conn)
    with psycopg.connect(operator, autocommit=True) as conn:
        conn.execute("CALL adhoc_gc.purge(batch_size => 2)")
        assert not stack_exists(ref_conn, more)
        for attempt in ("DELETE FROM customers", "SELECT count(*) FROM contacts",
                        "SELECT * FROM adhoc_gc.restore(1, NULL)", "SELECT count(*) FROM adhoc_gc.purged"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(attempt)
    owners = ref_conn.execute("""
        SELECT DISTINCT pg_get_userbyid(p.proowner) FROM pg_proc AS p
        WHERE p.pronamespace = 'adhoc_gc'::regnamespace""").fetchall()
    assert owners == [(names["owner"],)]


def test_a_stranger_cannot_run_anything(ref_db, roles):
    names, _ = roles
    with psycopg.connect(_as(ref_db, names["stranger"]), autocommit=True) as conn:
        for attempt in ("SELECT * FROM adhoc_gc.purge_batch(1, NULL, 10)", "CALL adhoc_gc.purge()",
                        "SELECT count(*) FROM adhoc_gc.candidates"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(attempt)


def test_objects_planted_in_public_change_nothing(ref_db, ref_conn, roles, tmp_path):
    """A user who may create in public plants a now() that makes every stack look old and
    an equality operator that matches everything; the operator's session even searches
    public first. The purge must delete exactly the eligible stack."""
    names, _ = roles
    eligible = add_stack(ref_conn)
    recent = add_stack(ref_conn, age="1 day")
    manual = add_stack(ref_conn, adhoc=False)
    with psycopg.connect(_as(ref_db, names["stranger"]), autocommit=True) as conn:
        conn.execute("CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql "
                     "AS $$ SELECT '2100-01-01'::timestamptz $$")
        conn.execute("CREATE FUNCTION public.always_true(bigint, bigint) RETURNS boolean LANGUAGE sql "
                     "AS $$ SELECT true $$")
        conn.execute("CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.always_true)")
        conn.execute("GRANT EXECUTE ON FUNCTION public.now(), public.always_true(bigint, bigint) TO PUBLIC")
    operator = make_conninfo(_as(ref_db, names["operator"]), options="-c search_path=public,pg_catalog")
    config = _config(tmp_path, mapping_text(names))
    result = run_cli("purge", "--dsn", operator, "--config", config, "--batch-size", "1")
    assert result.returncode == 0, result.stderr
    with psycopg.connect(operator, autocommit=True) as conn:
        conn.execute("CALL adhoc_gc.purge(batch_size => 1)")
    assert not stack_exists(ref_conn, eligible)
    assert stack_exists(ref_conn, recent) and stack_exists(ref_conn, manual)


def mapping_text(names):
    return f'[roles]\nowner = "{names["owner"]}"\noperator = "{names["operator"]}"\nanalyst = "{names["analyst"]}"\n'
