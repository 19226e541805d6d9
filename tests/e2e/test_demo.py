"""`adhoc-gc demo`: the whole job on its own throwaway server, which it removes afterwards."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from helpers import run_cli


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


@pytest.fixture
def private_tmpdir():
    """A TMPDIR of the demo's own, so its server folder is told apart from any other
    throwaway server on the machine. World-traversable: as root the server runs as
    another user, which must reach its folder."""
    path = tempfile.mkdtemp(prefix="adhoc-gc-demo-test-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_demo_runs_the_whole_job_and_cleans_up(private_tmpdir):
    started = time.monotonic()
    result = run_cli("demo", "--customers", "300", env={"TMPDIR": private_tmpdir}, timeout=300)
    assert time.monotonic() - started < 60

    assert result.returncode == 0, f"stdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr
    out = result.stdout

    # Every step ran, in order.
    steps = [line for line in out.splitlines() if line.startswith("== ")]
    assert steps[0] == "== starting a throwaway PostgreSQL server"
    assert any(s.startswith("== adhoc-gc deploy") for s in steps)
    assert steps[-1].startswith("== demo finished in ")

    # The plan: 300 generated customers, four in ten created ad hoc.
    assert "ad-hoc customers: 120" in out
    eligible = int(re.search(r"eligible now:\s+(\d+)", out).group(1))
    assert eligible > 0
    assert "first 3 candidates:" in out

    # One stack per verdict, then explain on the one a login holds.
    examples = out.split("== one ad-hoc stack for each verdict", 1)[1].split("\n== ", 1)[0]
    for verdict in ("eligible now", "activity", "login", "location_case", "contact_case", "location_device"):
        assert re.search(rf"^{verdict}\s+\d+\s", examples, re.M), (verdict, examples)
    login_held = re.search(r"^login\s+(\d+)\s", examples, re.M).group(1)
    assert f"customer {login_held}: not eligible" in out and "[HOLD] no login within 6 months" in out

    # The purge deleted exactly what the plan called eligible, and runs lists it.
    purge = re.search(r"^run (\d+) succeeded: (\d+) customers, \d+ locations, \d+ contacts deleted", out, re.M)
    assert purge, out
    assert int(purge.group(2)) == eligible
    assert re.search(rf"^\s+{purge.group(1)}\s+\S+ \S+\s+succeeded\s+runner\b", out, re.M), out

    # The plan after the purge: nothing eligible is left; the report closes the tour.
    after = out.split("== adhoc-gc plan   (after the purge)", 1)[1].split("== adhoc-gc report", 1)[0]
    assert "== adhoc-gc report" in out
    assert f"ad-hoc customers: {120 - eligible}" in after
    assert re.search(r"eligible now:\s+0\b", after)

    # No server left running, nothing left on disk.
    assert os.listdir(private_tmpdir) == [], os.listdir(private_tmpdir)
    assert processes_mentioning(private_tmpdir) == []


def test_demo_keep_leaves_a_database_to_query(private_tmpdir):
    import subprocess

    import psycopg

    result = run_cli("demo", "--customers", "200", "--keep", env={"TMPDIR": private_tmpdir}, timeout=300)
    assert result.returncode == 0, result.stderr
    dsn = re.search(r'psql "([^"]+)"', result.stdout).group(1)
    stop = result.stdout.split("stop and remove it with:\n", 1)[1].strip().splitlines()[0].strip()
    try:
        with psycopg.connect(dsn) as conn:
            reasons = dict(conn.execute("SELECT reason, customers FROM adhoc_gc.blocked_summary").fetchall())
            assert reasons["login"] > 0 and "eligible now" not in reasons  # the tour purged them
    finally:
        subprocess.run(stop, shell=True, check=True, capture_output=True)
    assert os.listdir(private_tmpdir) == [] and processes_mentioning(private_tmpdir) == []
