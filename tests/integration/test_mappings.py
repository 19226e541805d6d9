"""The package deployed against application schemas other than the reference one.

Every test builds its own schema in a fresh database, writes a mapping for it, deploys,
builds a few stacks, and checks the views and a real purge. Also: batching over many
batches, idempotent re-runs, keyset order with text and integer keys of every width, and
a run that never goes back below its keyset position.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import uuid
from typing import Any, Callable

import psycopg
import pytest

from adhoc_gc.purge import PurgeOptions, run_purge
from adhoc_gc.render import render_queries
from helpers import DEFAULT_MAPPING, add_stack, deploy_mapping, mapping_from_toml, purge, stack_exists


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclasses.dataclass
class GStack:
    customer: Any
    locations: list
    contacts: list


@dataclasses.dataclass
class Model:
    """An application schema of the customer/location/contact shape, every name configurable.

    Blockers live in one table (`tickets` by default) with a column per entity it can point
    at; `blocker_refs` says which of them the mapping declares.
    """

    conn: psycopg.Connection
    schema: str = "app"
    pkg: str = "adhoc_gc"
    key_type: str = "bigint"
    new_key: Callable[[], Any] = dataclasses.field(default_factory=lambda: itertools.count(1).__next__)
    customer: str = "customers"
    c_key: str = "id"
    adhoc: str = "is_adhoc"
    adhoc_type: str = "boolean"
    adhoc_values: list[str] | None = None
    c_act: list[str] = dataclasses.field(default_factory=lambda: ["created_at", "updated_at"])
    location: str = "locations"
    l_key: str = "id"
    l_cust: str = "customer_id"
    l_act: list[str] = dataclasses.field(default_factory=lambda: ["created_at"])
    contact: str = "contacts"
    ct_key: str = "id"
    ct_loc: str = "location_id"
    login: str | None = "last_login_at"
    ct_act: list[str] = dataclasses.field(default_factory=lambda: ["created_at"])
    time_type: str = "timestamptz"
    time_types: dict[str, str] = dataclasses.field(default_factory=dict)  # column -> type override
    blocker_table: str = "tickets"
    blocker_cols: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"customer": "customer_ref", "location": "location_ref", "contact": "contact_ref"})
    blocker_names: dict[str, str | None] = dataclasses.field(
        default_factory=lambda: {"location": "location_ticket", "contact": "contact_ticket"})
    login_rule: bool = True
    write_last_login: bool = True  # False leaves [contact].last_login out of the TOML
    extra_toml: str = ""

    def t(self, table: str) -> str:
        return f"{q(self.schema)}.{q(table)}"

    def ttype(self, column: str) -> str:
        return self.time_types.get(column, self.time_type)

    # -- schema and mapping ---------------------------------------------------------------

    def create(self) -> "Model":
        c = self.conn
        c.execute(f"CREATE SCHEMA IF NOT EXISTS {q(self.schema)}")
        cols = [f"{q(self.c_key)} {self.key_type} PRIMARY KEY", f"{q(self.adhoc)} {self.adhoc_type}"]
        cols += [f"{q(col)} {self.ttype(col)}" for col in self.c_act]
        c.execute(f"CREATE TABLE {self.t(self.customer)} ({', '.join(cols)})")
        cols = [f"{q(self.l_key)} {self.key_type} PRIMARY KEY",
                f"{q(self.l_cust)} {self.key_type} NOT NULL REFERENCES {self.t(self.customer)}"]
        cols += [f"{q(col)} {self.ttype(col)}" for col in self.l_act]
        c.execute(f"CREATE TABLE {self.t(self.location)} ({', '.join(cols)})")
        c.execute(f"CREATE INDEX ON {self.t(self.location)} ({q(self.l_cust)})")
        cols = [f"{q(self.ct_key)} {self.key_type} PRIMARY KEY",
                f"{q(self.ct_loc)} {self.key_type} NOT NULL REFERENCES {self.t(self.location)}"]
        if self.login:
            cols.append(f"{q(self.login)} {self.ttype(self.login)}")
        cols += [f"{q(col)} {self.ttype(col)}" for col in self.ct_act]
        c.execute(f"CREATE TABLE {self.t(self.contact)} ({', '.join(cols)})")
        c.execute(f"CREATE INDEX ON {self.t(self.contact)} ({q(self.ct_loc)})")
        bc = self.blocker_cols
        targets = {"customer": self.customer, "location": self.location, "contact": self.contact}
        # A foreign key only where the mapping declares the blocker: an undeclared one would
        # (rightly) fail the foreign-key audit.
        refs = {entity: f" REFERENCES {self.t(target)}" if entity in self.blocker_names else ""
                for entity, target in targets.items()}
        c.execute(f"CREATE TABLE {self.t(self.blocker_table)} ("
                  f"serial_no integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                  f"{q(bc['customer'])} {self.key_type}{refs['customer']}, "
                  f"{q(bc['location'])} {self.key_type}{refs['location']}, "
                  f"{q(bc['contact'])} {self.key_type}{refs['contact']})")
        return self

    def toml(self) -> str:
        def arr(values):
            return "[" + ", ".join(toml_str(v) for v in values) + "]"

        lines = [
            "[database]", f"schema = {toml_str(self.pkg)}",
            "[customer]", f"table = {toml_str(self.schema + '.' + self.customer)}",
            f"key = {toml_str(self.c_key)}", f"adhoc = {toml_str(self.adhoc)}", f"activity = {arr(self.c_act)}",
        ]
        if self.adhoc_values is not None:
            lines.append(f"adhoc_values = {arr(self.adhoc_values)}")
        lines += [
            "[location]", f"table = {toml_str(self.schema + '.' + self.location)}",
            f"key = {toml_str(self.l_key)}", f"customer = {toml_str(self.l_cust)}", f"activity = {arr(self.l_act)}",
            "[contact]", f"table = {toml_str(self.schema + '.' + self.contact)}",
            f"key = {toml_str(self.ct_key)}", f"location = {toml_str(self.ct_loc)}", f"activity = {arr(self.ct_act)}",
        ]
        if self.write_last_login:
            lines.append(f"last_login = {toml_str(self.login or '')}")
        lines += ["[policy]", f"login_rule = {'true' if self.login_rule else 'false'}"]
        lines.append(self.extra_toml)
        for entity, name in self.blocker_names.items():
            lines += ["[[blockers]]", f"table = {toml_str(self.schema + '.' + self.blocker_table)}",
                      f"column = {toml_str(self.blocker_cols[entity])}", f"references = {toml_str(entity)}"]
            if name is not None:
                lines.append(f"name = {toml_str(name)}")
        return "\n".join(lines) + "\n"

    def deploy(self, dsn: str):
        mapping = mapping_from_toml(self.toml())
        deploy_mapping(dsn, mapping)
        return mapping

    # -- data -----------------------------------------------------------------------------

    def _times(self, columns: list[str], ago: str | None) -> tuple[list[str], list[str], list]:
        if ago is None:
            return [], [], []
        return [q(col) for col in columns], ["now() - %s::interval" for _ in columns], [ago for _ in columns]

    def add_stack(self, *, key: Any = None, adhoc: Any = True, age: str | None = "30 days", locations: int = 1,
                  contacts: int = 1, login: str | None = None) -> GStack:
        c = self.conn
        key = self.new_key() if key is None else key
        names, values, params = self._times(self.c_act, age)
        c.execute(f"INSERT INTO {self.t(self.customer)} ({', '.join([q(self.c_key), q(self.adhoc), *names])}) "
                  f"VALUES ({', '.join(['%s', '%s', *values])})", [key, adhoc, *params])
        stack = GStack(key, [], [])
        for _ in range(locations):
            lkey = self.new_key()
            names, values, params = self._times(self.l_act, age)
            c.execute(f"INSERT INTO {self.t(self.location)} ({', '.join([q(self.l_key), q(self.l_cust), *names])}) "
                      f"VALUES ({', '.join(['%s', '%s', *values])})", [lkey, key, *params])
            stack.locations.append(lkey)
            for _ in range(contacts):
                ckey = self.new_key()
                names, values, params = self._times(self.ct_act, age)
                if self.login and login is not None:
                    names, values, params = [*names, q(self.login)], [*values, "now() - %s::interval"], [*params, login]
                c.execute(f"INSERT INTO {self.t(self.contact)} ({', '.join([q(self.ct_key), q(self.ct_loc), *names])}) "
                          f"VALUES ({', '.join(['%s', '%s', *values])})", [ckey, lkey, *params])
                stack.contacts.append(ckey)
        return stack

    def touch(self, entity: str, key: Any, column: str, ago: str) -> None:
        table, key_col = {"customer": (self.customer, self.c_key), "location": (self.location, self.l_key),
                          "contact": (self.contact, self.ct_key)}[entity]
        self.conn.execute(f"UPDATE {self.t(table)} SET {q(column)} = now() - %s::interval WHERE {q(key_col)} = %s",
                          (ago, key))

    def block(self, entity: str, key: Any) -> None:
        self.conn.execute(f"INSERT INTO {self.t(self.blocker_table)} ({q(self.blocker_cols[entity])}) VALUES (%s)",
                          (key,))

    # -- checks ---------------------------------------------------------------------------

    def _present(self, table: str, key_col: str, key: Any) -> bool:
        return self.conn.execute(f"SELECT EXISTS (SELECT 1 FROM {self.t(table)} WHERE {q(key_col)} = %s)",
                                 (key,)).fetchone()[0]

    def exists(self, stack: GStack) -> bool:
        parts = [self._present(self.customer, self.c_key, stack.customer)]
        parts += [self._present(self.location, self.l_key, k) for k in stack.locations]
        parts += [self._present(self.contact, self.ct_key, k) for k in stack.contacts]
        assert all(parts) or not any(parts), f"stack {stack} is half deleted: {parts}"
        return all(parts)

    def candidates(self) -> set:
        return {r[0] for r in self.conn.execute(f"SELECT customer_id FROM {q(self.pkg)}.candidates")}

    def eligibility(self) -> dict:
        cur = self.conn.execute(f"SELECT customer_id, eligible, eligible_at, last_activity_at, last_login_at, "
                                f"blocked_by, location_ids, contact_ids FROM {q(self.pkg)}.eligibility")
        names = [d.name for d in cur.description]
        return {row[0]: dict(zip(names, row)) for row in cur}

    def eligible(self) -> set:
        return {k for k, v in self.eligibility().items() if v["eligible"]}

    def run_row(self, run_id: int) -> tuple:
        return self.conn.execute(
            f"SELECT status, batches, customers_deleted, locations_deleted, contacts_deleted "
            f"FROM {q(self.pkg)}.runs WHERE id = %s", (run_id,)).fetchone()


def check_purge(model: Model, dsn: str, mapping, gone: list[GStack], kept: list[GStack], batch_size: int = 2):
    """Views list exactly `gone`; a purge deletes exactly them; a second purge deletes nothing."""
    assert all(model.exists(s) for s in gone + kept)
    expected = {s.customer for s in gone}
    assert model.candidates() == expected
    assert model.eligible() == expected
    progress = purge(dsn, mapping, batch_size=batch_size)
    assert progress.status == "succeeded"
    for s in gone:
        assert not model.exists(s), f"{s} should be deleted"
    for s in kept:
        assert model.exists(s), f"{s} should be kept"
    assert model.run_row(progress.run_id) == (
        "succeeded", math.ceil(len(gone) / batch_size), len(gone),
        sum(len(s.locations) for s in gone), sum(len(s.contacts) for s in gone))
    archived = {r[0] for r in model.conn.execute(
        f"SELECT customer_id FROM {q(model.pkg)}.purged WHERE run_id = %s", (progress.run_id,))}
    assert archived == {str(s.customer) for s in gone}
    again = purge(dsn, mapping, batch_size=batch_size)
    assert (again.customers, again.batches) == (0, 0)
    assert model.candidates() == set()
    return progress


@pytest.fixture
def db(fresh_db):
    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield dsn, conn


# --- (a) quoted mixed-case identifiers, non-public schemas ---------------------------------

def crm_model(conn) -> Model:
    return Model(
        conn, schema="CRM", pkg="Gc Ops",
        customer="Client", c_key="ClientID", adhoc="Ad Hoc", c_act=["Created At", "Last Change"],
        location="Site", l_key="SiteID", l_cust="ClientID", l_act=["Created At"],
        contact="Person", ct_key="PersonID", ct_loc="SiteID", login="Last Login", ct_act=["Created At"],
        time_types={"Last Change": "timestamp"},
        blocker_table="Ticket", blocker_cols={"customer": "Client Ref", "location": "SiteID", "contact": "Person's ID"},
        blocker_names={"customer": "client's ticket", "location": "Site Ticket", "contact": None},
    ).create()


def test_quoted_mixed_case_identifiers_and_non_public_schemas(db):
    dsn, conn = db
    m = crm_model(conn)
    # Decoys with the same names folded to lower case: the package must not touch them.
    conn.execute("CREATE TABLE public.client (clientid bigint PRIMARY KEY, \"Ad Hoc\" boolean)")
    conn.execute("INSERT INTO public.client VALUES (1, true), (2, true)")
    mapping = m.deploy(dsn)

    gone = [m.add_stack(locations=2, contacts=1, login="1 year"), m.add_stack(locations=0)]
    held_site = m.add_stack(locations=2)
    m.block("location", held_site.locations[1])
    held_person = m.add_stack(locations=1, contacts=2)
    m.block("contact", held_person.contacts[1])
    held_client = m.add_stack(locations=1)
    m.block("customer", held_client.customer)
    recent = m.add_stack(locations=1)
    m.touch("customer", recent.customer, "Last Change", "1 day")  # a timestamp without time zone
    logged_in = m.add_stack(locations=1, login="1 day")
    not_adhoc = m.add_stack(adhoc=False)
    unknown = m.add_stack(adhoc=None)

    verdicts = m.eligibility()
    assert set(verdicts) == {s.customer for s in gone + [held_site, held_person, held_client, recent, logged_in]}
    assert verdicts[held_site.customer]["blocked_by"] == ["Site Ticket"]
    assert verdicts[held_person.customer]["blocked_by"] == ["Ticket.Person's ID"]  # the default name
    assert verdicts[held_client.customer]["blocked_by"] == ["client's ticket"]
    assert verdicts[recent.customer]["blocked_by"] == ["activity"]
    assert verdicts[logged_in.customer]["blocked_by"] == ["login"]
    assert verdicts[gone[0].customer]["location_ids"] == gone[0].locations

    check_purge(m, dsn, mapping, gone, [held_site, held_person, held_client, recent, logged_in, not_adhoc, unknown])
    # Everything of the package lives in its own schema, nothing in the default one.
    assert conn.execute("SELECT to_regclass('\"Gc Ops\".runs') IS NOT NULL, "
                        "to_regnamespace('adhoc_gc') IS NULL").fetchone() == (True, True)
    assert conn.execute("SELECT count(*) FROM public.client").fetchone()[0] == 2


# --- (b) text keys, with keyset order under the column's collation -------------------------

TEXT_KEYS = ["a", "B", "b", "a b", "a-1", "a-10", "a-2", "Ä", "z", "Z", "0", "10", "9", "ü", "x'y",
             "back\\slash", "é", "A", "aa", "-", "~", "ß"]


def _has_collation(conn, name: str) -> bool:
    return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = %s)", (name,)).fetchone()[0]


@pytest.mark.parametrize("collation", ["C", "und-x-icu"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_text_keys_with_a_text_adhoc_column_and_keyset_order(db, collation, batch_size):
    dsn, conn = db
    if not _has_collation(conn, collation):  # ICU collations need a server built with ICU
        pytest.skip(f"collation {collation} not available")
    counter = itertools.count(1)
    m = Model(conn, key_type=f'text COLLATE "{collation}"', adhoc="origin", adhoc_type="text",
              adhoc_values=["web form", "import"], new_key=lambda: f"k{next(counter):03d}").create()
    mapping = m.deploy(dsn)

    gone, recent, not_adhoc = [], [], []
    for i, key in enumerate(TEXT_KEYS):
        if i % 4 == 3:
            recent.append(m.add_stack(key=key, adhoc="web form", age="1 day"))
        elif i % 4 == 2:
            not_adhoc.append(m.add_stack(key=key, adhoc=["manual", None][i % 8 // 4]))
        else:
            gone.append(m.add_stack(key=key, adhoc=["web form", "import"][i % 2], locations=i % 3, contacts=1))
    kept = recent + not_adhoc

    assert set(m.eligibility()) == {s.customer for s in gone + recent}
    check_purge(m, dsn, mapping, gone, kept, batch_size=batch_size)


# --- (c) integer keys of every width ---------------------------------------------------------

# The loader accepts int2, int4 and int8 keys (runner/adhoc_gc/catalog.py). The customer keys
# include negatives, numbers whose order as text differs (9 < 10 < 100), and the type's
# largest value, so a keyset position kept or compared as text would skip or repeat keys.
INT_MAX = {"smallint": 2**15 - 1, "integer": 2**31 - 1, "bigint": 2**63 - 1}


@pytest.mark.parametrize("key_type", ["smallint", "integer", "bigint"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_integer_keys(db, key_type, batch_size):
    dsn, conn = db
    top = INT_MAX[key_type]
    m = Model(conn, key_type=key_type, new_key=itertools.count(1000).__next__).create()
    mapping = m.deploy(dsn)
    assert conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = 'app.customers'::regclass AND attname = 'id'").fetchone()[0] == key_type

    keys = [-top - 1, -7, 2, 9, 10, 11, 99, 100, top - 1, top]
    gone = [m.add_stack(key=key, locations=i % 3, contacts=1 + i % 2, login="7 months")
            for i, key in enumerate(keys)]
    kept = [m.add_stack(key=-3, age="1 day"), m.add_stack(key=50, login="1 day"), m.add_stack(key=12, adhoc=False)]
    blocked = m.add_stack(key=top - 2, locations=2)
    m.block("location", blocked.locations[1])
    kept.append(blocked)

    verdicts = m.eligibility()
    assert all(type(k) is int for k in verdicts)
    assert verdicts[blocked.customer]["blocked_by"] == ["location_ticket"]
    assert verdicts[-3]["blocked_by"] == ["activity"] and verdicts[50]["blocked_by"] == ["login"]
    assert verdicts[top]["contact_ids"] == sorted(gone[-1].contacts)
    explained = conn.execute("SELECT customer_id, adhoc FROM adhoc_gc.explain_customer(%s)", (str(-top - 1),))
    assert explained.fetchall() == [(str(-top - 1), True)]

    progress = check_purge(m, dsn, mapping, gone, kept, batch_size=batch_size)
    # The keyset position ends at the largest key, in the key's own order.
    assert conn.execute("SELECT last_key FROM adhoc_gc.runs WHERE id = %s",
                        (progress.run_id,)).fetchone()[0] == str(top)
    # Each batch (one transaction, so one purged_at) took the next keys in numeric order.
    batches = [r[0] for r in conn.execute(
        "SELECT array_agg(customer_id::bigint ORDER BY customer_id::bigint) FROM adhoc_gc.purged "
        "WHERE run_id = %s GROUP BY purged_at ORDER BY purged_at", (progress.run_id,))]
    ordered = sorted(keys)
    assert batches == [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]

    # And the archive gives them back with their keys.
    conn.execute("SELECT * FROM adhoc_gc.restore(%s, NULL)", (progress.run_id,))
    assert all(m.exists(s) for s in gone + kept)
    assert m.candidates() == set(keys)


# --- (d) uuid keys -------------------------------------------------------------------------

def test_uuid_keys(db):
    dsn, conn = db
    m = Model(conn, key_type="uuid", new_key=uuid.uuid4).create()
    mapping = m.deploy(dsn)

    gone = [m.add_stack(locations=i % 3, contacts=2, login="7 months") for i in range(7)]
    kept = [m.add_stack(age="1 day"), m.add_stack(login="1 day")]
    blocked = m.add_stack(locations=2)
    m.block("contact", blocked.contacts[1])
    kept.append(blocked)

    verdicts = m.eligibility()
    assert verdicts[blocked.customer]["blocked_by"] == ["contact_ticket"]
    assert verdicts[gone[1].customer]["contact_ids"] == sorted(gone[1].contacts)
    check_purge(m, dsn, mapping, gone, kept, batch_size=3)


# --- (d) an enum ad-hoc column ---------------------------------------------------------------

def test_enum_adhoc_column(db):
    dsn, conn = db
    conn.execute("CREATE SCHEMA app")
    conn.execute("CREATE TYPE app.\"Origin\" AS ENUM ('manual', 'email', 'chat', 'api')")
    m = Model(conn, adhoc="source", adhoc_type='app."Origin"', adhoc_values=["email", "chat"]).create()
    mapping = m.deploy(dsn)

    gone = [m.add_stack(adhoc="email", locations=2), m.add_stack(adhoc="chat", locations=0)]
    kept = [m.add_stack(adhoc="manual", locations=2), m.add_stack(adhoc="api"), m.add_stack(adhoc=None),
            m.add_stack(adhoc="chat", age="13 days")]

    assert set(m.eligibility()) == {gone[0].customer, gone[1].customer, kept[-1].customer}
    check_purge(m, dsn, mapping, gone, kept)


def test_enum_adhoc_values_must_be_labels_of_the_enum(db):
    dsn, conn = db
    conn.execute("CREATE SCHEMA app")
    conn.execute("CREATE TYPE app.origin AS ENUM ('manual', 'email')")
    m = Model(conn, adhoc="source", adhoc_type="app.origin", adhoc_values=["email", "chat"]).create()
    with pytest.raises(Exception, match="chat"):
        m.deploy(dsn)


# --- (e) a blocker that references the customer ----------------------------------------------

def test_blocker_referencing_the_customer(db):
    dsn, conn = db
    m = Model(conn, blocker_names={"customer": "open_invoice", "location": "location_ticket"}).create()
    mapping = m.deploy(dsn)

    held = m.add_stack(locations=2)
    m.block("customer", held.customer)
    held_alone = m.add_stack(locations=0)
    m.block("customer", held_alone.customer)
    # contact_ref is not a declared blocker in this mapping (and so has no foreign key,
    # which the audit would refuse): it holds nothing.
    free = m.add_stack(locations=1)
    m.block("contact", free.contacts[0])

    verdicts = m.eligibility()
    assert verdicts[held.customer]["blocked_by"] == ["open_invoice"]
    assert verdicts[held.customer]["eligible_at"] is None
    assert verdicts[held_alone.customer]["blocked_by"] == ["open_invoice"]
    assert verdicts[free.customer]["blocked_by"] == []
    check_purge(m, dsn, mapping, [free], [held, held_alone])

    conn.execute("DELETE FROM app.tickets")
    assert m.candidates() == {held.customer, held_alone.customer}


# --- (f) no activity on locations/contacts, date-typed activity ------------------------------

def test_empty_location_and_contact_activity_with_date_columns(db):
    dsn, conn = db
    m = Model(conn, time_type="date", l_act=[], ct_act=[], c_act=["created_on", "changed_on"]).create()
    mapping = m.deploy(dsn)

    # date columns: a date d counts as midnight starting d (session time zone).
    edge_gone = m.add_stack(age=None, locations=2, contacts=1)
    conn.execute("UPDATE app.customers SET created_on = current_date - 30, changed_on = current_date - 14 "
                 "WHERE id = %s", (edge_gone.customer,))
    edge_kept = m.add_stack(age=None, locations=1, contacts=1)
    conn.execute("UPDATE app.customers SET created_on = current_date - 30, changed_on = current_date - 13 "
                 "WHERE id = %s", (edge_kept.customer,))
    one_null = m.add_stack(age=None, locations=1)
    conn.execute("UPDATE app.customers SET created_on = current_date - 20 WHERE id = %s", (one_null.customer,))
    all_null = m.add_stack(age=None, locations=1)
    # A date login column: 6 months + a day ago is out of the window, 6 months - a day is not.
    old_login = m.add_stack(age="30 days", locations=1, contacts=2, login="6 months 1 day")
    new_login = m.add_stack(age="30 days", locations=1, contacts=2, login="1 year")
    m.touch("contact", new_login.contacts[1], "last_login_at", "6 months - 1 day")

    verdicts = m.eligibility()
    today = conn.execute("SELECT current_date::timestamptz").fetchone()[0]
    assert verdicts[edge_gone.customer]["eligible_at"] == today
    assert verdicts[edge_kept.customer]["eligible_at"] == conn.execute(
        "SELECT (current_date + 1)::timestamptz").fetchone()[0]
    assert verdicts[edge_kept.customer]["blocked_by"] == ["activity"]
    assert verdicts[all_null.customer]["blocked_by"] == ["activity"]
    assert verdicts[all_null.customer]["eligible_at"] is None
    assert verdicts[new_login.customer]["blocked_by"] == ["login"]
    assert verdicts[new_login.customer]["last_login_at"] == conn.execute(
        "SELECT (now() - interval '6 months - 1 day')::date::timestamptz").fetchone()[0]
    check_purge(m, dsn, mapping, [edge_gone, one_null, old_login], [edge_kept, all_null, new_login])


# --- (g) no last-login column at all, login rule off -----------------------------------------

@pytest.mark.parametrize("spelling", ["empty string", "left out"])
def test_contacts_without_a_login_column(db, spelling):
    dsn, conn = db
    m = Model(conn, login=None, login_rule=False, write_last_login=spelling == "empty string").create()
    mapping = m.deploy(dsn)
    assert mapping.contact.last_login is None

    gone = [m.add_stack(locations=2, contacts=2), m.add_stack(locations=0)]
    kept = [m.add_stack(age="13 days", locations=1, contacts=1)]
    recent_contact = m.add_stack(locations=2, contacts=1)
    m.touch("contact", recent_contact.contacts[1], "created_at", "1 hour")
    kept.append(recent_contact)

    verdicts = m.eligibility()
    assert all(v["last_login_at"] is None for v in verdicts.values())
    assert verdicts[recent_contact.customer]["blocked_by"] == ["activity"]
    check_purge(m, dsn, mapping, gone, kept)


# --- batching, limits and idempotence -------------------------------------------------------

def test_many_batches_exact_counts_and_a_second_run_deletes_nothing(ref_db, ref_conn):
    gone = [add_stack(ref_conn, locations=i % 3, contacts_per_location=(i % 2) + 1) for i in range(95)]
    # ineligible stacks interleaved in key order
    kept = []
    for i in range(12):
        kept.append(add_stack(ref_conn, age="1 day"))
        kept.append(add_stack(ref_conn, adhoc=False))
    blocked = add_stack(ref_conn, locations=2)
    ref_conn.execute("INSERT INTO cases (location_id) VALUES (%s)", (blocked.locations[1],))
    kept.append(blocked)

    assert ref_conn.execute("SELECT count(*) FROM adhoc_gc.candidates").fetchone()[0] == 95
    progress = purge(ref_db, batch_size=10)
    locations = sum(len(s.locations) for s in gone)
    contacts = sum(len(s.contacts) for s in gone)
    assert (progress.batches, progress.customers, progress.locations, progress.contacts) == (
        10, 95, locations, contacts)
    run = ref_conn.execute("SELECT status, batches, customers_deleted, locations_deleted, contacts_deleted, "
                           "last_key::bigint FROM adhoc_gc.runs WHERE id = %s", (progress.run_id,)).fetchone()
    assert run == ("succeeded", 10, 95, locations, contacts, max(s.customer for s in gone))
    assert ref_conn.execute("SELECT count(*) FROM adhoc_gc.purged WHERE run_id = %s",
                            (progress.run_id,)).fetchone()[0] == 95
    assert not any(stack_exists(ref_conn, s) for s in gone)
    assert all(stack_exists(ref_conn, s) for s in kept)

    again = purge(ref_db, batch_size=10)
    run = ref_conn.execute("SELECT status, batches, customers_deleted, locations_deleted, contacts_deleted "
                           "FROM adhoc_gc.runs WHERE id = %s", (again.run_id,)).fetchone()
    assert run == ("succeeded", 0, 0, 0, 0)
    assert all(stack_exists(ref_conn, s) for s in kept)


def test_max_batches_stops_and_the_next_run_continues(ref_db, ref_conn):
    stacks = [add_stack(ref_conn, locations=1) for _ in range(25)]
    first = purge(ref_db, batch_size=4, max_batches=3)
    assert (first.batches, first.customers) == (3, 12)
    # keyset order: the lowest keys went first
    assert [stack_exists(ref_conn, s) for s in stacks] == [False] * 12 + [True] * 13
    second = purge(ref_db, batch_size=4)
    assert (second.batches, second.customers) == (4, 13)
    assert not any(stack_exists(ref_conn, s) for s in stacks)


def test_purge_without_archive_deletes_the_same_and_archives_nothing(ref_db, ref_conn):
    stacks = [add_stack(ref_conn, locations=2, contacts_per_location=2) for _ in range(5)]
    progress = purge(ref_db, batch_size=2, archive=False)
    assert (progress.batches, progress.customers, progress.locations, progress.contacts) == (3, 5, 10, 20)
    assert not any(stack_exists(ref_conn, s) for s in stacks)
    assert ref_conn.execute("SELECT count(*) FROM adhoc_gc.purged").fetchone()[0] == 0


# --- keyset: a run continues from its last key, never rescans from the start ----------------

def _age_stack(conn, stack, age: str) -> None:
    """Make every row of a stack `age` old (committed: conn is autocommit)."""
    conn.execute("UPDATE customers SET created_at = now() - %s::interval, updated_at = now() - %s::interval "
                 "WHERE id = %s", (age, age, stack.customer))
    conn.execute("UPDATE locations SET created_at = now() - %s::interval, updated_at = now() - %s::interval "
                 "WHERE id = ANY (%s)", (age, age, stack.locations))
    conn.execute("UPDATE contacts SET created_at = now() - %s::interval, updated_at = now() - %s::interval "
                 "WHERE id = ANY (%s)", (age, age, stack.contacts))


def test_a_run_never_goes_back_to_a_key_below_its_position(ref_db, ref_conn):
    """Between the runner's batches, a stack below the run's position and one above it become
    eligible: the run deletes the one above and leaves the one below for the next run."""
    below = add_stack(ref_conn, age="1 day")  # the lowest key, not eligible when the run starts
    eligible = [add_stack(ref_conn) for _ in range(6)]  # three batches of 2
    above = add_stack(ref_conn, age="1 day")  # the highest key, not eligible when the run starts
    seen = []

    def between_batches(progress):
        seen.append((progress.batches, progress.customers))
        if progress.batches == 1:
            # Another session, committed while the run is between its first and second batch.
            assert [stack_exists(ref_conn, s) for s in eligible[:2]] == [False, False]
            _age_stack(ref_conn, below, "30 days")
            _age_stack(ref_conn, above, "30 days")
            assert ref_conn.execute("SELECT count(*) FROM adhoc_gc.candidates WHERE customer_id = ANY (%s)",
                                    ([below.customer, above.customer],)).fetchone()[0] == 2

    with psycopg.connect(ref_db) as conn:
        progress = run_purge(conn, DEFAULT_MAPPING, render_queries(DEFAULT_MAPPING), PurgeOptions(batch_size=2),
                             on_batch=between_batches)
    assert seen == [(1, 2), (2, 4), (3, 6), (4, 7)]  # the fourth batch took `above`, and no batch `below`
    assert (progress.status, progress.batches, progress.customers) == ("succeeded", 4, 7)
    assert not any(stack_exists(ref_conn, s) for s in eligible + [above])
    assert stack_exists(ref_conn, below)
    assert ref_conn.execute("SELECT last_key::bigint FROM adhoc_gc.runs WHERE id = %s",
                            (progress.run_id,)).fetchone()[0] == above.customer

    # The next run starts from the first key again and takes it.
    again = purge(ref_db, batch_size=2)
    assert (again.batches, again.customers) == (1, 1)
    assert not stack_exists(ref_conn, below)


def test_purge_batch_after_a_key_never_returns_to_lower_keys(ref_db, ref_conn):
    """The same through the SQL function, batch by batch: purge_batch(run, after_key, 2) only
    looks at keys after after_key; only a call from the start (NULL) finds the lower one."""
    stacks = [add_stack(ref_conn) for _ in range(5)]
    below = stacks.pop(0)
    _age_stack(ref_conn, below, "1 day")  # not eligible yet
    archived = "SELECT customer_id::bigint FROM adhoc_gc.purged WHERE run_id = %s ORDER BY 1"

    with psycopg.connect(ref_db) as conn:  # one transaction per call, as the runner does
        run_id = conn.execute("SELECT adhoc_gc._start_run('sql', 2, NULL, NULL, true)").fetchone()[0]
        conn.commit()

        def batch(after_key):
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            row = conn.execute("SELECT next_after_key, done, customers_deleted "
                               "FROM adhoc_gc.purge_batch(%s, %s, 2)", (run_id, after_key)).fetchone()
            conn.commit()
            return row

        first = batch(None)
        assert first == (str(stacks[1].customer), False, 2)
        _age_stack(ref_conn, below, "30 days")  # now eligible, below the position
        second = batch(first[0])
        assert second == (str(stacks[3].customer), False, 2)
        assert batch(second[0])[1] is True  # done: nothing after the position, `below` untouched
        assert stack_exists(ref_conn, below)
        assert [r[0] for r in ref_conn.execute(archived, (run_id,))] == [s.customer for s in stacks]

        # Only a scan from the start finds it (what a rescan would have done).
        assert batch(None) == (str(below.customer), False, 1)
        conn.execute("SELECT adhoc_gc._finish_run(%s, 'succeeded', NULL)", (run_id,))
        conn.commit()
    assert not stack_exists(ref_conn, below)
