"""Shared test helpers: schema loading, deploying a mapping, building customer stacks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass

import psycopg

from adhoc_gc.deploy import deploy
from adhoc_gc.mapping import Mapping, parse_mapping, parse_mapping_text
from adhoc_gc.purge import PurgeOptions, run_purge
from adhoc_gc.render import render_queries
from adhoc_gc.resources import sql_dir

DEFAULT_MAPPING = parse_mapping({}, source="built-in defaults")


def load_reference_schema(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute((sql_dir() / "reference" / "app_schema.sql").read_text())


def mapping_from_toml(text: str) -> Mapping:
    return parse_mapping_text(text, source="test mapping")


def deploy_mapping(dsn: str, mapping: Mapping = DEFAULT_MAPPING) -> dict:
    return deploy(dsn, mapping)


def purge(dsn: str, mapping: Mapping = DEFAULT_MAPPING, **options):
    """Run a purge through the runner's own loop; returns its PurgeProgress."""
    with psycopg.connect(dsn) as conn:
        return run_purge(conn, mapping, render_queries(mapping), PurgeOptions(**options))


@dataclass
class Stack:
    customer: int
    locations: list[int]
    contacts: list[int]


def add_stack(
    conn: psycopg.Connection,
    *,
    adhoc: bool = True,
    age: str = "30 days",
    locations: int = 1,
    contacts_per_location: int = 1,
    last_login_ago: str | None = None,
) -> Stack:
    """One customer stack in the reference schema, every row `age` old."""
    customer = conn.execute(
        "INSERT INTO customers (name, is_adhoc, source, created_at, updated_at) "
        "VALUES ('test', %s, %s, now() - %s::interval, now() - %s::interval) RETURNING id",
        (adhoc, "email" if adhoc else "manual", age, age),
    ).fetchone()[0]
    location_ids, contact_ids = [], []
    for _ in range(locations):
        location = conn.execute(
            "INSERT INTO locations (customer_id, name, created_at, updated_at) "
            "VALUES (%s, 'loc', now() - %s::interval, now() - %s::interval) RETURNING id",
            (customer, age, age),
        ).fetchone()[0]
        location_ids.append(location)
        for _ in range(contacts_per_location):
            contact_ids.append(conn.execute(
                "INSERT INTO contacts (location_id, email, last_login_at, created_at, updated_at) "
                "VALUES (%s, 'x@example.com', now() - %s::interval, now() - %s::interval, now() - %s::interval) "
                "RETURNING id",
                (location, last_login_ago, age, age),
            ).fetchone()[0])
    return Stack(customer, location_ids, contact_ids)


def exists(conn: psycopg.Connection, table: str, key: int) -> bool:
    return conn.execute(f'SELECT EXISTS (SELECT 1 FROM "{table}" WHERE id = %s)', (key,)).fetchone()[0]


def stack_exists(conn: psycopg.Connection, stack: Stack) -> bool:
    """True when every row of the stack exists; asserts it is never half there."""
    parts = [exists(conn, "customers", stack.customer)]
    parts += [exists(conn, "locations", key) for key in stack.locations]
    parts += [exists(conn, "contacts", key) for key in stack.contacts]
    assert all(parts) or not any(parts), f"stack {stack} is half deleted: {parts}"
    return all(parts)


def run_cli(*args: str, env: dict | None = None, cwd: str | None = None, timeout: float = 120):
    """Run the installed CLI as a user would: returns CompletedProcess (text)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "adhoc_gc", *args],
        capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL,
    )


# A purge's progress log line (not on a terminal), e.g. "2026-12-03T19:37:24+00:00 adhoc-gc run 1 started".
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\S+ adhoc-gc run \d+ ")


def assert_one_error_line(stderr: str) -> str:
    """The error is one line, the last; anything before it is a progress log line."""
    lines = stderr.splitlines()
    assert stderr.endswith("\n")
    errors = [line for line in lines if not LOG_LINE.match(line)]
    assert len(errors) == 1, f"expected one error line on stderr, got {len(errors)}: {stderr!r}"
    assert lines[-1] == errors[0] and errors[0].startswith("adhoc-gc: error: "), lines
    return errors[0]
