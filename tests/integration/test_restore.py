"""Archive and restore: purge, restore, and the tables are exactly as before."""

import psycopg
import pytest

from helpers import (add_stack, assert_one_error_line, deploy_mapping, load_reference_schema, mapping_from_toml, purge,
                     run_cli)

TABLES = ("customers", "locations", "contacts", "notes", "tags")
MAPPING = """
[[owned]]
table = "public.notes"
column = "customer_id"
references = "customer"
name = "notes"

[[owned]]
table = "public.tags"
column = "contact_id"
references = "contact"
name = "tags"
"""


@pytest.fixture
def restore_db(fresh_db, make_template):
    def setup(dsn):
        load_reference_schema(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            # Awkward column types on purpose: json round trips must keep them exact.
            conn.execute("""
                ALTER TABLE customers ADD COLUMN score numeric(12, 4), ADD COLUMN flags text[],
                    ADD COLUMN photo bytea, ADD COLUMN ratio double precision, ADD COLUMN born date,
                    ADD COLUMN meta jsonb, ADD COLUMN name_upper text GENERATED ALWAYS AS (upper(name)) STORED;
                CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                    customer_id bigint NOT NULL REFERENCES customers, body text);
                CREATE TABLE tags (id serial PRIMARY KEY, contact_id bigint REFERENCES contacts, tag text);
            """)
        deploy_mapping(dsn, mapping_from_toml(MAPPING))

    return fresh_db(make_template("restore", setup))


def _snapshot(conn):
    return {table: conn.execute(f"SELECT to_jsonb(t) FROM {table} AS t ORDER BY to_jsonb(t)::text").fetchall()
            for table in TABLES}


def _populate(conn, n):
    stacks = []
    for i in range(n):
        stack = add_stack(conn, locations=1 + i % 3, contacts_per_location=1 + i % 2,
                          last_login_ago=None if i % 2 else "400 days")
        conn.execute("""UPDATE customers SET score = 12345.6789, flags = ARRAY['a', 'b"c', NULL],
                        photo = '\\xdeadbeef', ratio = 0.1 + 0.2, born = '1999-12-31',
                        meta = '{"k": [1, 2.50, "x"]}' WHERE id = %s""", (stack.customer,))
        conn.execute("INSERT INTO notes (customer_id, body) VALUES (%s, 'note ' || %s)", (stack.customer, i))
        for contact in stack.contacts:
            conn.execute("INSERT INTO tags (contact_id, tag) VALUES (%s, 'it''s')", (contact,))
        stacks.append(stack)
    return stacks


def test_purge_then_restore_gives_back_identical_tables(restore_db):
    mapping = mapping_from_toml(MAPPING)
    with psycopg.connect(restore_db, autocommit=True) as conn:
        _populate(conn, 12)
        add_stack(conn, age="1 day")  # stays throughout
        before = _snapshot(conn)
        progress = purge(restore_db, mapping, batch_size=5)
        assert progress.customers == 12
        assert _snapshot(conn) != before

        result = run_cli("restore", "--run", str(progress.run_id), "--dsn", restore_db,
                         env={"ADHOC_GC_CONFIG": _write_config(restore_db)})
        assert result.returncode == 0, result.stderr
        assert "restored 12 stacks" in result.stdout
        assert _snapshot(conn) == before
        assert conn.execute("SELECT count(*) FROM adhoc_gc.purged WHERE restored_at IS NULL").fetchone()[0] == 0

        again = run_cli("restore", "--run", str(progress.run_id), "--dsn", restore_db,
                        env={"ADHOC_GC_CONFIG": _write_config(restore_db)})
        assert again.returncode == 2 and "nothing to restore" in again.stderr


def test_restore_one_customer(restore_db):
    mapping = mapping_from_toml(MAPPING)
    with psycopg.connect(restore_db, autocommit=True) as conn:
        stacks = _populate(conn, 3)
        purge(restore_db, mapping, batch_size=5)
        conn.execute("SELECT * FROM adhoc_gc.restore(NULL, %s)", (str(stacks[1].customer),))
        present = [row[0] for row in conn.execute("SELECT id FROM customers ORDER BY id")]
        assert present == [stacks[1].customer]


def _rows_of(snapshot, stack):
    """The rows of one stack in a _snapshot: its customer, locations, contacts, notes and tags."""
    belongs = {
        "customers": lambda row: row["id"] == stack.customer,
        "locations": lambda row: row["id"] in stack.locations,
        "contacts": lambda row: row["id"] in stack.contacts,
        "notes": lambda row: row["customer_id"] == stack.customer,
        "tags": lambda row: row["contact_id"] in stack.contacts,
    }
    return {table: [row for row in rows if belongs[table](row[0])] for table, rows in snapshot.items()}


def test_restore_one_customer_through_the_cli(restore_db):
    """`adhoc-gc restore --customer KEY`: that stack's rows (owned rows included) are back as
    they were, exit 0; the other stacks stay purged."""
    mapping = mapping_from_toml(MAPPING)
    with psycopg.connect(restore_db, autocommit=True) as conn:
        stacks = _populate(conn, 3)
        before = _snapshot(conn)
        purge(restore_db, mapping, batch_size=5)
        chosen = stacks[1]
        result = run_cli("restore", "--customer", str(chosen.customer), "--dsn", restore_db,
                         env={"ADHOC_GC_CONFIG": _write_config(restore_db)})
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"restored 1 stacks: 1 customers, {len(chosen.locations)} locations, "
                                        f"{len(chosen.contacts)} contacts, {1 + len(chosen.contacts)} owned rows\n")
        assert _snapshot(conn) == _rows_of(before, chosen)
        assert all(_rows_of(before, chosen).values())  # the stack had rows in every table
        restored = conn.execute("SELECT customer_id FROM adhoc_gc.purged WHERE restored_at IS NOT NULL").fetchall()
        assert restored == [(str(chosen.customer),)]


