"""The command line end to end: a real database (the session's throwaway server), the CLI in
a subprocess as a user runs it, exit codes, stdout and the one-line stderr contract.

Exit codes: 0 success, 1 database/runtime failure, 2 bad usage or configuration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from helpers import LOG_LINE, assert_one_error_line, add_stack, run_cli, stack_exists

UNREACHABLE_DSN = "host=127.0.0.1 port=1 connect_timeout=2"
MALFORMED_DSNS = ["this is not a dsn", "postgresql://[bad", "dbname='unterminated", "nosuchoption=1"]




def cli(*args: str, code: int = 0, env: dict | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run the CLI; check its exit code and the stderr contract."""
    result = run_cli(*args, env=env, cwd=cwd)
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout
    assert result.returncode == code, (
        f"adhoc-gc {' '.join(args)}: exit {result.returncode}, expected {code}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}")
    if code != 0:
        assert_one_error_line(result.stderr)
    return result


def write_config(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def schemas(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {row[0] for row in conn.execute("SELECT nspname FROM pg_catalog.pg_namespace")}


def table_counts(conn: psycopg.Connection) -> dict[str, int]:
    tables = ["customers", "locations", "contacts", "cases", "devices", "adhoc_gc.runs", "adhoc_gc.purged"]
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def add_case(conn: psycopg.Connection, location: int) -> None:
    conn.execute("INSERT INTO cases (location_id, subject) VALUES (%s, 'open')", (location,))


def add_device(conn: psycopg.Connection, location: int) -> None:
    conn.execute("INSERT INTO devices (location_id, serial) VALUES (%s, 'SN-1')", (location,))


@pytest.fixture
def dataset(ref_conn):
    """A known mix on the deployed reference schema: 3 eligible ad-hoc stacks, 4 held ones
    (one per reason), 2 manual customers."""
    eligible = [
        add_stack(ref_conn, age="30 days", locations=2, contacts_per_location=2),
        add_stack(ref_conn, age="90 days"),
        add_stack(ref_conn, age="400 days", locations=0),
    ]
    by_activity = add_stack(ref_conn, age="2 days")
    by_login = add_stack(ref_conn, age="30 days", last_login_ago="1 month")
    by_case = add_stack(ref_conn, age="30 days")
    add_case(ref_conn, by_case.locations[0])
    by_device = add_stack(ref_conn, age="30 days")
    add_device(ref_conn, by_device.locations[0])
    manual = [add_stack(ref_conn, adhoc=False, age="400 days"), add_stack(ref_conn, adhoc=False)]
    return {
        "eligible": eligible,
        "held": {"activity": by_activity, "login": by_login, "location_case": by_case, "location_device": by_device},
        "manual": manual,
    }


# --- deploy ----------------------------------------------------------------------------------

def test_deploy_then_deploy_again(app_db):
    assert "adhoc_gc" not in schemas(app_db)

    first = cli("deploy", "--dsn", app_db)
    assert "deployed adhoc-gc" in first.stdout
    assert "migrations applied: adhoc_gc_0001_runs_and_purged" in first.stdout
    assert first.stderr == ""
    assert "adhoc_gc" in schemas(app_db)

    second = cli("deploy", "--dsn", app_db)
    assert "migrations applied: none pending" in second.stdout
    assert "views and functions re-created:" in second.stdout

    again = json.loads(cli("deploy", "--dsn", app_db, "--json").stdout)
    assert again["migrations"] == []
    assert "views/candidates.sql" in again["objects"] and "views/eligibility.sql" in again["objects"]

    with psycopg.connect(app_db) as conn:
        assert conn.execute("SELECT count(*) FROM adhoc_gc.candidates").fetchone()[0] == 0


@pytest.mark.parametrize("toml, names", [
    pytest.param('[customer]\ntable = "public.kunden"\n', ["[customer].table", "public.kunden", "not found"],
                 id="missing-table"),
    pytest.param('[contact]\nlast_login = "last_seen_at"\n', ["[contact].last_login", '"last_seen_at"',
                                                               "public.contacts"], id="missing-column"),
    pytest.param('[[blockers]]\ntable = "public.tickets"\ncolumn = "location_id"\nreferences = "location"\n',
                 ["public.tickets", "not found"], id="missing-blocker-table"),
    pytest.param('[customer]\nactivity = ["name"]\n', ["[customer].activity", '"name"', "type text"],
                 id="activity-column-of-wrong-type"),
    pytest.param('[location]\ncustomer = "name"\n', ["[location].customer", '"name"', "type text"],
                 id="reference-column-of-wrong-type"),
    pytest.param('[customer]\nadhoc = "source"\n', ["[customer].adhoc", '"source"', "adhoc_values"],
                 id="text-adhoc-column-without-values"),
    pytest.param('[customer]\nkey = "name"\n', ["[customer].key", '"name"', "not unique"],
                 id="key-not-unique"),
    pytest.param('[customer]\nkey = "created_at"\n',
                 ["[customer].key", "timestamp with time zone", "keys must be smallint, integer, bigint, uuid or text"],
                 id="key-of-unsupported-type"),
    pytest.param('[database]\nschema = "gc_custom"\n[customer]\ntable = "public.kunden"\n',
                 ["public.kunden"], id="custom-schema"),
    pytest.param('[policy]\ninactivity = "100000000 years"\n',
                 ["[policy].inactivity", "'100000000 years' is too long"], id="interval-past-the-timestamps"),
    pytest.param('[guard]\nstatement_timeout = "30 days"\n',
                 ["[guard].statement_timeout", "'30 days' must be from 1 millisecond to 2147483647 milliseconds"],
                 id="timeout-past-postgresql-timeouts"),
    pytest.param('[guard]\nlock_timeout = "0.4 milliseconds"\n',
                 ["[guard].lock_timeout", "'0.4 milliseconds' must be from 1 millisecond"],
                 id="timeout-that-would-round-to-none"),
])
def test_deploy_refuses_a_mapping_that_does_not_match_and_creates_nothing(app_db, tmp_path, toml, names):
    before = schemas(app_db)
    config = write_config(tmp_path / "bad.toml", toml)

    result = cli("deploy", "--dsn", app_db, "--config", config, code=2)

    line = result.stderr
    assert "does not match the database" in line
    for name in names:
        assert name in line, f"{name!r} not named in {line!r}"
    assert result.stdout == ""
    after = schemas(app_db)
    assert after == before
    assert "adhoc_gc" not in after and "gc_custom" not in after


def test_deploy_a_mapping_without_a_last_login_column(app_db, tmp_path):
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE contacts DROP COLUMN last_login_at")
    refused = cli("deploy", "--dsn", app_db, code=2)
    assert "[contact].last_login" in refused.stderr and '"last_login_at"' in refused.stderr

    config = write_config(tmp_path / "nologin.toml", "[policy]\nlogin_rule = false\n")
    cli("deploy", "--dsn", app_db, "--config", config)
    plan = json.loads(cli("plan", "--dsn", app_db, "--config", config, "--json").stdout)
    assert plan["adhoc_customers"] == 0


# --- render ----------------------------------------------------------------------------------

def test_render_needs_no_database_and_its_output_deploys(app_db):
    rendered = cli("render", "--dsn", UNREACHABLE_DSN)
    sql = rendered.stdout
    assert rendered.stderr == ""
    assert 'CREATE OR REPLACE VIEW "adhoc_gc"."candidates"' in sql
    assert 'CREATE OR REPLACE VIEW "adhoc_gc"."eligibility"' in sql
    assert "{{" not in sql and "{%" not in sql

    # What a DBA does with it: run the file as it is (like psql -f) on their database.
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.execute(sql)
        gone = add_stack(conn, age="30 days", locations=2, contacts_per_location=1)
        fresh = add_stack(conn, age="1 day")
        manual = add_stack(conn, adhoc=False, age="1 year")
        candidates = [row[0] for row in conn.execute("SELECT customer_id FROM adhoc_gc.candidates")]
        assert candidates == [gone.customer]
        verdicts = dict(conn.execute("SELECT customer_id, blocked_by FROM adhoc_gc.eligibility").fetchall())
        assert verdicts == {gone.customer: [], fresh.customer: ["activity"]}

        # The objects alone apply again on top (re-deploy through the DBA's tooling).
        conn.execute(cli("render", "--objects-only", "--dsn", UNREACHABLE_DSN).stdout)

    # The runner accepts what was deployed this way (same mapping, same fingerprint).
    plan = json.loads(cli("plan", "--dsn", app_db, "--json").stdout)
    assert (plan["adhoc_customers"], plan["eligible"], plan["held"]) == (2, 1, 1)
    cli("purge", "--dsn", app_db)
    with psycopg.connect(app_db) as conn:
        assert not stack_exists(conn, gone)
        assert stack_exists(conn, fresh) and stack_exists(conn, manual)

    # A database set up from rendered SQL can later be taken over by `deploy`.
    cli("deploy", "--dsn", app_db)
    with psycopg.connect(app_db) as conn:
        assert conn.execute("SELECT count(*) FROM adhoc_gc.runs").fetchone()[0] == 1


def test_render_objects_only_leaves_out_schema_and_tables():
    sql = cli("render", "--objects-only").stdout
    assert "CREATE SCHEMA" not in sql and "CREATE TABLE" not in sql
    assert 'CREATE OR REPLACE VIEW "adhoc_gc"."candidates"' in sql


def test_render_uses_the_config_file(tmp_path):
    write_config(tmp_path / "adhoc-gc.toml", '[database]\nschema = "gc ops"\n')
    sql = cli("render", cwd=str(tmp_path)).stdout
    assert 'CREATE OR REPLACE VIEW "gc ops"."candidates"' in sql
    assert "mapping adhoc-gc.toml" in sql.splitlines()[0]


def test_render_with_a_bad_config_is_a_usage_error(tmp_path):
    config = write_config(tmp_path / "bad.toml", '[customer]\nkey = "x;y"\n')
    result = cli("render", "--config", config, code=2)
    assert "[customer].key" in result.stderr
    assert result.stdout == ""


# --- plan ------------------------------------------------------------------------------------

def test_plan_json_counts_a_known_dataset(ref_db, dataset):
    plan = json.loads(cli("plan", "--dsn", ref_db, "--json").stdout)
    assert plan["adhoc_customers"] == 7
    assert plan["eligible"] == 3
    assert plan["held"] == 4
    assert plan["held_by"] == {"activity": 1, "login": 1, "location_case": 1, "location_device": 1}
    eligible = sorted(dataset["eligible"], key=lambda s: s.customer)
    assert [s["customer_id"] for s in plan["sample"]] == [str(s.customer) for s in eligible]
    first = plan["sample"][0]
    assert first["location_ids"] == [str(k) for k in eligible[0].locations]
    assert first["contact_ids"] == [str(k) for k in eligible[0].contacts]
    assert plan["sample"][2]["location_ids"] == []  # the stack without locations

    limited = json.loads(cli("plan", "--dsn", ref_db, "--json", "--sample", "1").stdout)
    assert len(limited["sample"]) == 1


def test_plan_text(ref_db, dataset):
    out = cli("plan", "--dsn", ref_db).stdout
    assert "ad-hoc customers: 7" in out
    assert "eligible now:   3" in out
    assert "held:           4" in out
    for reason in ("activity", "login", "location_case", "location_device"):
        assert any(line.split() == [reason, "1"] for line in out.splitlines()), f"{reason} missing in:\n{out}"
    assert "first 3 candidates:" in out
    assert f"customer {dataset['eligible'][0].customer}:" in out


def test_plan_changes_nothing(ref_db, ref_conn, dataset):
    before = table_counts(ref_conn)
    cli("plan", "--dsn", ref_db)
    cli("plan", "--dsn", ref_db, "--json")
    assert table_counts(ref_conn) == before
    assert all(stack_exists(ref_conn, s) for s in dataset["eligible"])


def test_plan_and_explain_run_in_read_only_transactions(ref_db, dataset):
    # Every transaction of these sessions is read only: any write would fail the command.
    env = {"PGOPTIONS": "-c default_transaction_read_only=on"}
    plan = json.loads(cli("plan", "--dsn", ref_db, "--json", env=env).stdout)
    assert plan["eligible"] == 3
    cli("explain", str(dataset["eligible"][0].customer), "--dsn", ref_db, env=env)
    # ...while a purge in such a session cannot delete (and says so on one line).
    refused = cli("purge", "--dsn", ref_db, env=env, code=1)
    assert "read-only" in refused.stderr


@pytest.fixture
def role(pg_server, ref_db):
    """make(read_only=..., grant=...) -> DSN of ref_db as a new login role; dropped afterwards."""
    made: list[str] = []

    def make(read_only: bool, grant: bool) -> str:
        name = f"reader_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(ref_db, autocommit=True) as conn:
            conn.execute(f'CREATE ROLE "{name}" LOGIN')
            made.append(name)
            if read_only:
                conn.execute(f'ALTER ROLE "{name}" SET default_transaction_read_only = on')
            if grant:
                conn.execute(f'GRANT USAGE ON SCHEMA adhoc_gc TO "{name}"')
                conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA adhoc_gc TO "{name}"')
                conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{name}"')
                conn.execute(f'GRANT EXECUTE ON FUNCTION adhoc_gc.explain_customer(text) TO "{name}"')
        return make_conninfo(ref_db, user=name)

    yield make
    with psycopg.connect(ref_db, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP OWNED BY "{name}"')
            conn.execute(f'DROP ROLE "{name}"')


def test_plan_works_for_a_read_only_role(ref_db, ref_conn, dataset, role):
    reader = role(read_only=True, grant=True)
    before = table_counts(ref_conn)
    plan = json.loads(cli("plan", "--dsn", reader, "--json").stdout)
    assert (plan["adhoc_customers"], plan["eligible"], plan["held"]) == (7, 3, 4)
    cli("explain", str(dataset["held"]["login"].customer), "--dsn", reader)
    cli("runs", "--dsn", reader)
    assert table_counts(ref_conn) == before


def test_a_database_error_is_one_line_exit_1(ref_db, role):
    outsider = role(read_only=False, grant=False)
    result = cli("plan", "--dsn", outsider, code=1)
    assert "permission denied" in result.stderr


def test_plan_on_an_empty_deployed_database(ref_db):
    out = cli("plan", "--dsn", ref_db).stdout
    assert "ad-hoc customers: 0" in out
    assert "candidates" not in out


# --- purge and runs --------------------------------------------------------------------------

def test_purge_in_limited_batches_then_runs_json(ref_db, ref_conn):
    gone = [add_stack(ref_conn, age="30 days", locations=1, contacts_per_location=2) for _ in range(5)]
    kept = [add_stack(ref_conn, age="1 day"), add_stack(ref_conn, adhoc=False)]

    first = json.loads(cli("purge", "--dsn", ref_db, "--batch-size", "2", "--max-batches", "2", "--json").stdout)
    assert first["status"] == "succeeded"
    assert first["batches"] == 2
    assert (first["customers_deleted"], first["locations_deleted"], first["contacts_deleted"]) == (4, 4, 8)
    assert sum(stack_exists(ref_conn, s) for s in gone) == 1

    second = cli("purge", "--dsn", ref_db, "--batch-size", "2")
    # Not on a terminal: progress goes to stderr as log lines, the summary to stdout.
    assert all(LOG_LINE.match(line) for line in second.stderr.splitlines()), second.stderr
    assert second.stdout.startswith(f"run {first['run_id'] + 1} succeeded: 1 customers, 1 locations, 2 contacts")
    assert not any(stack_exists(ref_conn, s) for s in gone)
    assert all(stack_exists(ref_conn, s) for s in kept)

    runs = json.loads(cli("runs", "--dsn", ref_db, "--json").stdout)
    assert [r["id"] for r in runs] == [first["run_id"] + 1, first["run_id"]]  # newest first
    newest, oldest = runs
    assert oldest["status"] == "succeeded" and oldest["trigger"] == "runner"
    assert (oldest["batch_size"], oldest["batches"], oldest["customers_deleted"]) == (2, 2, 4)
    assert (oldest["locations_deleted"], oldest["contacts_deleted"], oldest["error"]) == (4, 8, None)
    assert newest["customers_deleted"] == 1 and newest["finished_at"] is not None

    assert len(json.loads(cli("runs", "--dsn", ref_db, "--json", "--limit", "1").stdout)) == 1
    text = cli("runs", "--dsn", ref_db).stdout.splitlines()
    assert text[0].split()[:3] == ["id", "started", "status"]
    assert text[1].split()[0] == str(newest["id"]) and "succeeded" in text[1]


def test_purge_no_archive(ref_db, ref_conn):
    add_stack(ref_conn, age="30 days")
    result = json.loads(cli("purge", "--dsn", ref_db, "--no-archive", "--json").stdout)
    assert result["customers_deleted"] == 1
    assert ref_conn.execute("SELECT count(*) FROM adhoc_gc.purged").fetchone()[0] == 0


def test_runs_before_any_run(ref_db):
    assert cli("runs", "--dsn", ref_db).stdout == "no runs yet\n"
    assert json.loads(cli("runs", "--dsn", ref_db, "--json").stdout) == []


def test_runs_shows_how_a_run_was_paced(ref_db, ref_conn):
    add_stack(ref_conn, age="30 days")
    cli("purge", "--dsn", ref_db, "--quiet", "--no-archive", "--max-runtime", "1m", "--target-batch-seconds", "0.5")
    (run,) = json.loads(cli("runs", "--dsn", ref_db, "--json").stdout)
    assert {key: run[key] for key in ("archive", "max_runtime", "max_batches", "target_batch_seconds",
                                      "batch_retries", "throttled_seconds")} == {
        "archive": False, "max_runtime": 60.0, "max_batches": None, "target_batch_seconds": 0.5,
        "batch_retries": 0, "throttled_seconds": 0.0}
    header, row = cli("runs", "--dsn", ref_db).stdout.splitlines()
    assert header.split()[-3:] == ["retries", "throttled", "error"]
    assert row.split()[-2:] == ["0", "0s"]


def test_status_without_pg_cron_lists_the_runs(ref_db, ref_conn):
    # The test server does not load pg_cron: a runner-only install.
    add_stack(ref_conn, age="30 days")
    cli("purge", "--dsn", ref_db, "--quiet")
    text = cli("status", "--dsn", ref_db).stdout
    assert text.startswith("no pg_cron job: pg_cron is not loaded: add to postgresql.conf")
    assert "last purge runs:" in text and "succeeded" in text and "1 customers" in text
    report = json.loads(cli("status", "--dsn", ref_db, "--json").stdout)
    assert report["scheduled"] is False and report["cron_unavailable"].startswith("pg_cron is not loaded")
    assert [r["status"] for r in report["runs"]] == ["succeeded"]


def test_purge_with_max_runtime_and_sleep(ref_db, ref_conn):
    for _ in range(3):
        add_stack(ref_conn, age="30 days")
    result = json.loads(cli("purge", "--dsn", ref_db, "--batch-size", "1", "--sleep", "0.2",
                            "--max-runtime", "0.3s", "--json").stdout)
    assert result["status"] == "succeeded"
    assert 1 <= result["batches"] < 3


def test_sleep_pauses_only_between_batches_and_never_past_max_runtime(ref_db, ref_conn):
    for _ in range(3):
        add_stack(ref_conn, age="30 days")

    def timed(*args: str) -> tuple[dict, float]:
        started = time.monotonic()
        result = json.loads(cli("purge", "--dsn", ref_db, "--json", *args).stdout)
        return result, time.monotonic() - started

    # One batch allowed: no pause after it.
    result, took = timed("--batch-size", "1", "--sleep", "30", "--max-batches", "1")
    assert result["batches"] == 1 and took < 15, took
    # The pause is cut short where --max-runtime ends.
    result, took = timed("--batch-size", "1", "--sleep", "30", "--max-runtime", "2s")
    assert result["batches"] == 1 and took < 15, took
    # The last candidates' batch (short of its size): no pause after it either.
    result, took = timed("--batch-size", "5", "--sleep", "30")
    assert result["customers_deleted"] == 1 and took < 15, took


@pytest.mark.parametrize("signum, said", [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated")],
                         ids=["SIGINT", "SIGTERM"])
def test_interrupted_purge_is_recorded_and_reported_on_one_line(ref_db, ref_conn, signum, said):
    for _ in range(4):
        add_stack(ref_conn, age="30 days")
    process = subprocess.Popen(
        [sys.executable, "-m", "adhoc_gc", "purge", "--dsn", ref_db, "--batch-size", "1", "--sleep", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = ref_conn.execute("SELECT batches FROM adhoc_gc.runs ORDER BY id DESC LIMIT 1").fetchone()
            if row and row[0] >= 1:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the purge did not finish a batch")
        time.sleep(0.3)  # into the pause between batches
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, (stdout, stderr)
    assert "Traceback" not in stderr
    assert assert_one_error_line(stderr) == f"adhoc-gc: error: {said}"
    status, error, batches = ref_conn.execute(
        "SELECT status, error, batches FROM adhoc_gc.runs ORDER BY id DESC LIMIT 1").fetchone()
    assert (status, error) == ("failed", said)
    assert batches >= 1


# --- where the output goes ------------------------------------------------------------------

def shell(command: str, **env: str) -> subprocess.CompletedProcess:
    """`command` in bash, `adhoc-gc` being this Python's CLI; its exit code is the CLI's."""
    adhoc_gc = f"{sys.executable} -m adhoc_gc"
    return subprocess.run(["bash", "-c", command.replace("adhoc-gc", adhoc_gc) + "; exit ${PIPESTATUS[0]}"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, **env})


def test_a_reader_that_stops_reading_is_not_a_failure(ref_db, ref_conn):
    """`| head` closes the pipe: the purge still deletes, records its run and exits 0."""
    gone = [add_stack(ref_conn, age="30 days") for _ in range(3)]
    purged = shell(f"adhoc-gc purge --batch-size 1 --json --dsn '{ref_db}' | head -c 0")
    assert (purged.returncode, purged.stderr) == (0, ""), purged.stderr
    assert not any(stack_exists(ref_conn, customer) for customer in gone)
    assert ref_conn.execute("SELECT status FROM adhoc_gc.runs").fetchall() == [("succeeded",)]
    for command in ("runs", "plan", "report", "render", "doctor --json"):
        listed = shell(f"adhoc-gc {command} --dsn '{ref_db}' | head -c 1")
        assert listed.returncode in (0, 4) and listed.stderr == "", (command, listed.stderr)


def test_output_that_cannot_be_written_is_exit_1_on_one_line(ref_db):
    for redirect, reason in [("> /dev/full", "No space left on device"), (">&-", "standard output is closed")]:
        result = shell(f"adhoc-gc runs --dsn '{ref_db}' {redirect}")
        assert result.returncode == 1, result.stderr
        assert assert_one_error_line(result.stderr) == f"adhoc-gc: error: cannot write the output: {reason}"


def test_a_closed_or_broken_stderr_does_not_stop_a_purge(ref_db, ref_conn):
    for redirect in ("2>&-", "--log-format json 2>&1 | head -1 >/dev/null"):
        gone = [add_stack(ref_conn, age="30 days") for _ in range(3)]
        result = shell(f"adhoc-gc purge --batch-size 1 --sleep 0.2 --dsn '{ref_db}' {redirect}")
        assert result.returncode == 0, (redirect, result.stdout, result.stderr)
        assert not any(stack_exists(ref_conn, customer) for customer in gone), redirect
        assert ref_conn.execute("SELECT status FROM adhoc_gc.runs ORDER BY id DESC LIMIT 1").fetchone() == ("succeeded",)


def test_an_output_encoding_without_the_reports_characters_still_prints_it(ref_db, ref_conn):
    add_stack(ref_conn, age="3 days")
    for command in ("report", "report --html -", "plan", "doctor"):
        result = shell(f"adhoc-gc {command} --dsn '{ref_db}'", PYTHONIOENCODING="ascii")
        assert result.returncode in (0, 4) and "error" not in result.stderr, (command, result.stderr)
        assert result.stdout.strip(), command


# --- explain ---------------------------------------------------------------------------------

def test_explain_an_eligible_customer(ref_db, dataset):
    key = str(dataset["eligible"][0].customer)
    out = cli("explain", key, "--dsn", ref_db).stdout
    assert out.startswith(f"customer {key}: ELIGIBLE now")
    assert "HOLD" not in out
    report = json.loads(cli("explain", key, "--dsn", ref_db, "--json").stdout)
    assert report["customer_id"] == key
    assert report["adhoc"] is True and report["eligible"] is True
    assert report["blocked_by"] == []
    assert report["location_ids"] == [str(k) for k in dataset["eligible"][0].locations]
    assert all(rule["passes"] for rule in report["rules"])


@pytest.mark.parametrize("reason, rule", [
    ("location_case", "no location_case"),
    ("location_device", "no location_device"),
    ("login", "no login within 6 months"),
    ("activity", "inactive for 14 days"),
])
def test_explain_a_held_customer(ref_db, dataset, reason, rule):
    key = str(dataset["held"][reason].customer)
    out = cli("explain", key, "--dsn", ref_db).stdout
    assert out.startswith(f"customer {key}: not eligible")
    held = [line for line in out.splitlines() if "[HOLD]" in line]
    assert len(held) == 1 and rule in held[0], out
    report = json.loads(cli("explain", key, "--dsn", ref_db, "--json").stdout)
    assert report["eligible"] is False and report["blocked_by"] == [reason]
    if reason in ("location_case", "location_device"):
        assert report["eligible_at"] is None
        assert "will not become eligible while a blocker holds it" in out
    else:
        assert report["eligible_at"] is not None
        assert "becomes eligible at" in out


def test_explain_a_customer_without_own_activity_says_so_not_a_blocker(ref_db, ref_conn):
    """Its stack is long inactive, but its own activity columns are NULL: never collected."""
    stack = add_stack(ref_conn, age="100 days")
    ref_conn.execute("ALTER TABLE customers ALTER COLUMN created_at DROP NOT NULL, ALTER COLUMN updated_at DROP NOT NULL")
    ref_conn.execute("UPDATE customers SET created_at = NULL, updated_at = NULL, is_adhoc = true WHERE id = %s",
                     (stack.customer,))
    out = cli("explain", str(stack.customer), "--dsn", ref_db).stdout
    (held,) = [line for line in out.splitlines() if "[HOLD]" in line]
    assert "inactive for 14 days" in held and "own activity (created_at, updated_at) is NULL" in held, out
    assert "will not become eligible while the customer row has no activity value" in out, out
    assert "blocker" not in out, out
    report = json.loads(cli("explain", str(stack.customer), "--dsn", ref_db, "--json").stdout)
    assert report["customer_activity_missing"] is True and report["blocked_by"] == ["activity"]


def test_explain_a_null_adhoc_flag_reads_null(ref_db, ref_conn):
    stack = add_stack(ref_conn)
    ref_conn.execute("ALTER TABLE customers ALTER COLUMN is_adhoc DROP NOT NULL")
    ref_conn.execute("UPDATE customers SET is_adhoc = NULL WHERE id = %s", (stack.customer,))
    out = cli("explain", str(stack.customer), "--dsn", ref_db).stdout
    assert "is_adhoc = NULL" in out and "None" not in out, out


def test_explain_a_customer_that_is_not_adhoc(ref_db, dataset):
    key = str(dataset["manual"][0].customer)
    out = cli("explain", key, "--dsn", ref_db).stdout
    assert out.startswith(f"customer {key}: not eligible")
    assert "never collected" in out
    report = json.loads(cli("explain", key, "--dsn", ref_db, "--json").stdout)
    assert report["adhoc"] is False and report["eligible"] is False


def test_explain_a_customer_that_does_not_exist(ref_db, dataset):
    result = cli("explain", "987654321", "--dsn", ref_db, code=2)
    assert "987654321" in result.stderr and "not found" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("key", ["abc", "1.5", "", "99999999999999999999999", "1; DROP TABLE customers"])
def test_explain_an_invalid_key(ref_db, ref_conn, dataset, key):
    before = table_counts(ref_conn)
    result = cli("explain", key, "--dsn", ref_db, code=2)
    assert "is not a valid key for public.customers" in result.stderr
    assert table_counts(ref_conn) == before


# --- refusing to run -------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["purge"], ["plan"], ["runs"], ["explain", "1"]])
def test_commands_on_a_database_without_the_package(app_db, command):
    result = cli(*command, "--dsn", app_db, code=2)
    assert "run `adhoc-gc deploy`" in result.stderr
    assert "adhoc_gc" not in schemas(app_db)


def test_purge_after_the_mapping_changed_before_redeploy(ref_db, ref_conn, tmp_path):
    stack = add_stack(ref_conn, age="20 days")
    config = write_config(tmp_path / "changed.toml", '[policy]\ninactivity = "30 days"\n')

    for command in (["purge"], ["plan"], ["explain", str(stack.customer)]):
        result = cli(*command, "--dsn", ref_db, "--config", config, code=2)
        assert "fingerprint" in result.stderr and "run `adhoc-gc deploy`" in result.stderr
    assert stack_exists(ref_conn, stack)
    assert ref_conn.execute("SELECT count(*) FROM adhoc_gc.runs").fetchone()[0] == 0

    cli("deploy", "--dsn", ref_db, "--config", config)
    result = json.loads(cli("purge", "--dsn", ref_db, "--config", config, "--json").stdout)
    assert result["customers_deleted"] == 0  # 20 days old: held under the new 30-day policy
    assert stack_exists(ref_conn, stack)
    # ...and now the built-in defaults are the stale mapping.
    assert "fingerprint" in cli("purge", "--dsn", ref_db, code=2).stderr


# --- connecting ------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["deploy"], ["plan"], ["purge"], ["runs"], ["explain", "1"]])
def test_an_unreachable_database_is_exit_1_on_one_line(command):
    started = time.monotonic()
    result = cli(*command, "--dsn", UNREACHABLE_DSN, code=1)
    assert "cannot connect to the database" in result.stderr
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("dsn", MALFORMED_DSNS)
@pytest.mark.parametrize("command", [["deploy"], ["plan"], ["purge"]])
def test_a_malformed_dsn_is_exit_2(command, dsn):
    result = cli(*command, "--dsn", dsn, code=2)
    assert "invalid connection string" in result.stderr


def test_dsn_precedence_flag_then_env_then_file(ref_db, tmp_path):
    write_config(tmp_path / "adhoc-gc.toml", f"[database]\ndsn = '{ref_db}'\n")
    cwd = str(tmp_path)
    cli("runs", cwd=cwd)  # from ./adhoc-gc.toml
    env = {"ADHOC_GC_DSN": UNREACHABLE_DSN}
    cli("runs", cwd=cwd, env=env, code=1)  # the environment beats the file
    cli("runs", "--dsn", ref_db, cwd=cwd, env=env)  # the flag beats both


def test_config_precedence_flag_then_env_then_cwd(ref_db, tmp_path):
    # Only the defaults' fingerprint matches what ref_db has deployed.
    (tmp_path / "cwd").mkdir()
    cwd = str(tmp_path / "cwd")
    write_config(tmp_path / "cwd" / "adhoc-gc.toml", '[policy]\ninactivity = "1 day"\n')
    from_env = write_config(tmp_path / "env.toml", '[policy]\ninactivity = "2 days"\n')
    matching = write_config(tmp_path / "defaults.toml", "")

    assert "fingerprint" in cli("plan", "--dsn", ref_db, cwd=cwd, code=2).stderr
    env = {"ADHOC_GC_CONFIG": from_env}
    assert "fingerprint" in cli("plan", "--dsn", ref_db, cwd=cwd, env=env, code=2).stderr
    cli("plan", "--dsn", ref_db, cwd=cwd, env={"ADHOC_GC_CONFIG": matching})
    cli("plan", "--dsn", ref_db, "--config", matching, cwd=cwd, env=env)
    missing = cli("plan", "--dsn", ref_db, "--config", str(tmp_path / "nope.toml"), code=2)
    assert "config file not found" in missing.stderr


# --- usage -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (["frobnicate"], "invalid choice"),
    ([], "required"),
    (["purge", "--batch-size", "0"], "--batch-size"),
    (["purge", "--batch-size", "-3"], "--batch-size"),
    (["purge", "--batch-size", "ten"], "--batch-size"),
    (["purge", "--max-batches", "0"], "--max-batches"),
    (["purge", "--max-runtime", "xyz"], "--max-runtime"),
    (["purge", "--max-runtime", "10 parsecs"], "--max-runtime"),
    (["purge", "--max-runtime", "0"], "must be longer than zero"),
    (["schedule", "--cron", "30 3 * * *", "--max-runtime", "0s"], "must be longer than zero"),
    (["purge", "--sleep", "-1"], "--sleep"),
    (["purge", "--frobnicate"], "unrecognized arguments"),
    (["explain"], "CUSTOMER_KEY"),
    (["plan", "--sample", "abc"], "--sample"),
    (["runs", "--limit", "0"], "--limit"),
    (["demo", "--customers", "0"], "--customers"),
    # Numbers past what the SQL takes are usage errors, not database errors mid-run.
    (["purge", "--sleep", "nan"], "--sleep"),
    (["purge", "--sleep", "inf"], "--sleep"),
    (["purge", "--target-batch-seconds", "1e400"], "--target-batch-seconds"),
    (["purge", "--batch-size", "2147483648"], "at most 2147483647"),
    (["purge", "--max-batches", "2147483648"], "--max-batches"),
    (["purge", "--max-runtime", "99999999999h"], "--max-runtime"),
    (["schedule", "--cron", "30 3 * * *", "--max-runtime", "99999999999h"], "--max-runtime"),
    (["schedule", "--cron", "30 3 * * *", "--batch-size", "2147483648"], "--batch-size"),
    (["plan", "--sample", "-1"], "--sample"),
    (["plan", "--sample", "99999999999999999999"], "--sample"),
    (["runs", "--limit", "99999999999999999999"], "--limit"),
    (["restore", "--run", "99999999999999999999"], "--run"),
    (["report", "--html", ""], "--html needs a file name"),
    (["plan", "--config", ""], "--config needs a file name"),
    (["explain", "\udcff"], "not valid UTF-8"),  # the byte 0xff, as a shell passes it
])
def test_bad_usage_is_exit_2_on_one_line(args, expected):
    result = cli(*args, "--dsn", UNREACHABLE_DSN, code=2) if args and args[0] not in ("demo", "frobnicate") \
        else cli(*args, code=2)
    assert expected in result.stderr
    assert result.stdout == ""


def test_a_local_config_that_is_not_a_file_is_exit_2_not_the_defaults(tmp_path):
    (tmp_path / "adhoc-gc.toml").mkdir()
    result = cli("plan", "--dsn", UNREACHABLE_DSN, code=2, cwd=str(tmp_path))
    assert "config file is a directory: ./adhoc-gc.toml" in result.stderr


def test_help_and_version():
    assert "deploy" in cli("--help").stdout
    assert cli("--version").stdout.startswith("adhoc-gc ")
    assert "--batch-size" in cli("purge", "--help").stdout


def test_the_console_script_is_the_same_cli():
    # Where pip puts this interpreter's scripts (/usr/local/bin for Debian's /usr/bin/python3),
    # else next to the interpreter (a venv).
    candidates = [os.path.join(sysconfig.get_path("scripts"), "adhoc-gc"),
                  os.path.join(os.path.dirname(sys.executable), "adhoc-gc")]
    script = next((c for c in candidates if os.path.exists(c)), None)
    if script is None:
        pytest.skip(f"no adhoc-gc console script in {' or '.join(dict.fromkeys(os.path.dirname(c) for c in candidates))}")
    result = subprocess.run([script, "render", "--objects-only"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == cli("render", "--objects-only").stdout
