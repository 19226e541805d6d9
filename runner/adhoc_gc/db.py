"""Connections, and turning database errors into one line for the user."""

from __future__ import annotations

import psycopg

from .errors import ConfigError, DatabaseUnavailable

APPLICATION_NAME = "adhoc-gc"


def connect(dsn: str, autocommit: bool = False) -> psycopg.Connection:
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, application_name=APPLICATION_NAME)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to the database: {one_line(exc)}") from None
    except psycopg.ProgrammingError as exc:  # a malformed connection string
        raise ConfigError(f"invalid connection string: {one_line(exc)}") from None
    return conn


def one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
