"""`adhoc-gc demo`: the whole job on a throwaway local PostgreSQL, then clean up."""

from __future__ import annotations

import time

import psycopg

from .cli import main as cli_main
from .mapping import parse_mapping
from .render import render_template
from .resources import sql_dir
from .throwaway import start_throwaway

DEMO_DATABASE = "adhoc_gc_demo"


def load_reference_schema(dsn: str, customers: int) -> None:
    """The reference application schema plus `customers` generated customers."""
    mapping = parse_mapping({}, source="built-in defaults")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute((sql_dir() / "reference" / "app_schema.sql").read_text())
        # Only the integer count is rendered into it (a typed literal).
        conn.execute(render_template("reference/demo_data.sql", mapping, customers=int(customers)))


def run_demo(customers: int, keep: bool) -> int:
    started = time.monotonic()
    print("== starting a throwaway PostgreSQL server")
    server = start_throwaway()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
        dsn = server.dsn(DEMO_DATABASE)
        print(f"== loading the reference schema with {customers} generated customers")
        load_reference_schema(dsn, customers)
        steps = [
            ("adhoc-gc deploy", ["deploy"]),
            ("adhoc-gc plan", ["plan", "--sample", "5"]),
            ("adhoc-gc explain 8   (an ad-hoc customer whose location has a case)", ["explain", "8"]),
            ("adhoc-gc explain 7   (a chat customer: logged in when it chatted)", ["explain", "7"]),
            ("adhoc-gc purge --batch-size 100", ["purge", "--batch-size", "100"]),
            ("adhoc-gc runs", ["runs"]),
            ("adhoc-gc plan   (after the purge)", ["plan", "--sample", "0"]),
        ]
        for title, argv in steps:
            print(f"\n== {title}", flush=True)
            code = cli_main([*argv, "--dsn", dsn])
            if code != 0:
                print(f"demo step failed with exit code {code}")
                return code
        print(f"\n== demo finished in {time.monotonic() - started:.1f}s")
        if keep:
            print(f"the database keeps running; connect with:\n  psql \"{dsn}\"\n"
                  f"stop it with:\n  {server.stop_command()}")
            server.detach()
        return 0
    finally:
        if not keep:
            server.stop()
