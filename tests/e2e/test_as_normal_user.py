"""The suite passes as a normal user too, not only as root (CI's user).

As root, this runs a part of the suite again as an unprivileged system user, from a copy of
the project that user owns, so the non-root way of starting PostgreSQL (initdb and pg_ctl
run directly, no runuser) is exercised as well.
"""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
USER = "adhoc_gc_tester"
SUBSET = [
    "tests/integration/test_purge_basics.py",
    "tests/integration/test_locking.py",
    "tests/integration/test_cron.py",
]


@pytest.mark.skipif(os.geteuid() != 0, reason="not root: this whole run already is the normal-user run")
def test_part_of_the_suite_passes_as_a_normal_user():
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                       check=True)
        entry = pwd.getpwnam(USER)
    # Not pytest's tmp_path: it lies under a folder only root may enter.
    base = Path(tempfile.mkdtemp(prefix="adhoc-gc-normal-user-"))
    copy = base / "project"
    for part in ("runner", "sql", "migrations", "tests", "pyproject.toml", "README.md"):
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, copy / part, ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
        else:
            shutil.copy2(source, copy / part)
    os.chmod(base, 0o755)
    for path in [copy, *copy.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(copy),
        "PYTHONPATH": str(copy / "runner"),  # import the copy, not the root-owned checkout
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if os.environ.get("CI"):
        env["CI"] = os.environ["CI"]
    result = subprocess.run(
        ["runuser", "-u", USER, "--", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-m", "not slow", *SUBSET],
        cwd=copy, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    shutil.rmtree(base, ignore_errors=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and " skipped" not in result.stdout, result.stdout[-500:]
