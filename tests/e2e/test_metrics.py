"""`adhoc-gc metrics` end to end: the CLI's output parsed by prometheus-client's own parser
(what node_exporter's textfile collector reads), on known data sets."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import uuid
from pathlib import Path

import psycopg
from prometheus_client.parser import text_string_to_metric_families
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from adhoc_gc.metrics import Family, escape_label_value, exposition

from helpers import add_stack, run_cli

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE_DSN = "host=127.0.0.1 port=1 connect_timeout=2"
STATUSES = ["running", "succeeded", "failed", "skipped", "refused", "abandoned"]




def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess:
    result = run_cli(*args)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == code, (
        f"adhoc-gc {' '.join(args)}: exit {result.returncode}, expected {code}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}")
    if code == 0:
        assert result.stderr == ""
    else:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("adhoc-gc: error: "), result.stderr
    return result


def metrics(dsn: str, *args: str) -> dict[str, dict[tuple, float]]:
    """{family name: {labels other than schema and database, sorted: value}}, checking that every
    family is a gauge with HELP text and every sample carries the schema and database labels."""
    text = cli("metrics", "--dsn", dsn, *args).stdout
    database = conninfo_to_dict(dsn)["dbname"]
    parsed: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation, family
        samples = {}
        for sample in family.samples:
            assert sample.name == family.name
            labels = dict(sample.labels)
            assert labels.pop("database") == database
            labels.pop("schema")
            samples[tuple(sorted(labels.items()))] = sample.value
        parsed[family.name] = samples
    return parsed


def schema_label(dsn: str, *args: str) -> set[str]:
    text = cli("metrics", "--dsn", dsn, *args).stdout
    return {s.labels["schema"] for f in text_string_to_metric_families(text) for s in f.samples}


def epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def insert_run(conn, status: str, started: str, finished: str | None, deleted=(0, 0, 0), error=None) -> None:
    conn.execute(
        "INSERT INTO adhoc_gc.runs (status, trigger, batch_size, started_at, finished_at, customers_deleted, "
        "locations_deleted, contacts_deleted, error) VALUES (%s, 'runner', 500, %s, %s, %s, %s, %s, %s)",
        (status, started, finished, *deleted, error))


def test_a_known_data_set(ref_db, ref_conn):
    for _ in range(3):
        add_stack(ref_conn, age="30 days")  # candidates
    add_stack(ref_conn, age="2 days")  # ad hoc, held by activity
    held = add_stack(ref_conn, age="30 days")
    ref_conn.execute("INSERT INTO cases (location_id, subject) VALUES (%s, 'open')", (held.locations[0],))
    add_stack(ref_conn, adhoc=False, age="400 days")  # manual: neither
    insert_run(ref_conn, "skipped", "2026-01-01 02:00:00+00", "2026-01-01 02:00:00+00", error="another purge")
    insert_run(ref_conn, "succeeded", "2026-01-01 03:00:00+00", "2026-01-01 03:00:30.5+00", (5, 6, 7))
    insert_run(ref_conn, "succeeded", "2026-01-02 03:00:00+00", "2026-01-02 03:01:00+00", (2, 2, 2))
    insert_run(ref_conn, "failed", "2026-01-03 03:00:00+00", "2026-01-03 03:00:10.25+00", (1, 2, 3), "boom")

    m = metrics(ref_db)

    assert m["adhoc_gc_candidates"] == {(): 3}
    assert m["adhoc_gc_adhoc_customers"] == {(): 5}
    assert m["adhoc_gc_last_run_status"] == {(("status", s),): int(s == "failed") for s in STATUSES}
    assert m["adhoc_gc_last_run_timestamp_seconds"] == {(): epoch("2026-01-03T03:00:00+00:00")}
    assert m["adhoc_gc_last_run_duration_seconds"] == {(): 10.25}
    assert m["adhoc_gc_last_run_deleted"] == {
        (("part", "customers"),): 1, (("part", "locations"),): 2, (("part", "contacts"),): 3}
    assert m["adhoc_gc_last_success_timestamp_seconds"] == {(): epoch("2026-01-02T03:01:00+00:00")}
    assert m["adhoc_gc_runs_total"] == {
        (("status", s),): {"succeeded": 2, "failed": 1, "skipped": 1}.get(s, 0) for s in STATUSES}
    assert m["adhoc_gc_customers_deleted_total"] == {(): 8}
    assert schema_label(ref_db) == {"adhoc_gc"}

    # --no-candidates leaves out the one count that may be slow, and only that.
    quick = metrics(ref_db, "--no-candidates")
    assert "adhoc_gc_candidates" not in quick
    assert quick == {name: samples for name, samples in m.items() if name != "adhoc_gc_candidates"}


def test_before_the_first_run(ref_db, ref_conn):
    add_stack(ref_conn)
    m = metrics(ref_db)
    assert m["adhoc_gc_candidates"] == {(): 1} and m["adhoc_gc_adhoc_customers"] == {(): 1}
    assert set(m["adhoc_gc_last_run_status"].values()) == {0}
    for name in ("adhoc_gc_last_run_timestamp_seconds", "adhoc_gc_last_run_duration_seconds",
                 "adhoc_gc_last_run_deleted"):
        assert name not in m
    # Never succeeded: 0, so "no success for 2 days" fires until a purge succeeds.
    assert m["adhoc_gc_last_success_timestamp_seconds"] == {(): 0}
    assert set(m["adhoc_gc_runs_total"].values()) == {0} and m["adhoc_gc_customers_deleted_total"] == {(): 0}


def test_after_real_purges_one_succeeded_one_failed(ref_db, ref_conn):
    for _ in range(3):
        add_stack(ref_conn, locations=2)
    cli_purge = run_cli("purge", "--dsn", ref_db)
    assert cli_purge.returncode == 0, cli_purge.stderr
    add_stack(ref_conn)
    ref_conn.execute("""
        CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'contacts are kept by policy'; END $$;
        CREATE TRIGGER keep_contacts BEFORE DELETE ON contacts FOR EACH ROW EXECUTE FUNCTION refuse_delete();
    """)
    assert run_cli("purge", "--dsn", ref_db).returncode == 1
    (finished,) = ref_conn.execute(
        "SELECT extract(epoch FROM finished_at)::float8 FROM adhoc_gc.runs WHERE status = 'succeeded'").fetchone()
    (started, took) = ref_conn.execute(
        "SELECT extract(epoch FROM started_at)::float8, extract(epoch FROM finished_at - started_at)::float8 "
        "FROM adhoc_gc.runs WHERE status = 'failed'").fetchone()

    m = metrics(ref_db)

    assert m["adhoc_gc_candidates"] == {(): 1}
    assert m["adhoc_gc_last_run_status"][(("status", "failed"),)] == 1
    assert sum(m["adhoc_gc_last_run_status"].values()) == 1
    assert m["adhoc_gc_last_run_timestamp_seconds"] == {(): started}
    assert m["adhoc_gc_last_run_duration_seconds"] == {(): took}
    assert set(m["adhoc_gc_last_run_deleted"].values()) == {0}
    assert m["adhoc_gc_last_success_timestamp_seconds"] == {(): finished}
    assert m["adhoc_gc_runs_total"][(("status", "succeeded"),)] == 1
    assert m["adhoc_gc_runs_total"][(("status", "failed"),)] == 1
    assert m["adhoc_gc_customers_deleted_total"] == {(): 3}


def test_a_schema_name_with_a_space_a_backslash_and_unicode(app_db, tmp_path):
    schema = "GC Müll \\ ops"  # schema names may not hold a double quote (mapping.py refuses them)
    config = tmp_path / "adhoc-gc.toml"
    config.write_text(f"[database]\nschema = '{schema}'\n")  # a TOML literal string: the backslash as is
    cli("deploy", "--dsn", app_db, "--config", str(config))

    output = cli("metrics", "--dsn", app_db, "--config", str(config)).stdout

    assert 'schema="GC Müll \\\\ ops"' in output  # escaped as the text format says
    assert schema_label(app_db, "--config", str(config)) == {schema}
    assert metrics(app_db, "--config", str(config))["adhoc_gc_candidates"] == {(): 0}


def test_label_values_are_escaped_as_the_text_format_says():
    nasty = 'db "q" \\ x\ny'
    text = exposition([Family("adhoc_gc_candidates", "gauge", "help with \\ and\nnewline",
                              [({"schema": "s p", "database": nasty}, 2)])])
    assert escape_label_value(nasty) == 'db \\"q\\" \\\\ x\\ny'
    (family,) = text_string_to_metric_families(text)
    assert family.documentation == "help with \\ and\nnewline"
    assert family.samples[0].labels == {"schema": "s p", "database": nasty} and family.samples[0].value == 2


def test_not_deployed_or_unreachable_is_one_error_line(app_db):
    assert "run `adhoc-gc deploy` first" in cli("metrics", "--dsn", app_db, code=2).stderr
    cli("metrics", "--dsn", UNREACHABLE_DSN, code=1)


def test_every_metric_the_operators_guide_names_is_printed(ref_db):
    guide = (ROOT / "docs" / "operators.md").read_text()
    named = set(re.findall(r"\badhoc_gc_[a-z_]+\b", guide))
    assert {"adhoc_gc_last_success_timestamp_seconds", "adhoc_gc_last_run_status"} <= named
    printed = set(metrics(ref_db)) | {"adhoc_gc_last_run_timestamp_seconds", "adhoc_gc_last_run_duration_seconds",
                                       "adhoc_gc_last_run_deleted"}  # printed once there is a run
    assert named <= printed, named - printed


def test_an_analyst_with_select_on_the_customer_table_may_collect(ref_db, ref_conn, tmp_path):
    """What docs/operators.md asks of the role that collects: [roles] analyst, and SELECT on
    the customer table."""
    analyst = f"gc_analyst_{uuid.uuid4().hex[:8]}"
    ref_conn.execute(f'CREATE ROLE "{analyst}" LOGIN')
    try:
        config = tmp_path / "adhoc-gc.toml"
        config.write_text(f'[roles]\nanalyst = "{analyst}"\n')
        cli("deploy", "--dsn", ref_db, "--config", str(config))
        add_stack(ref_conn)
        as_analyst = make_conninfo(ref_db, user=analyst)
        assert "permission denied" in cli("metrics", "--dsn", as_analyst, "--config", str(config), code=1).stderr
        ref_conn.execute(f'GRANT SELECT ON public.customers TO "{analyst}"')
        m = metrics(as_analyst, "--config", str(config))
        assert m["adhoc_gc_candidates"] == {(): 1} and m["adhoc_gc_adhoc_customers"] == {(): 1}
    finally:
        ref_conn.execute(f'DROP OWNED BY "{analyst}" CASCADE')
        ref_conn.execute(f'DROP ROLE "{analyst}"')


def test_on_a_standby(primary_and_standby):
    _, standby = primary_and_standby
    m = metrics(standby)
    assert m["adhoc_gc_candidates"] == {(): 1} and m["adhoc_gc_adhoc_customers"] == {(): 1}


def test_an_adhoc_value_with_a_percent_sign(app_db, tmp_path):
    config = tmp_path / "adhoc-gc.toml"
    config.write_text('[customer]\nadhoc = "source"\nadhoc_values = ["email", "100% chat"]\n')
    cli("deploy", "--dsn", app_db, "--config", str(config))
    with psycopg.connect(app_db, autocommit=True) as conn:
        add_stack(conn)  # source 'email'
        add_stack(conn, adhoc=False)  # source 'manual'
        conn.execute("UPDATE customers SET source = '100% chat' WHERE source = 'manual'")
    m = metrics(app_db, "--config", str(config))
    assert m["adhoc_gc_adhoc_customers"] == {(): 2} and m["adhoc_gc_candidates"] == {(): 2}
