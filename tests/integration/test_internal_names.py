"""Columns of the application's tables named like the package's own PL/pgSQL parameters,
variables and output columns (`p_after_key`, `v_from`, `done`, ...).

In a PL/pgSQL statement, an unqualified name that is both a variable and a column of a table
in scope is an error, or, under `#variable_conflict use_column`, silently the column. The
package qualifies every variable with its function's name, so such columns, mapped or not,
change nothing: the same stacks go, by the fast path and the careful one, by the runner and by
CALL, and explain and restore work.
"""

from __future__ import annotations

import re
import threading

import psycopg
import pytest

from adhoc_gc.resources import sql_dir
from helpers import add_stack, deploy_mapping, load_reference_schema, mapping_from_toml, purge, stack_exists

APPLICATION_TABLES = ("customers", "locations", "contacts", "cases", "devices", "notes")


def internal_names() -> list[str]:
    """Every parameter and variable name of the package's SQL (its p_ and v_ names) and the
    output columns of its table functions."""
    text = "\n".join(path.read_text() for path in sql_dir().rglob("*.sql"))
    names = set(re.findall(r"\b[pv]_[a-z0-9_]+\b", text))
    for columns in re.findall(r"RETURNS TABLE\s*\((.*?)\)\s*\n", text, re.S):
        names |= set(re.findall(r'"([a-z_]+)"\s+[a-z]', columns))
    return sorted(names)


MAPPING = mapping_from_toml("""
[[owned]]
table = "public.notes"
column = "customer_id"
references = "customer"
name = "notes"

[guard]
max_customers_per_run = 1000
""")


@pytest.fixture
def crowded_db(fresh_db, make_template) -> str:
    """The reference schema, every application table carrying a column for each internal name."""

    def setup(dsn: str) -> None:
        load_reference_schema(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                         "customer_id bigint NOT NULL REFERENCES customers (id), body text)")
            for table in APPLICATION_TABLES:
                columns = ", ".join(f'ADD COLUMN IF NOT EXISTS "{name}" text' for name in internal_names())
                conn.execute(f"ALTER TABLE {table} {columns}")
        deploy_mapping(dsn, MAPPING)

    return fresh_db(make_template("crowded_by_internal_names", setup))


def test_the_names_are_found():
    names = internal_names()
    assert {"p_after_key", "v_from", "p_archive", "p_batch_size", "v_key", "done", "examined"} <= set(names)


def test_columns_named_like_the_packages_variables_change_nothing(crowded_db):
    with psycopg.connect(crowded_db, autocommit=True) as conn:
        eligible = [add_stack(conn, locations=2), add_stack(conn), add_stack(conn, locations=0),
                    add_stack(conn, contacts_per_location=3)]
        conn.execute("INSERT INTO notes (customer_id, body) VALUES (%s, 'a note')", (eligible[0].customer,))
        with_case = add_stack(conn)
        conn.execute("INSERT INTO cases (location_id, subject) VALUES (%s, 'open')", (with_case.locations[0],))
        recent = add_stack(conn, age="3 days")
        logged_in = add_stack(conn, last_login_ago="1 month")
        manual = add_stack(conn, adhoc=False)
        held = [with_case, recent, logged_in, manual]

        candidates = {row[0] for row in conn.execute("SELECT customer_id FROM adhoc_gc.candidates")}
        assert candidates == {s.customer for s in eligible}
        verdicts = dict(conn.execute(
            "SELECT customer_id, eligible FROM adhoc_gc.eligibility").fetchall())
        assert {k for k, v in verdicts.items() if v} == candidates
        for stack in (eligible[0], with_case):
            rules = conn.execute("SELECT * FROM adhoc_gc.explain_customer(%s)", (str(stack.customer),)).fetchall()
            assert rules, stack

        # The fast path, one stack a batch so the keyset moves on every batch.
        progress = purge(crowded_db, MAPPING, batch_size=1)
        assert (progress.customers, progress.locations, progress.contacts) == (4, 4, 6)
        assert not any(stack_exists(conn, s) for s in eligible)
        assert all(stack_exists(conn, s) for s in held)
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (0,)

        # restore puts them back, notes included.
        restored = conn.execute("SELECT * FROM adhoc_gc.restore(%s, NULL)", (progress.run_id,)).fetchone()
        assert restored == (4, 4, 4, 6, 1)
        assert all(stack_exists(conn, s) for s in eligible)

        # The careful path: the application holds a contact of one stack.
        with psycopg.connect(crowded_db) as app:
            app.execute("SELECT 1 FROM contacts WHERE id = %s FOR SHARE", (eligible[3].contacts[1],))
            result: dict = {}
            thread = threading.Thread(target=lambda: result.update(progress=purge(crowded_db, MAPPING, batch_size=10)))
            thread.start()
            thread.join(timeout=60)
            app.rollback()
        assert not thread.is_alive() and "progress" in result
        assert result["progress"].customers == 3
        assert stack_exists(conn, eligible[3]) and not any(stack_exists(conn, s) for s in eligible[:3])

        # CALL, as pg_cron runs it, takes the last one.
        conn.execute("CALL adhoc_gc.purge(batch_size => 1)")
        assert not stack_exists(conn, eligible[3])
        assert all(stack_exists(conn, s) for s in held)
        statuses = conn.execute("SELECT status, customers_deleted FROM adhoc_gc.runs ORDER BY id").fetchall()
        assert statuses == [("succeeded", 4), ("succeeded", 3), ("succeeded", 1)]
