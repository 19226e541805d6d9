"""[[owned]] tables go with their stack (and into the archive); a foreign key that the
mapping does not account for stops deploy and every purge."""

import psycopg
import pytest

from adhoc_gc.errors import ConfigError
from helpers import (DEFAULT_MAPPING, add_stack, deploy_mapping, load_reference_schema, mapping_from_toml, purge,
                     run_cli, stack_exists)

OWNED_TABLES = """
    CREATE TABLE notes (id serial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers ON DELETE CASCADE,
                        body text);
    CREATE TABLE tags (id serial PRIMARY KEY, location_id bigint REFERENCES locations ON DELETE SET NULL, tag text);
    CREATE TABLE emails (id serial PRIMARY KEY, contact_id bigint NOT NULL REFERENCES contacts, address text);
    CREATE INDEX ON notes (customer_id); CREATE INDEX ON tags (location_id); CREATE INDEX ON emails (contact_id);
"""

OWNED_MAPPING = """
[[owned]]
table = "public.notes"
column = "customer_id"
references = "customer"
name = "notes"

[[owned]]
table = "public.tags"
column = "location_id"
references = "location"
name = "tags"

[[owned]]
table = "public.emails"
column = "contact_id"
references = "contact"
"""


@pytest.fixture
def owned_db(fresh_db, make_template):
    def setup(dsn):
        load_reference_schema(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(OWNED_TABLES)
        deploy_mapping(dsn, mapping_from_toml(OWNED_MAPPING))

    return fresh_db(make_template("owned", setup))


def _add_owned(conn, stack):
    conn.execute("INSERT INTO notes (customer_id, body) VALUES (%s, 'a'), (%s, 'b')", (stack.customer, stack.customer))
    for location in stack.locations:
        conn.execute("INSERT INTO tags (location_id, tag) VALUES (%s, 'vip')", (location,))
    for contact in stack.contacts:
        conn.execute("INSERT INTO emails (contact_id, address) VALUES (%s, 'x@example.com')", (contact,))


def test_owned_rows_are_deleted_and_archived_with_their_stack(owned_db):
    mapping = mapping_from_toml(OWNED_MAPPING)
    with psycopg.connect(owned_db, autocommit=True) as conn:
        gone = add_stack(conn, locations=2, contacts_per_location=2)
        kept = add_stack(conn, age="2 days")
        _add_owned(conn, gone)
        _add_owned(conn, kept)
        progress = purge(owned_db, mapping, batch_size=5)
        assert progress.customers == 1
        assert not stack_exists(conn, gone) and stack_exists(conn, kept)
        counts = conn.execute("SELECT (SELECT count(*) FROM notes), (SELECT count(*) FROM tags), "
                              "(SELECT count(*) FROM emails)").fetchone()
        assert counts == (2, 1, 1), "only the kept stack's owned rows remain"
        (owned,) = conn.execute("SELECT owned FROM adhoc_gc.purged").fetchone()
        assert sorted(owned) == ["emails.contact_id", "notes", "tags"]
        assert (len(owned["notes"]), len(owned["tags"]), len(owned["emails.contact_id"])) == (2, 2, 4)


def test_a_stack_whose_owned_row_the_application_holds_is_left_for_later(owned_db):
    mapping = mapping_from_toml(OWNED_MAPPING)
    with psycopg.connect(owned_db, autocommit=True) as conn:
        stack = add_stack(conn)
        _add_owned(conn, stack)
        with psycopg.connect(owned_db) as app:
            app.execute("SELECT 1 FROM emails FOR UPDATE")  # someone is editing an address
            assert purge(owned_db, mapping, batch_size=5).customers == 0
        assert stack_exists(conn, stack)
        assert purge(owned_db, mapping, batch_size=5).customers == 1


@pytest.mark.parametrize("on_delete", ["NO ACTION", "CASCADE", "SET NULL"])
def test_deploy_refuses_an_unmapped_foreign_key_and_names_the_fix(app_db, on_delete):
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE addresses (id serial PRIMARY KEY, "
                     f"location_id bigint REFERENCES locations ON DELETE {on_delete})")
    result = run_cli("deploy", "--dsn", app_db)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert '"addresses_location_id_fkey" on public.addresses (location_id)' in line
    assert f"ON DELETE {on_delete}" in line
    assert '[[owned]] table = "public.addresses", column = "location_id", references = "location"' in line
    with psycopg.connect(app_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'adhoc_gc'").fetchone()[0] == 0


def test_purge_refuses_while_an_unmapped_foreign_key_exists(ref_db, ref_conn):
    stack = add_stack(ref_conn)
    # Added after deploy: every purge audits again.
    ref_conn.execute("CREATE TABLE invoices (id serial PRIMARY KEY, "
                     "customer_id bigint REFERENCES customers ON DELETE CASCADE)")
    result = run_cli("purge", "--dsn", ref_db)
    assert result.returncode == 2, result.stderr
    assert "invoices_customer_id_fkey" in result.stderr and "refused" in result.stderr
    with pytest.raises(psycopg.errors.CheckViolation, match="invoices_customer_id_fkey"):
        ref_conn.execute("CALL adhoc_gc.purge()")
    assert stack_exists(ref_conn, stack)
    statuses = ref_conn.execute("SELECT status, error FROM adhoc_gc.runs ORDER BY id").fetchall()
    assert [s for s, _ in statuses] == ["refused", "refused"]
    assert all("invoices" in error for _, error in statuses)
    # Mapped as a blocker, it is accounted for.
    blocker = mapping_from_toml("""
        [[blockers]]
        table = "public.cases"
        column = "location_id"
        references = "location"
        name = "location_case"
        [[blockers]]
        table = "public.cases"
        column = "contact_id"
        references = "contact"
        name = "contact_case"
        [[blockers]]
        table = "public.devices"
        column = "location_id"
        references = "location"
        name = "location_device"
        [[blockers]]
        table = "public.invoices"
        column = "customer_id"
        references = "customer"
    """)
    deploy_mapping(ref_db, blocker)
    ref_conn.execute("INSERT INTO invoices (customer_id) VALUES (%s)", (stack.customer,))
    assert purge(ref_db, blocker, batch_size=5).customers == 0
    assert stack_exists(ref_conn, stack)


def test_composite_foreign_keys_are_reported_as_unmappable(app_db):
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE locations ADD UNIQUE (id, customer_id)")
        conn.execute("CREATE TABLE visits (location_id bigint, customer_id bigint, "
                     "FOREIGN KEY (location_id, customer_id) REFERENCES locations (id, customer_id))")
    with pytest.raises(ConfigError, match="composite key adhoc-gc cannot map"):
        deploy_mapping(app_db, DEFAULT_MAPPING)


def test_owned_and_blocker_cannot_be_the_same_column():
    with pytest.raises(ConfigError, match="blocker and as owned"):
        mapping_from_toml("""
            [[owned]]
            table = "public.cases"
            column = "location_id"
            references = "location"
        """)


def test_render_deletes_and_restores_the_owned_tables(tmp_path):
    config = tmp_path / "adhoc-gc.toml"
    config.write_text(OWNED_MAPPING)
    result = run_cli("render", "--objects-only", "--config", str(config))
    assert result.returncode == 0, result.stderr
    for table in ("notes", "tags", "emails"):
        assert f'DELETE FROM "public"."{table}" AS "o"' in result.stdout
        assert f"'\"public\".\"{table}\"'::regclass" in result.stdout
