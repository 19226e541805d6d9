"""`adhoc-gc demo`: the whole job on its own throwaway server, which it removes afterwards."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from adhoc_gc.cli import build_parser
from helpers import LOG_LINE, run_cli


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


def check_the_tour(result, customers: int) -> None:
    """Every step of the tour ran and printed what it should, for `customers` generated ones."""
    assert result.returncode == 0, f"stdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr
    out = result.stdout

    # Every step ran, in order.
    steps = [line for line in out.splitlines() if line.startswith("== ")]
    assert steps[0] == "== starting a throwaway PostgreSQL server"
    assert steps[1] == f"== loading the reference schema with {customers} generated customers"
    assert any(s.startswith("== adhoc-gc deploy") for s in steps)
    assert steps[-1].startswith("== demo finished in ")

    # The plan: four in ten generated customers were created ad hoc.
    adhoc = customers * 4 // 10
    assert f"ad-hoc customers: {adhoc}" in out
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
    purge = re.search(r"^run (\d+) succeeded: (\d+) customers, (\d+) locations, (\d+) contacts deleted "
                      r"in (\d+) batches", out, re.M)
    assert purge, out
    run_id, deleted, locations, contacts, batches = purge.groups()
    assert int(deleted) == eligible
    assert int(batches) == -(-eligible // 100)  # --batch-size 100
    assert re.search(rf"^\s+{run_id}\s+\S+ \S+\s+succeeded\s+runner\s+{batches}\s+{deleted}\s+{locations}\s+"
                     rf"{contacts}\b", out, re.M), out

    # Its progress: log lines on stderr (not a terminal), the start and the end of the run,
    # with the same numbers; nothing else there.
    progress = result.stderr.splitlines()
    assert progress and all(LOG_LINE.match(line) for line in progress), result.stderr
    assert re.fullmatch(rf"\S+ adhoc-gc run {run_id} started", progress[0]), progress
    assert re.fullmatch(rf"\S+ adhoc-gc run {run_id} succeeded: {deleted} customers, {locations} locations, "
                        rf"{contacts} contacts deleted in {batches} batches \(\d+\.\ds\)", progress[-1]), progress

    # The plan after the purge: nothing eligible is left.
    after = out.split("== adhoc-gc plan   (after the purge)", 1)[1].split("== adhoc-gc report", 1)[0]
    assert f"ad-hoc customers: {adhoc - eligible}" in after
    assert re.search(r"eligible now:\s+0\b", after)
    held_by_activity = int(re.search(r"^\s+activity\s+(\d+)$", after, re.M).group(1))

    # The report closes the tour: its funnel, stage by stage, and what the purge deleted.
    report = out.split("== adhoc-gc report", 1)[1]
    funnel = re.search(
        r"^  ad-hoc customers +(\d+)\n"
        r"  inactive for 14 days +(\d+) +-(\d+) held by recent activity\n"
        r"  \.\.\. and free of blockers +(\d+) +-(\d+) held by a blocker\n"
        r"  eligible now \(no login in 6 months\) +(\d+) +-(\d+) held by a recent login$", report, re.M)
    assert funnel, report
    total, inactive, recent, free, blocked, now, logged_in = map(int, funnel.groups())
    assert total == adhoc - eligible and now == 0
    assert (inactive, free, now) == (total - recent, inactive - blocked, free - logged_in)
    assert recent == held_by_activity and blocked > 0 and logged_in > 0
    for period in ("last 7 days", "last 30 days"):
        assert re.search(rf"^  {period} +{deleted} +{locations} +{contacts} +1$", report, re.M), report


def test_demo_runs_the_whole_job_and_cleans_up(private_tmpdir):
    started = time.monotonic()
    result = run_cli("demo", "--customers", "300", env={"TMPDIR": private_tmpdir}, timeout=300)
    assert time.monotonic() - started < 60
    check_the_tour(result, 300)

    # No server left running, nothing left on disk.
    assert os.listdir(private_tmpdir) == [], os.listdir(private_tmpdir)
    assert processes_mentioning(private_tmpdir) == []


def test_demo_at_its_default_size_takes_under_a_minute(private_tmpdir):
    """What the README's first command runs: `adhoc-gc demo` with no options (issue 6:
    under a minute at the default size)."""
    default = build_parser().parse_args(["demo"]).customers
    assert default >= 1000  # the size a newcomer sees, not a test-sized one
    started = time.monotonic()
    result = run_cli("demo", env={"TMPDIR": private_tmpdir}, timeout=300)
    took = time.monotonic() - started
    check_the_tour(result, default)
    assert took < 60, f"adhoc-gc demo took {took:.1f}s at its default size ({default} customers)"
    assert os.listdir(private_tmpdir) == [] and processes_mentioning(private_tmpdir) == []


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


def test_without_server_binaries_the_demo_runs_on_pgserver_and_keep_stops_cleanly(private_tmpdir):
    """A machine without PostgreSQL's server binaries: `pip install '.[demo]'` brought
    pgserver, and the demo runs on it. The binaries are hidden from this process only."""
    import subprocess
    import sys

    import psycopg

    hide_the_binaries = (
        "import sys, adhoc_gc.throwaway as t\n"
        "def none(): raise t.ServerUnavailable('hidden by the test')\n"
        "t.find_bindir = none\n"
        "from adhoc_gc.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide_the_binaries, "demo", "--customers", "300", "--keep"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": private_tmpdir},
    )
    check_the_tour(result, 300)
    assert "Warning" not in result.stderr, result.stderr
    dsn = re.search(r'psql "([^"]+)"', result.stdout).group(1)
    stop = result.stdout.split("stop and remove it with:\n", 1)[1].strip().splitlines()[0].strip()
    try:
        with psycopg.connect(dsn) as conn:
            assert conn.info.server_version >= 160000  # pgserver's, not the machine's 15
            assert conn.execute("SELECT count(*) FROM adhoc_gc.runs").fetchone() == (1,)
    finally:
        stopped = subprocess.run(stop, shell=True, capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0 and stopped.stderr == "", stopped.stderr
    # Only pgserver's lock folder stays (platformdirs' runtime-<uid> when XDG_RUNTIME_DIR is
    # unset), shared by every pgserver server of this user.
    left = [name for name in os.listdir(private_tmpdir) if name != f"runtime-{os.getuid()}"]
    assert left == [], left
    assert processes_mentioning(private_tmpdir) == []


def test_a_terminated_demo_removes_its_server(private_tmpdir):
    """SIGTERM (a CI job cancelled, `kill`) while the demo loads its data: like Ctrl-C, it
    removes the server it started."""
    import signal
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "adhoc_gc", "demo", "--customers", "3000000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               text=True, env={**os.environ, "TMPDIR": private_tmpdir})
    try:
        deadline = time.monotonic() + 60
        while not processes_mentioning(private_tmpdir + "/adhoc-gc-pg") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_mentioning(private_tmpdir + "/adhoc-gc-pg"), "the demo's server did not start"
        time.sleep(2)  # into the data load
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, (stdout, stderr)
    assert stderr.strip().splitlines()[-1] == "adhoc-gc: error: terminated", stderr
    assert "Traceback" not in stderr
    assert processes_mentioning(private_tmpdir) == []
    assert os.listdir(private_tmpdir) == [], os.listdir(private_tmpdir)
