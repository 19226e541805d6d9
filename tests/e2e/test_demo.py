"""`adhoc-gc demo`: the whole job on its own throwaway server, which it removes afterwards."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
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
    result = run_cli("demo", "--customers", "300", env={"TMPDIR": private_tmpdir}, timeout=300)

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
    assert "first 5 candidates:" in out

    # explain shows a customer held by a case and one held by its login.
    assert "customer 8: not eligible" in out and "[HOLD] no location_case" in out
    assert "customer 7: not eligible" in out and "[HOLD] no login within 6 months" in out

    # The purge deleted exactly what the plan called eligible, and runs lists it.
    purge = re.search(r"^run (\d+) succeeded: (\d+) customers, \d+ locations, \d+ contacts deleted", out, re.M)
    assert purge, out
    assert int(purge.group(2)) == eligible
    assert re.search(rf"^\s+{purge.group(1)}\s+\S+ \S+\s+succeeded\s+runner\b", out, re.M), out

    # The plan after the purge: nothing eligible is left.
    after = out.split("== adhoc-gc plan   (after the purge)", 1)[1]
    assert f"ad-hoc customers: {120 - eligible}" in after
    assert re.search(r"eligible now:\s+0\b", after)

    # No server left running, nothing left on disk.
    assert os.listdir(private_tmpdir) == [], os.listdir(private_tmpdir)
    assert processes_mentioning(private_tmpdir) == []
