"""The built wheel works on its own: installed into a clean virtualenv (no system site
packages, no checkout on the path), run from a folder outside the checkout, it renders and
deploys from the SQL and migrations it carries.

Needs the network (the build backend and the dependencies come from PyPI). About 12 s
with or without pip's cache, so not marked slow.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import venv
from pathlib import Path

import psycopg
import pytest

from helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]


def _clean_env() -> dict[str, str]:
    """The caller's environment without anything that would point back into the checkout."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("ADHOC_GC_", "PYTHON", "PG")) and k not in ("VIRTUAL_ENV", "PIP_TARGET", "PIP_PREFIX")
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(args: list, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=_clean_env(), capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=timeout)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """Build the wheel, install it into a fresh venv; returns the paths."""
    work = tmp_path_factory.mktemp("wheel")
    if importlib.util.find_spec("build") is None:  # listed in the [test] extra
        subprocess.run([sys.executable, "-m", "pip", "install", "build"], check=True, capture_output=True)

    dist = work / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT], cwd=work)
    wheels = list(dist.glob("adhoc_gc-*.whl"))
    assert len(wheels) == 1, wheels

    env_dir = work / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / "bin"
    _run([bin_dir / "python", "-m", "pip", "install", "--quiet", wheels[0]], cwd=work)

    outside = work / "outside"  # a folder that is not the checkout, with no adhoc-gc.toml
    outside.mkdir()
    return {"venv": env_dir, "bin": bin_dir, "wheel": wheels[0], "outside": outside}


def test_the_wheel_carries_the_sql_and_migrations(installed):
    import zipfile

    names = zipfile.ZipFile(installed["wheel"]).namelist()
    packaged_sql = {n.split("adhoc_gc/", 1)[1] for n in names if n.startswith("adhoc_gc/sql/")}
    checkout_sql = {str(p.relative_to(ROOT)) for p in (ROOT / "sql").rglob("*.sql")}
    assert packaged_sql == checkout_sql
    assert any(n.startswith("adhoc_gc/migrations/") and n.endswith(".sql") for n in names)
    assert "adhoc_gc/cli.py" in names
    assert not any(n.startswith(("tests/", "runner/")) for n in names)


def test_the_installed_package_is_the_venvs_own(installed):
    probe = _run([installed["bin"] / "python", "-c",
                  "import adhoc_gc, adhoc_gc.resources as r; print(adhoc_gc.__file__); print(r.sql_dir())"],
                 cwd=installed["outside"])
    module_file, sql_dir = probe.stdout.splitlines()
    assert Path(module_file).is_relative_to(installed["venv"]), module_file
    assert Path(sql_dir).is_relative_to(installed["venv"]), sql_dir
    # A clean venv: the test runner's own packages are not visible in it.
    pytest_check = subprocess.run([installed["bin"] / "python", "-c", "import pytest"], capture_output=True,
                                  cwd=installed["outside"], env=_clean_env())
    assert pytest_check.returncode != 0


def test_installed_render_outside_the_checkout(installed):
    result = _run([installed["bin"] / "adhoc-gc", "render"], cwd=installed["outside"])
    assert 'CREATE OR REPLACE VIEW "adhoc_gc"."candidates"' in result.stdout
    assert result.stderr == ""
    # The same SQL as the checkout renders.
    assert result.stdout == run_cli("render", cwd=str(installed["outside"])).stdout


def test_installed_deploy_outside_the_checkout(installed, app_db):
    result = _run([installed["bin"] / "adhoc-gc", "deploy", "--dsn", app_db], cwd=installed["outside"])
    assert "migrations applied: adhoc_gc_0001_runs_and_purged" in result.stdout
    with psycopg.connect(app_db) as conn:
        assert conn.execute("SELECT count(*) FROM adhoc_gc.candidates").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM adhoc_gc.runs").fetchone()[0] == 0
    plan = _run([installed["bin"] / "adhoc-gc", "plan", "--dsn", app_db], cwd=installed["outside"])
    assert "ad-hoc customers: 0" in plan.stdout
