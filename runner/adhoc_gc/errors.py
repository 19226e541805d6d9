"""Errors a user can cause or meet, each mapped to one documented exit code."""

# Exit codes (documented in README.md and docs/cli.md).
EXIT_OK = 0
EXIT_FAILURE = 1  # database or runtime failure
EXIT_USAGE = 2  # bad usage or configuration
EXIT_SKIPPED = 3  # the purge did not run: another one holds the lock, a standby, or a guard refused it
EXIT_DOCTOR_FOUND_PROBLEMS = 4  # `adhoc-gc doctor` found at least one problem (each printed with its fix)


class AdhocGcError(Exception):
    """An error reported to the user as one line, with an exit code. A purge that ended
    unsuccessfully also says how (`run_status`), as which run (`run_id`, None where none was
    recorded) and what it had done (`progress`), for `purge --json` and the log lines."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, run_status: str | None = None, run_id: int | None = None,
                 progress=None):
        super().__init__(message)
        self.run_status = run_status
        self.run_id = run_id
        self.progress = progress


class ConfigError(AdhocGcError):
    """The mapping file, a CLI argument or the mapping-vs-catalog check is wrong."""

    exit_code = EXIT_USAGE


class DatabaseUnavailable(AdhocGcError):
    """The database could not be reached."""

    exit_code = EXIT_FAILURE


class RunFailed(AdhocGcError):
    """A purge or deploy failed in the database."""

    exit_code = EXIT_FAILURE


class PurgeSkipped(AdhocGcError):
    """The purge did not run: another purge is running, or the server is a standby."""

    exit_code = EXIT_SKIPPED


class PurgeRefused(AdhocGcError):
    """A guard rail refused the run: too many candidates at once (--force passes)."""

    exit_code = EXIT_SKIPPED


class DoctorFoundProblems(AdhocGcError):
    """`adhoc-gc doctor` found problems; it printed each with its fix before this error line."""

    exit_code = EXIT_DOCTOR_FOUND_PROBLEMS


class Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager stopping the runner, `kill`): handled as Ctrl-C is, so a
    purge records its run `failed` and a demo removes its server, instead of dying
    mid-command. A KeyboardInterrupt so that psycopg cancels a running query for it too."""

    def __str__(self) -> str:
        return "terminated"