def test_restore_of_a_customer_whose_key_is_taken_through_the_cli(restore_db):
    """`adhoc-gc restore --customer KEY` when the application reused the key: one error line,
    exit 1 (docs/operators.md), nothing restored."""
    mapping = mapping_from_toml(MAPPING)
    with psycopg.connect(restore_db, autocommit=True) as conn:
        stacks = _populate(conn, 2)
        purge(restore_db, mapping, batch_size=5)
        conn.execute("INSERT INTO customers (id, name) VALUES (%s, 'reused')", (stacks[0].customer,))
        before = _snapshot(conn)
        result = run_cli("restore", "--customer", str(stacks[0].customer), "--dsn", restore_db,
                         env={"ADHOC_GC_CONFIG": _write_config(restore_db)})
        assert result.returncode == 1, (result.returncode, result.stderr)
        assert "key is taken again" in assert_one_error_line(result.stderr)
        assert result.stdout == ""
        assert _snapshot(conn) == before
        assert conn.execute("SELECT count(*) FROM adhoc_gc.purged WHERE restored_at IS NOT NULL").fetchone()[0] == 0


def test_restore_refuses_when_a_key_is_taken_and_changes_nothing(restore_db):
    mapping = mapping_from_toml(MAPPING)
    with psycopg.connect(restore_db, autocommit=True) as conn:
        stacks = _populate(conn, 3)
        progress = purge(restore_db, mapping, batch_size=5)
        # The application reuses a key that the archive holds.
        conn.execute("INSERT INTO customers (id, name) VALUES (%s, 'reused')", (stacks[2].customer,))
        before = _snapshot(conn)
        with pytest.raises(psycopg.errors.UniqueViolation, match="key is taken again"):
            conn.execute("SELECT * FROM adhoc_gc.restore(%s, NULL)", (progress.run_id,))
        assert _snapshot(conn) == before
        result = run_cli("restore", "--run", str(progress.run_id), "--dsn", restore_db,
                         env={"ADHOC_GC_CONFIG": _write_config(restore_db)})
        assert result.returncode == 1 and "key is taken again" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_restore_needs_a_run_or_a_customer(restore_db):
    result = run_cli("restore", "--dsn", restore_db)
    assert result.returncode == 2 and "--run" in result.stderr


_CONFIGS: dict[str, str] = {}


def _write_config(dsn: str) -> str:
    import tempfile

    if dsn not in _CONFIGS:
        handle = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        handle.write(MAPPING)
        handle.close()
        _CONFIGS[dsn] = handle.name
    return _CONFIGS[dsn]
