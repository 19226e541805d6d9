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


def _python_the_user_can_run() -> str:
    """This interpreter when the test user may run it, else the system's python3."""
    for candidate in (sys.executable, getattr(sys, "_base_executable", None), "/usr/bin/python3"):
        if candidate and subprocess.run(["runuser", "-u", USER, "--", candidate, "-c", "import venv"],
                                        capture_output=True, stdin=subprocess.DEVNULL).returncode == 0:
            return candidate
    pytest.fail(f"no Python interpreter that {USER} may run (tried {sys.executable} and /usr/bin/python3)")


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
    # The user installs the project as any user would: a venv of its own (root's interpreter
    # may lie under a folder only root may enter, e.g. pyenv under /root), then pip.
    python = _python_the_user_can_run()
    env = {
        "PATH": f"{copy / 'venv' / 'bin'}:{os.environ['PATH']}",
        "HOME": str(copy),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    if os.environ.get("CI"):
        env["CI"] = os.environ["CI"]

    def as_user(*command, timeout):
        return subprocess.run(["runuser", "-u", USER, "--", *command], cwd=copy, env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    venv = as_user(python, "-m", "venv", str(copy / "venv"), timeout=120)
    assert venv.returncode == 0, venv.stderr[-2000:]
    install = as_user(str(copy / "venv" / "bin" / "pip"), "install", "-q", "-e", ".[test]", timeout=900)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    result = as_user(str(copy / "venv" / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                     "-m", "not slow", *SUBSET, timeout=600)
    shutil.rmtree(base, ignore_errors=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and " skipped" not in result.stdout, result.stdout[-500:]
