"""Property: the candidates view, the eligibility view, a pure-Python statement of the rules
and what a purge really deletes all agree, on random small sets of stacks.

One database for all examples (emptied between them), so the property stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import psycopg
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpers import purge

INACTIVITY = timedelta(days=14)

# Ages straddle 14 days, each far enough from it that the seconds a test takes never matter.
AGES = {
    "1 hour": timedelta(hours=1),
    "13 days 23 hours": timedelta(days=13, hours=23),
    "14 days - 5 minutes": timedelta(days=14, minutes=-5),
    "14 days + 5 minutes": timedelta(days=14, minutes=5),
    "14 days 1 hour": timedelta(days=14, hours=1),
    "400 days": timedelta(days=400),
}
# Logins straddle 6 months; True means within the window (holds the stack).
LOGINS = {
    None: False,
    "1 day": True,
    "6 months - 1 day": True,
    "6 months + 1 day": False,
    "2 years": False,
}


@dataclass
class Contact:
    created: str
    updated: str
    login: str | None
    case: bool


@dataclass
class Location:
    created: str
    updated: str
    case: bool
    device: bool
    contacts: list[Contact] = field(default_factory=list)


@dataclass
class Customer:
    adhoc: bool
    created: str
    updated: str
    locations: list[Location] = field(default_factory=list)


ages = st.sampled_from(sorted(AGES))
# Most parts are old, so that a fair share of stacks is eligible.
old_biased_ages = st.one_of(st.sampled_from(["14 days + 5 minutes", "14 days 1 hour", "400 days"]), ages)
rare = st.sampled_from([False, False, False, True])

contacts = st.builds(Contact, created=old_biased_ages, updated=old_biased_ages,
                     login=st.sampled_from(list(LOGINS)), case=rare)
locations = st.builds(Location, created=old_biased_ages, updated=old_biased_ages, case=rare, device=rare,
                      contacts=st.lists(contacts, max_size=2))
customers = st.builds(Customer, adhoc=st.sampled_from([True, True, True, False]),
                      created=old_biased_ages, updated=old_biased_ages,
                      locations=st.lists(locations, max_size=3))


def reference_reasons(customer: Customer) -> list[str]:
    """The contract, stated in Python: what holds an ad-hoc customer's stack, in the order
    the eligibility view lists it (time rules, then blockers in mapping order)."""
    rows = [(customer.created, customer.updated)]
    rows += [(l.created, l.updated) for l in customer.locations]
    rows += [(c.created, c.updated) for l in customer.locations for c in l.contacts]
    youngest = min(AGES[age] for row in rows for age in row)  # the latest activity
    contacts = [c for l in customer.locations for c in l.contacts]
    held = {
        "activity": youngest < INACTIVITY,
        "login": any(LOGINS[c.login] for c in contacts),
        "location_case": any(l.case for l in customer.locations),
        "contact_case": any(c.case for c in contacts),
        "location_device": any(l.device for l in customer.locations),
    }
    return [reason for reason, holds in held.items() if holds]


def reference_eligible(customer: Customer) -> bool:
    return customer.adhoc and not reference_reasons(customer)


@dataclass
class Built:
    customer: int
    locations: list[int]
    contacts: list[int]


def build(conn: psycopg.Connection, customer: Customer) -> Built:
    key = conn.execute(
        "INSERT INTO customers (name, is_adhoc, created_at, updated_at) "
        "VALUES ('p', %s, now() - %s::interval, now() - %s::interval) RETURNING id",
        (customer.adhoc, customer.created, customer.updated)).fetchone()[0]
    built = Built(key, [], [])
    for location in customer.locations:
        lkey = conn.execute(
            "INSERT INTO locations (customer_id, name, created_at, updated_at) "
            "VALUES (%s, 'l', now() - %s::interval, now() - %s::interval) RETURNING id",
            (key, location.created, location.updated)).fetchone()[0]
        built.locations.append(lkey)
        if location.case:
            conn.execute("INSERT INTO cases (location_id) VALUES (%s)", (lkey,))
        if location.device:
            conn.execute("INSERT INTO devices (location_id) VALUES (%s)", (lkey,))
        for contact in location.contacts:
            ckey = conn.execute(
                "INSERT INTO contacts (location_id, last_login_at, created_at, updated_at) "
                "VALUES (%s, now() - %s::interval, now() - %s::interval, now() - %s::interval) RETURNING id",
                (lkey, contact.login, contact.created, contact.updated)).fetchone()[0]
            built.contacts.append(ckey)
            if contact.case:
                conn.execute("INSERT INTO cases (contact_id) VALUES (%s)", (ckey,))
    return built


def present(conn: psycopg.Connection, built: Built) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM customers WHERE id = %s), "
        "(SELECT count(*) FROM locations WHERE id = ANY (%s)), "
        "(SELECT count(*) FROM contacts WHERE id = ANY (%s))",
        (built.customer, built.locations, built.contacts)).fetchone()
    whole = (True, len(built.locations), len(built.contacts))
    gone = (False, 0, 0)
    assert row in (whole, gone), f"stack {built} is half deleted: {row}"
    return row == whole


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stacks=st.lists(customers, max_size=8), batch_size=st.integers(min_value=1, max_value=3))
def test_views_reference_and_purge_agree(ref_db, stacks, batch_size):
    with psycopg.connect(ref_db, autocommit=True) as conn:
        conn.execute("TRUNCATE cases, devices, contacts, locations, customers, "
                     "adhoc_gc.purged, adhoc_gc.runs RESTART IDENTITY")
        built = [build(conn, customer) for customer in stacks]
        expected = {b.customer for b, c in zip(built, stacks) if reference_eligible(c)}

        now = conn.execute("SELECT now()").fetchone()[0]
        candidates = {r[0] for r in conn.execute("SELECT customer_id FROM adhoc_gc.candidates")}
        verdicts = {r[0]: r[1:] for r in conn.execute(
            "SELECT customer_id, eligible, eligible_at, blocked_by FROM adhoc_gc.eligibility")}
        eligible = {k for k, (ok, _, _) in verdicts.items() if ok}
        assert set(verdicts) == {b.customer for b, c in zip(built, stacks) if c.adhoc}
        for b, c in zip(built, stacks):
            if not c.adhoc:
                continue
            ok, eligible_at, blocked_by = verdicts[b.customer]
            assert blocked_by == reference_reasons(c), c
            assert ok == (blocked_by == [])
            if set(blocked_by) - {"activity", "login"}:
                assert eligible_at is None, (c, eligible_at)
            else:
                assert eligible_at is not None
                assert (eligible_at <= now) == ok
        event(f"eligible stacks: {min(len(expected), 3)}{'+' if len(expected) >= 3 else ''}")
        event(f"held ad-hoc stacks: {min(len(set(verdicts) - expected), 3)}")
        assert candidates == expected
        assert eligible == expected

        progress = purge(ref_db, batch_size=batch_size)
        deleted = {b.customer for b in built if not present(conn, b)}
        assert deleted == expected
        assert progress.customers == len(expected)
        assert progress.batches == -(-len(expected) // batch_size)
