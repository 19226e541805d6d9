"""What a purge prints: a live line on a terminal, log lines elsewhere, nothing with --quiet."""

import json
import shlex
import subprocess
import sys

from helpers import add_stack, run_cli


def _stacks(conn, n):
    for _ in range(n):
        add_stack(conn)


def test_log_lines_when_not_on_a_terminal(ref_db, ref_conn):
    _stacks(ref_conn, 5)
    result = run_cli("purge", "--dsn", ref_db, "--batch-size", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "adhoc-gc run 1 started" in lines[0]
    assert "adhoc-gc run 1 succeeded: 5 customers" in lines[-1]
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    assert result.stdout.startswith("run 1 succeeded: 5 customers")


def test_json_log_lines_for_log_shippers(ref_db, ref_conn):
    _stacks(ref_conn, 3)
    result = run_cli("purge", "--dsn", ref_db, "--batch-size", "1", "--log-format", "json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.strip().splitlines()]
    assert records[0]["event"] == "run_started" and records[0]["run_id"] == 1
    assert records[-1]["event"] == "run_finished"
    assert records[-1]["customers_deleted"] == 3 and records[-1]["status"] == "succeeded"
    assert all({"ts", "level", "message"} <= set(r) for r in records)


def test_quiet_prints_nothing_on_success(ref_db, ref_conn):
    _stacks(ref_conn, 2)
    result = run_cli("purge", "--dsn", ref_db, "--quiet")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert ref_conn.execute("SELECT count(*) FROM customers").fetchone()[0] == 0


def test_a_live_line_on_a_terminal(ref_db, ref_conn):
    _stacks(ref_conn, 6)
    command = shlex.join([sys.executable, "-m", "adhoc_gc", "purge", "--dsn", ref_db, "--batch-size", "2"])
    # `script` gives the command a pseudo-terminal, as a person's shell would.
    result = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout
    frames = result.stdout.split("\r")
    assert any("stacks deleted" in f and "% of 6" in f and "ETA" in f for f in frames), result.stdout
    assert "\x1b[2K" in result.stdout  # each frame clears the line it rewrites
    assert "run 1 succeeded: 6 customers" in result.stdout


def test_a_refused_run_ends_in_a_json_record_and_a_json_result(ref_db, ref_conn, tmp_path):
    _stacks(ref_conn, 2)
    config = tmp_path / "adhoc-gc.toml"
    config.write_text("[guard]\nmax_customers_per_run = 1\n")
    assert run_cli("deploy", "--dsn", ref_db, "--config", str(config)).returncode == 0
    result = run_cli("purge", "--dsn", ref_db, "--config", str(config), "--log-format", "json", "--json")
    assert result.returncode == 3, result.stderr
    *records, error_line = result.stderr.strip().splitlines()
    assert error_line.startswith("adhoc-gc: error: purge refused (recorded as run 1)")
    (finished,) = [json.loads(line) for line in records]
    assert {k: finished[k] for k in ("event", "level", "status", "run_id", "customers_deleted")} == {
        "event": "run_finished", "level": "warning", "status": "refused", "run_id": 1, "customers_deleted": 0}
    assert finished["error"] == error_line.removeprefix("adhoc-gc: error: ")
    outcome = json.loads(result.stdout)
    assert (outcome["run_id"], outcome["status"], outcome["customers_deleted"]) == (1, "refused", 0)
    assert outcome["error"] == finished["error"]


def test_a_failed_run_ends_in_a_json_record_with_what_it_deleted(ref_db, ref_conn):
    _stacks(ref_conn, 3)
    # The third batch meets a trigger that fails: the run fails after two.
    ref_conn.execute("""
        CREATE FUNCTION fail_third() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF OLD.id = (SELECT max(id) FROM public.customers) THEN RAISE EXCEPTION 'the application says no'; END IF;
              RETURN OLD; END $$;
        CREATE TRIGGER fail_third BEFORE DELETE ON customers FOR EACH ROW EXECUTE FUNCTION fail_third();
    """)
    result = run_cli("purge", "--dsn", ref_db, "--batch-size", "1", "--log-format", "json", "--json")
    assert result.returncode == 1, result.stderr
    *records, error_line = result.stderr.strip().splitlines()
    finished = json.loads(records[-1])
    assert (finished["event"], finished["level"], finished["status"]) == ("run_finished", "error", "failed")
    assert finished["customers_deleted"] == 2 and "the application says no" in finished["error"]
    outcome = json.loads(result.stdout)
    assert (outcome["status"], outcome["customers_deleted"], outcome["batches"]) == ("failed", 2, 2)
    assert error_line.startswith("adhoc-gc: error: purge run 1 failed after 2 batches")
