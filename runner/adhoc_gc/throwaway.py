"""A throwaway local PostgreSQL server, for `adhoc-gc demo` and the test suite.

PostgreSQL refuses to run as root, so as root the server runs as a system user
(`postgres` where it exists, else one created for the purpose) through `runuser`.
Server binaries come from $ADHOC_GC_PG_BINDIR, else `pg_config --bindir`, else the
newest /usr/lib/postgresql/*/bin; without any, `start_throwaway()` falls back to the
`pgserver` package from PyPI (the `demo` extra), which handles root by itself.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from .errors import AdhocGcError

BINDIR_ENV = "ADHOC_GC_PG_BINDIR"
FALLBACK_SYSTEM_USER = "adhoc_gc_pg"


class ServerUnavailable(AdhocGcError):
    """No PostgreSQL server binaries could be found or started."""


def find_bindir() -> Path:
    candidates: list[Path] = []
    if os.environ.get(BINDIR_ENV):
        candidates.append(Path(os.environ[BINDIR_ENV]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True))
    for bindir in candidates:
        if _is_bindir(bindir):
            return bindir
    raise ServerUnavailable(
        "no PostgreSQL server binaries found: install PostgreSQL (e.g. apt-get install postgresql) "
        f"or pip install 'adhoc-gc[demo]', or set ${BINDIR_ENV}"
    )


def _is_bindir(bindir: Path) -> bool:
    return all((bindir / name).exists() for name in ("initdb", "pg_ctl", "postgres"))


def _version_key(path: Path) -> tuple[int, ...]:
    try:
        return (int(path.parent.name),)
    except ValueError:
        return (0,)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _system_user() -> str | None:
    """The user to run the server as, or None to run it as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_SYSTEM_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_SYSTEM_USER],
        check=True,
        capture_output=True,
    )
    return FALLBACK_SYSTEM_USER


class ThrowawayPostgres:
    """initdb + pg_ctl start in a temporary folder; stop() removes everything."""

    superuser = "postgres"

    def __init__(self, settings: dict[str, str] | None = None, bindir: Path | None = None):
        self.bindir = bindir or find_bindir()
        self.settings = dict(settings or {})
        self.run_as = _system_user()
        self.root = Path(tempfile.mkdtemp(prefix="adhoc-gc-pg-"))
        self.datadir = self.root / "data"
        self.port = _free_port()
        self.host = "127.0.0.1"
        self._started = False

    def _run(self, args: list[str]) -> subprocess.CompletedProcess:
        command = [str(a) for a in args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, cwd=self.root)

    def start(self) -> "ThrowawayPostgres":
        if self.run_as:
            # The server's user must be able to reach and own its folder.
            os.chmod(self.root, 0o755)
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        init = self._run([self.bindir / "initdb", "-D", self.datadir, "-U", self.superuser,
                          "--auth=trust", "--encoding=UTF8", "--no-sync"])
        if init.returncode != 0:
            raise ServerUnavailable(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "100",
            **self.settings,
        }
        with open(self.datadir / "postgresql.auto.conf", "a") as conf:
            for key, value in settings.items():
                conf.write(f"{key} = '{value}'\n")
        start = self._run([self.bindir / "pg_ctl", "-D", self.datadir, "-l", self.root / "server.log",
                           "-w", "-t", "60", "start"])
        if start.returncode != 0:
            log = (self.root / "server.log")
            detail = log.read_text()[-2000:] if log.exists() else start.stderr
            raise ServerUnavailable(f"PostgreSQL did not start: {detail.strip()}")
        self._started = True
        return self

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.superuser} dbname={dbname}"

    def stop_command(self) -> str:
        """The shell command that stops and removes this server (for `demo --keep`)."""
        prefix = f"runuser -u {self.run_as} -- " if self.run_as else ""
        pg_ctl, datadir, root = (shlex.quote(str(p)) for p in (self.bindir / "pg_ctl", self.datadir, self.root))
        return f"{prefix}{pg_ctl} -D {datadir} stop && rm -rf {root}"

    def detach(self) -> None:
        """Leave the server running: stop() will no longer touch it."""
        self._started = False
        self.root = None

    def stop(self) -> None:
        if self.root is None:
            return
        if self._started:
            self._run([self.bindir / "pg_ctl", "-D", self.datadir, "-m", "immediate", "-w", "stop"])
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "ThrowawayPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class PgserverPostgres:
    """The same interface on top of pgserver (PostgreSQL from PyPI)."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="adhoc-gc-pgserver-"))
        self._server = None

    def start(self) -> "PgserverPostgres":
        with warnings.catch_warnings():
            # platformdirs warns, on import, when XDG_RUNTIME_DIR is unset (root, cron, CI):
            # noise for the user, and pgserver falls back to a folder under /tmp by itself.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            import pgserver

            self._server = pgserver.get_server(self.root / "data", cleanup_mode="delete")
        return self

    def dsn(self, dbname: str = "postgres") -> str:
        return self._server.get_uri(dbname)

    def stop_command(self) -> str:
        """The shell command that stops and removes this server (for `demo --keep`)."""
        code = (
            "import pgserver, shutil; "
            f"pgserver.get_server({str(self.root / 'data')!r}, cleanup_mode='delete').cleanup(); "
            f"shutil.rmtree({str(self.root)!r}, ignore_errors=True)"
        )
        return f"{shlex.quote(sys.executable)} -W ignore -c {shlex.quote(code)}"

    def detach(self) -> None:
        """Leave the server running. pgserver stops a server when its last handle goes
        (a list of process ids kept in the data folder), so this process hands its handle
        back without stopping: the stop command's process is then the last one."""
        import atexit

        self._server.cleanup_mode = None
        self._server.cleanup()
        atexit.unregister(self._server._cleanup)
        self._server = None
        self.root = None

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def start_throwaway(settings: dict[str, str] | None = None):
    """A running throwaway server: the machine's PostgreSQL, else pgserver's."""
    try:
        bindir = find_bindir()
    except ServerUnavailable:
        if importlib.util.find_spec("pgserver") is None:
            raise ServerUnavailable(
                "no PostgreSQL server found: pip install 'adhoc-gc[demo]' (brings pgserver), "
                f"install PostgreSQL, or set ${BINDIR_ENV}"
            )
        return PgserverPostgres().start()
    return ThrowawayPostgres(settings=settings, bindir=bindir).start()
