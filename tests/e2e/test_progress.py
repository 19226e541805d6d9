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
