"""Test fixtures: one real PostgreSQL per session, a template database per schema setup,
and a fresh database cloned from a template for every test (CREATE DATABASE ... TEMPLATE,
through pytest-postgresql's DatabaseJanitor).

The server is $ADHOC_GC_TEST_DSN when set (a superuser connection string), otherwise a
throwaway cluster started from the machine's PostgreSQL binaries (as root it runs as the
`postgres` system user: PostgreSQL refuses to run as root), or from pgserver's when the
machine has none.

In CI ($CI set, as .ci/run does) nothing may be skipped: a skipped test fails the session
(see pytest_sessionfinish below), so a missing pg_cron or chromium cannot pass unnoticed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import time
import uuid
from typing import Callable, Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql.janitor import DatabaseJanitor

from adhoc_gc.throwaway import ServerUnavailable, ThrowawayPostgres, _free_port, find_bindir, start_throwaway

from helpers import add_stack, deploy_mapping, load_reference_schema

TEST_DSN_ENV = "ADHOC_GC_TEST_DSN"
CI_ENV = "CI"

# pytester runs pytest inside a test (tests/unit/test_ci.py checks the hooks below with it).
pytest_plugins = ["pytester"]


# --- in CI, a skipped test fails the session --------------------------------------------------

_SKIPPED: list[tuple[str, str]] = []  # (test id, reason), in the order they were reported


def _in_ci() -> bool:
    return bool(os.environ.get(CI_ENV))


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # A skip is reported in the setup phase (skip marks, pytest.skip() in a fixture) or the
    # call phase (pytest.skip() in the test); an expected failure (xfail) is not a skip.
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append((report.nodeid, _skip_reason(report)))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:  # a whole module skipped (pytest.skip(allow_module_level=True))
        _SKIPPED.append((report.nodeid, _skip_reason(report)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _in_ci() and _SKIPPED and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not (_in_ci() and _SKIPPED):
        return
    count = f"{len(_SKIPPED)} test{' was' if len(_SKIPPED) == 1 else 's were'} skipped"
    terminalreporter.section(f"FAILED: {count} in CI", sep="=", red=True, bold=True)
    terminalreporter.line(f"${CI_ENV} is set, so no test may be skipped (CI installs everything the suite "
                          "needs); install what these need:", red=True)
    for nodeid, reason in _SKIPPED:
        terminalreporter.line(f"SKIPPED IN CI {nodeid}: {reason}", red=True)


class Server:
    def __init__(self, dsn: str):
        params = conninfo_to_dict(dsn)
        self.base = dsn
        self.host = params.get("host", "127.0.0.1")
        self.port = int(params.get("port", 5432))
        self.user = params.get("user", "postgres")
        self.password = params.get("password")

    def dsn(self, dbname: str = "postgres") -> str:
        return make_conninfo(self.base, dbname=dbname)

    def janitor(self, dbname: str, template: str | None = None, as_template: bool = False) -> DatabaseJanitor:
        return DatabaseJanitor(user=self.user, host=self.host, port=self.port, password=self.password,
                               dbname=dbname, template_dbname=template, as_template=as_template)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    external = os.environ.get(TEST_DSN_ENV)
    if external:
        yield Server(external)
        return
    cluster = start_throwaway()
    try:
        yield Server(cluster.dsn())
    finally:
        cluster.stop()


CRON_SETTINGS = {
    "shared_preload_libraries": "pg_cron",
    "cron.database_name": "postgres",
    "cron.host": "127.0.0.1",  # jobs connect over TCP; the server listens on 127.0.0.1 only
}


@pytest.fixture(scope="session")
def cron_server() -> Iterator[Server]:
    """A second server with pg_cron loaded (its tables in the `postgres` database), so jobs
    run in other databases through cron.schedule_in_database, as in most installations."""
    try:
        bindir = find_bindir()
    except ServerUnavailable as exc:
        pytest.fail(str(exc))
    if not (bindir.parent / "lib" / "pg_cron.so").exists():  # Debian's layout: <version>/bin, <version>/lib
        message = (f"pg_cron is not installed for the PostgreSQL in {bindir} "
                   "(Debian: apt-get install postgresql-15-cron)")
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: never skip there
        pytest.skip(message)
    cluster = ThrowawayPostgres(settings=CRON_SETTINGS, bindir=bindir).start()
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_cron")
        yield Server(cluster.dsn())
    finally:
        cluster.stop()


@pytest.fixture
def cron_db(cron_server: Server) -> Iterator[str]:
    """A database on the pg_cron server with the reference schema and adhoc-gc deployed."""
    janitor = cron_server.janitor(f"cron_{uuid.uuid4().hex[:12]}")
    janitor.init()
    dsn = cron_server.dsn(janitor.dbname)
    load_reference_schema(dsn)
    deploy_mapping(dsn)
    try:
        yield dsn
    finally:
        with psycopg.connect(cron_server.dsn(), autocommit=True) as conn:
            conn.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE database = %s", (janitor.dbname,))
        janitor.drop()


@pytest.fixture(scope="session")
def make_template(pg_server: Server) -> Iterator[Callable[[str, Callable[[str], None]], str]]:
    """make_template(name, setup) -> template database name; setup(dsn) runs once per session."""
    built: dict[str, DatabaseJanitor] = {}

    def make(name: str, setup: Callable[[str], None]) -> str:
        if name not in built:
            janitor = pg_server.janitor(f"tmpl_{name}_{uuid.uuid4().hex[:6]}")
            janitor.init()
            setup(pg_server.dsn(janitor.dbname))
            with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{janitor.dbname}" IS_TEMPLATE true')
            built[name] = janitor
        return built[name].dbname

    yield make
    for janitor in built.values():
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{janitor.dbname}" IS_TEMPLATE false')
        janitor.drop()


@pytest.fixture
def fresh_db(pg_server: Server) -> Iterator[Callable[[str | None], str]]:
    """fresh_db(template=None) -> DSN of a new database (a clone of template), dropped afterwards."""
    janitors: list[DatabaseJanitor] = []

    def clone(template: str | None = None) -> str:
        janitor = pg_server.janitor(f"test_{uuid.uuid4().hex[:12]}", template=template)
        janitor.init()
        janitors.append(janitor)
        return pg_server.dsn(janitor.dbname)

    yield clone
    for janitor in janitors:
        janitor.drop()


@pytest.fixture
def app_db(fresh_db, make_template) -> str:
    """The reference application schema, empty, without adhoc-gc."""
    return fresh_db(make_template("reference_app", load_reference_schema))


@pytest.fixture
def ref_db(fresh_db, make_template) -> str:
    """The reference application schema, empty, with adhoc-gc deployed (built-in defaults)."""

    def setup(dsn: str) -> None:
        load_reference_schema(dsn)
        deploy_mapping(dsn)

    return fresh_db(make_template("reference_deployed", setup))


@pytest.fixture
def ref_conn(ref_db) -> Iterator[psycopg.Connection]:
    with psycopg.connect(ref_db, autocommit=True) as conn:
        yield conn


@pytest.fixture
def primary_and_standby():
    """A primary with the reference schema, adhoc-gc deployed and one eligible stack, and a
    streaming standby of it (pg_basebackup on loopback): yields (primary_dsn, standby_dsn)."""
    primary = ThrowawayPostgres().start()
    standby_dir = primary.root / "standby"
    try:
        with psycopg.connect(primary.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
        dsn = primary.dsn("app")
        load_reference_schema(dsn)
        deploy_mapping(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            add_stack(conn)  # one eligible stack, so the standby has something to show
        backup = primary._run([primary.bindir / "pg_basebackup", "-D", standby_dir, "-R", "-X", "stream", "-c", "fast",
                               "-h", primary.host, "-p", primary.port, "-U", primary.superuser])
        assert backup.returncode == 0, backup.stderr
        port = _free_port()
        with open(standby_dir / "postgresql.auto.conf", "a") as conf:
            conf.write(f"port = '{port}'\nunix_socket_directories = '{primary.root}'\n")
        if primary.run_as:
            entry = pwd.getpwnam(primary.run_as)
            for path in [standby_dir, *standby_dir.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid)
        started = primary._run([primary.bindir / "pg_ctl", "-D", standby_dir, "-l", primary.root / "standby.log",
                                "-w", "start"])
        assert started.returncode == 0, (primary.root / "standby.log").read_text()
        standby_dsn = f"host={primary.host} port={port} user={primary.superuser} dbname=app"
        for _ in range(50):
            with psycopg.connect(standby_dsn, autocommit=True) as conn:
                if conn.execute("SELECT count(*) FROM customers").fetchone()[0] == 1:
                    break
            time.sleep(0.1)
        yield dsn, standby_dsn
    finally:
        if standby_dir.exists():
            primary._run([primary.bindir / "pg_ctl", "-D", standby_dir, "-m", "immediate", "-w", "stop"])
            shutil.rmtree(standby_dir, ignore_errors=True)
        primary.stop()
