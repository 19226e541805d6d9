"""`adhoc-gc demo`: a tour of the whole job on a throwaway local PostgreSQL.

Generated customers in the reference schema, then: deploy, plan, one stack per rule,
explain, purge (with its progress display), runs, plan again, report. The server is removed at the
end, or left running with --keep so a newcomer can query the views.
"""

from __future__ import annotations

import time

import psycopg

from .cli import main as cli_main
from .mapping import parse_mapping
from .render import render_queries, render_template
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


def _show_examples(dsn: str) -> str | None:
    """Print one stack per verdict; return the key of one held by a login, for explain."""
    queries = render_queries(parse_mapping({}, source="built-in defaults"))
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(queries["example_stacks"]).fetchall()
    print(f"{'verdict':<18} {'customer':>8}  eligible at")
    for reason, customer, eligible, eligible_at, _ in rows:
        when = "now" if eligible else (eligible_at.strftime("%Y-%m-%d") if eligible_at else "never, while held")
        print(f"{reason:<18} {customer:>8}  {when}")
    print("(customers created manually, by API or by import are not in the eligibility view at all)")
    return next((customer for reason, customer, *_ in rows if reason == "login"), None)


def run_demo(customers: int, keep: bool) -> int:
    started = time.monotonic()
    print("== starting a throwaway PostgreSQL server", flush=True)
    server = start_throwaway()
    kept = False  # a failed step still removes the server, even with --keep
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
        dsn = server.dsn(DEMO_DATABASE)
        print(f"== loading the reference schema with {customers} generated customers", flush=True)
        load_reference_schema(dsn, customers)

        def step(title: str, argv: list[str]) -> int:
            print(f"\n== {title}", flush=True)
            return cli_main([*argv, "--dsn", dsn])

        for title, argv in [("adhoc-gc deploy", ["deploy"]), ("adhoc-gc plan", ["plan", "--sample", "3"])]:
            if code := step(title, argv):
                return code
        print("\n== one ad-hoc stack for each verdict (SELECT ... FROM adhoc_gc.eligibility)", flush=True)
        login_held = _show_examples(dsn)
        steps = []
        if login_held:
            steps.append((f"adhoc-gc explain {login_held}   (a chat customer: it logged in when it chatted)",
                          ["explain", login_held]))
        steps += [
            ("adhoc-gc purge --batch-size 100", ["purge", "--batch-size", "100"]),
            ("adhoc-gc runs", ["runs", "--limit", "5"]),
            ("adhoc-gc plan   (after the purge)", ["plan", "--sample", "0"]),
            ("adhoc-gc report", ["report"]),
        ]
        for title, argv in steps:
            if code := step(title, argv):
                print(f"demo step failed with exit code {code}")
                return code
        print(f"\n== demo finished in {time.monotonic() - started:.1f}s")
        if keep:
            print("the database keeps running; query the views with:\n"
                  f"  psql \"{dsn}\" -c 'SELECT * FROM adhoc_gc.blocked_summary'\n"
                  f"stop and remove it with:\n  {server.stop_command()}")
            server.detach()
            kept = True
        return 0
    finally:
        if not kept:
            server.stop()
