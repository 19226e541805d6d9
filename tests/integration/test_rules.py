"""Every rule of the contract, on both sides of its boundary, on the reference schema.

Each test checks what the views say (candidates, eligibility) and what a purge really
does (stack_exists also asserts that no stack is ever half deleted).
"""

from __future__ import annotations

import psycopg
import pytest

from helpers import Stack, add_stack, deploy_mapping, mapping_from_toml, purge, stack_exists

# Far enough from the boundary that the few seconds between insert and check never matter.
JUST_INSIDE = "14 days - 1 minute"  # still active: kept
JUST_OUTSIDE = "14 days + 1 minute"  # inactive long enough: deleted


def candidate_ids(conn: psycopg.Connection) -> set[int]:
    return {row[0] for row in conn.execute("SELECT customer_id FROM adhoc_gc.candidates")}


def eligibility(conn: psycopg.Connection, customer: int) -> dict | None:
    cur = conn.execute(
        "SELECT eligible, eligible_at, last_activity_at, last_login_at, blocked_by, location_ids, contact_ids "
        "FROM adhoc_gc.eligibility WHERE customer_id = %s", (customer,))
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d.name for d in cur.description], row))


def assert_verdict(conn: psycopg.Connection, dsn: str, stack: Stack, *, deleted: bool, mapping=None,
                   blocked_by: list[str] | None = None) -> None:
    """Views and purge agree on one stack: candidate <=> eligible <=> deleted."""
    verdict = eligibility(conn, stack.customer)
    assert verdict is not None, "an ad-hoc customer always has an eligibility row"
    assert verdict["eligible"] is deleted, verdict
    assert (stack.customer in candidate_ids(conn)) is deleted
    if blocked_by is not None:
        assert verdict["blocked_by"] == blocked_by, verdict
    if deleted:
        assert verdict["blocked_by"] == []
        assert verdict["eligible_at"] is not None
    assert stack_exists(conn, stack)
    options = {"batch_size": 10}
    progress = purge(dsn, mapping, **options) if mapping is not None else purge(dsn, **options)
    assert progress.status == "succeeded"
    assert stack_exists(conn, stack) is not deleted
    assert progress.customers == (1 if deleted else 0)


def set_age(conn: psycopg.Connection, table: str, key: int, column: str, ago: str) -> None:
    conn.execute(f'UPDATE "{table}" SET "{column}" = now() - %s::interval WHERE id = %s', (ago, key))


# --- 1: created ad hoc ---------------------------------------------------------------

def test_non_adhoc_customer_is_never_touched(ref_conn, ref_db):
    kept = add_stack(ref_conn, adhoc=False, age="400 days", locations=2, contacts_per_location=2)
    gone = add_stack(ref_conn, adhoc=True, age="400 days", locations=2, contacts_per_location=2)

    assert eligibility(ref_conn, kept.customer) is None  # the view lists ad-hoc customers only
    assert candidate_ids(ref_conn) == {gone.customer}
    purge(ref_db, batch_size=10)
    assert stack_exists(ref_conn, kept)
    assert not stack_exists(ref_conn, gone)


# --- inactivity: customer row, a location row, a contact row --------------------------

@pytest.mark.parametrize("column", ["created_at", "updated_at"])
@pytest.mark.parametrize("ago, deleted", [(JUST_INSIDE, False), (JUST_OUTSIDE, True)])
def test_inactivity_of_the_customer_row(ref_conn, ref_db, column, ago, deleted):
    stack = add_stack(ref_conn, age="60 days", locations=1, contacts_per_location=1)
    other = "updated_at" if column == "created_at" else "created_at"
    set_age(ref_conn, "customers", stack.customer, other, "90 days")
    set_age(ref_conn, "customers", stack.customer, column, ago)

    assert_verdict(ref_conn, ref_db, stack, deleted=deleted, blocked_by=None if deleted else ["activity"])


@pytest.mark.parametrize("column", ["created_at", "updated_at"])
@pytest.mark.parametrize("ago, deleted", [(JUST_INSIDE, False), (JUST_OUTSIDE, True)])
def test_inactivity_of_a_location_row(ref_conn, ref_db, column, ago, deleted):
    stack = add_stack(ref_conn, age="60 days", locations=3, contacts_per_location=1)
    set_age(ref_conn, "locations", stack.locations[1], column, ago)  # the middle one

    assert_verdict(ref_conn, ref_db, stack, deleted=deleted, blocked_by=None if deleted else ["activity"])


@pytest.mark.parametrize("column", ["created_at", "updated_at"])
@pytest.mark.parametrize("ago, deleted", [(JUST_INSIDE, False), (JUST_OUTSIDE, True)])
def test_inactivity_of_a_contact_row(ref_conn, ref_db, column, ago, deleted):
    stack = add_stack(ref_conn, age="60 days", locations=2, contacts_per_location=2)
    set_age(ref_conn, "contacts", stack.contacts[3], column, ago)  # last contact of the second location

    assert_verdict(ref_conn, ref_db, stack, deleted=deleted, blocked_by=None if deleted else ["activity"])


def test_a_recent_row_keeps_the_stack_but_old_neighbours_do_not_matter(ref_conn, ref_db):
    young = add_stack(ref_conn, age="60 days", locations=2, contacts_per_location=1)
    set_age(ref_conn, "locations", young.locations[0], "updated_at", "1 hour")
    old = add_stack(ref_conn, age="60 days", locations=2, contacts_per_location=1)

    assert candidate_ids(ref_conn) == {old.customer}
    purge(ref_db, batch_size=1)
    assert stack_exists(ref_conn, young)
    assert not stack_exists(ref_conn, old)


# --- 5: login window -------------------------------------------------------------------

@pytest.mark.parametrize("login_ago, deleted", [
    ("6 months - 1 day", False),
    ("6 months + 1 day", True),
    ("1 hour", False),
    ("3 years", True),
    (None, True),
])
def test_login_window(ref_conn, ref_db, login_ago, deleted):
    stack = add_stack(ref_conn, age="60 days", locations=1, contacts_per_location=1, last_login_ago=login_ago)

    assert_verdict(ref_conn, ref_db, stack, deleted=deleted, blocked_by=None if deleted else ["login"])


def test_recent_login_of_one_contact_on_a_second_location_keeps_the_stack(ref_conn, ref_db):
    stack = add_stack(ref_conn, age="60 days", locations=2, contacts_per_location=2, last_login_ago="1 year")
    set_age(ref_conn, "contacts", stack.contacts[2], "last_login_at", "6 months - 1 day")
    verdict = eligibility(ref_conn, stack.customer)
    login = ref_conn.execute("SELECT last_login_at FROM contacts WHERE id = %s", (stack.contacts[2],)).fetchone()[0]
    assert verdict["last_login_at"] == login

    assert_verdict(ref_conn, ref_db, stack, deleted=False, blocked_by=["login"])


@pytest.fixture
def login_rule_off(ref_db):
    mapping = mapping_from_toml("[policy]\nlogin_rule = false\n")
    deploy_mapping(ref_db, mapping)
    return mapping


@pytest.mark.parametrize("login_ago", ["1 hour", "6 months - 1 day", None])
def test_login_rule_off_ignores_logins(ref_conn, ref_db, login_rule_off, login_ago):
    stack = add_stack(ref_conn, age="60 days", locations=2, contacts_per_location=1, last_login_ago=login_ago)

    verdict = eligibility(ref_conn, stack.customer)
    assert "login" not in verdict["blocked_by"]
    activity = latest_activity(ref_conn, stack)
    assert verdict["eligible_at"] == ref_conn.execute(
        "SELECT %s::timestamptz + interval '14 days'", (activity,)).fetchone()[0]
    assert_verdict(ref_conn, ref_db, stack, deleted=True, mapping=login_rule_off)


def test_login_rule_off_still_applies_inactivity(ref_conn, ref_db, login_rule_off):
    stack = add_stack(ref_conn, age="60 days", locations=1, contacts_per_location=1, last_login_ago="1 hour")
    set_age(ref_conn, "contacts", stack.contacts[0], "updated_at", JUST_INSIDE)

    assert_verdict(ref_conn, ref_db, stack, deleted=False, mapping=login_rule_off, blocked_by=["activity"])


# --- 2-4: blockers keep the whole stack ------------------------------------------------

def _block(conn: psycopg.Connection, stack: Stack, kind: str) -> None:
    # Always on the second location (or its contacts), so the first one alone looks free.
    if kind == "location_case":
        conn.execute("INSERT INTO cases (location_id) VALUES (%s)", (stack.locations[1],))
    elif kind == "location_device":
        conn.execute("INSERT INTO devices (location_id) VALUES (%s)", (stack.locations[1],))
    elif kind == "contact_case":
        conn.execute("INSERT INTO cases (contact_id) VALUES (%s)", (stack.contacts[-1],))
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["location_case", "location_device", "contact_case"])
def test_a_blocker_on_any_part_keeps_the_whole_stack(ref_conn, ref_db, kind):
    blocked = add_stack(ref_conn, age="400 days", locations=2, contacts_per_location=2, last_login_ago="2 years")
    _block(ref_conn, blocked, kind)
    free = add_stack(ref_conn, age="400 days", locations=2, contacts_per_location=2, last_login_ago="2 years")

    verdict = eligibility(ref_conn, blocked.customer)
    assert verdict["blocked_by"] == [kind]
    assert verdict["eligible"] is False
    assert verdict["eligible_at"] is None  # no date while a blocker holds it
    assert candidate_ids(ref_conn) == {free.customer}

    progress = purge(ref_db, batch_size=1)
    assert progress.customers == 1
    assert stack_exists(ref_conn, blocked)
    assert not stack_exists(ref_conn, free)

    # Remove the blocker and the stack goes on the next run.
    ref_conn.execute("DELETE FROM cases")
    ref_conn.execute("DELETE FROM devices")
    assert eligibility(ref_conn, blocked.customer)["eligible"] is True
    purge(ref_db, batch_size=1)
    assert not stack_exists(ref_conn, blocked)


def test_blockers_and_time_rules_are_all_listed(ref_conn, ref_db):
    stack = add_stack(ref_conn, age="1 day", locations=2, contacts_per_location=2, last_login_ago="1 day")
    for kind in ("contact_case", "location_device", "location_case"):
        _block(ref_conn, stack, kind)

    verdict = eligibility(ref_conn, stack.customer)
    # time rules first, then the blockers in mapping order
    assert verdict["blocked_by"] == ["activity", "login", "location_case", "contact_case", "location_device"]
    assert verdict["eligible_at"] is None
    assert_verdict(ref_conn, ref_db, stack, deleted=False)


def test_a_blocker_on_another_customers_stack_does_not_hold_this_one(ref_conn, ref_db):
    blocked = add_stack(ref_conn, age="400 days", locations=1, contacts_per_location=1)
    free = add_stack(ref_conn, age="400 days", locations=1, contacts_per_location=1)
    ref_conn.execute("INSERT INTO cases (location_id, contact_id) VALUES (%s, %s)",
                     (blocked.locations[0], blocked.contacts[0]))

    assert eligibility(ref_conn, blocked.customer)["blocked_by"] == ["location_case", "contact_case"]
    assert eligibility(ref_conn, free.customer)["blocked_by"] == []
    assert_verdict(ref_conn, ref_db, free, deleted=True)
    assert stack_exists(ref_conn, blocked)


# --- stacks of unusual shape -----------------------------------------------------------

@pytest.mark.parametrize("ago, deleted", [(JUST_INSIDE, False), (JUST_OUTSIDE, True), ("3 years", True)])
def test_customer_without_locations_is_judged_on_its_own_row(ref_conn, ref_db, ago, deleted):
    stack = add_stack(ref_conn, age=ago, locations=0)

    verdict = eligibility(ref_conn, stack.customer)
    assert verdict["location_ids"] == [] and verdict["contact_ids"] == []
    assert verdict["last_login_at"] is None
    assert_verdict(ref_conn, ref_db, stack, deleted=deleted, blocked_by=None if deleted else ["activity"])


def test_locations_without_contacts(ref_conn, ref_db):
    stack = add_stack(ref_conn, age="30 days", locations=3, contacts_per_location=0)
    assert_verdict(ref_conn, ref_db, stack, deleted=True)


def test_customer_whose_own_activity_is_all_null_is_never_eligible(ref_conn, ref_db):
    ref_conn.execute("ALTER TABLE customers ALTER created_at DROP NOT NULL, ALTER updated_at DROP NOT NULL")
    stack = add_stack(ref_conn, age="400 days", locations=1, contacts_per_location=1)
    alone = add_stack(ref_conn, age="400 days", locations=0)
    for s in (stack, alone):
        ref_conn.execute("UPDATE customers SET created_at = NULL, updated_at = NULL WHERE id = %s", (s.customer,))

    for s in (stack, alone):
        verdict = eligibility(ref_conn, s.customer)
        assert verdict["eligible"] is False
        assert verdict["eligible_at"] is None
        assert verdict["blocked_by"] == ["activity"]
    assert_verdict(ref_conn, ref_db, stack, deleted=False)
    assert_verdict(ref_conn, ref_db, alone, deleted=False)

    # NULL activity on a location or contact says nothing: the other rows decide
    ref_conn.execute("ALTER TABLE locations ALTER created_at DROP NOT NULL, ALTER updated_at DROP NOT NULL")
    ref_conn.execute("ALTER TABLE contacts ALTER created_at DROP NOT NULL, ALTER updated_at DROP NOT NULL")
    blank = add_stack(ref_conn, age="400 days", locations=2, contacts_per_location=1)
    ref_conn.execute("UPDATE locations SET created_at = NULL, updated_at = NULL WHERE id = %s", (blank.locations[0],))
    ref_conn.execute("UPDATE contacts SET created_at = NULL, updated_at = NULL WHERE id = %s", (blank.contacts[1],))
    assert_verdict(ref_conn, ref_db, blank, deleted=True)

    # one NULL column of two is fine: GREATEST ignores it
    ref_conn.execute("UPDATE customers SET created_at = now() - interval '400 days' WHERE id = %s", (stack.customer,))
    assert_verdict(ref_conn, ref_db, stack, deleted=True)
    ref_conn.execute("UPDATE customers SET updated_at = now() - interval '400 days' WHERE id = %s", (alone.customer,))
    assert_verdict(ref_conn, ref_db, alone, deleted=True)


# --- eligible_at and last_activity_at --------------------------------------------------

def _ts(conn: psycopg.Connection, sql: str, *params):
    return conn.execute(sql, params).fetchone()[0]


def latest_activity(conn: psycopg.Connection, stack: Stack):
    """The latest activity value over the stack's rows, computed independently of the views."""
    return _ts(conn, """
        SELECT max(t) FROM (
            SELECT GREATEST(created_at, updated_at) FROM customers WHERE id = %s
            UNION ALL SELECT GREATEST(created_at, updated_at) FROM locations WHERE id = ANY (%s)
            UNION ALL SELECT GREATEST(created_at, updated_at) FROM contacts WHERE id = ANY (%s)
        ) AS s(t)""", stack.customer, stack.locations, stack.contacts)


def test_eligible_at_is_latest_activity_plus_inactivity(ref_conn, ref_db):
    stack = add_stack(ref_conn, age="60 days", locations=2, contacts_per_location=2, last_login_ago="1 year")
    # the latest activity anywhere in the stack is a contact's created_at, 3 days ago
    set_age(ref_conn, "contacts", stack.contacts[2], "created_at", "3 days")
    latest = _ts(ref_conn, "SELECT created_at FROM contacts WHERE id = %s", stack.contacts[2])

    verdict = eligibility(ref_conn, stack.customer)
    assert verdict["last_activity_at"] == latest
    assert verdict["eligible_at"] == _ts(ref_conn, "SELECT %s::timestamptz + interval '14 days'", latest)
    assert verdict["eligible"] is False
    assert verdict["blocked_by"] == ["activity"]

    # the candidates view reports the same last activity once eligible
    set_age(ref_conn, "contacts", stack.contacts[2], "created_at", "20 days")
    latest = _ts(ref_conn, "SELECT created_at FROM contacts WHERE id = %s", stack.contacts[2])
    verdict = eligibility(ref_conn, stack.customer)
    assert verdict["eligible"] is True
    assert verdict["eligible_at"] == _ts(ref_conn, "SELECT %s::timestamptz + interval '14 days'", latest)
    row = ref_conn.execute("SELECT last_activity_at, location_ids, contact_ids FROM adhoc_gc.candidates "
                           "WHERE customer_id = %s", (stack.customer,)).fetchone()
    assert row == (latest, sorted(stack.locations), sorted(stack.contacts))
    assert (verdict["location_ids"], verdict["contact_ids"]) == (sorted(stack.locations), sorted(stack.contacts))


def test_eligible_at_is_last_login_plus_window_when_later(ref_conn, ref_db):
    stack = add_stack(ref_conn, age="60 days", locations=2, contacts_per_location=1, last_login_ago="1 year")
    set_age(ref_conn, "contacts", stack.contacts[1], "last_login_at", "5 months")
    login = _ts(ref_conn, "SELECT last_login_at FROM contacts WHERE id = %s", stack.contacts[1])

    verdict = eligibility(ref_conn, stack.customer)
    assert verdict["last_login_at"] == login
    assert verdict["eligible_at"] == _ts(ref_conn, "SELECT %s::timestamptz + interval '6 months'", login)
    assert verdict["blocked_by"] == ["login"]
    assert_verdict(ref_conn, ref_db, stack, deleted=False)


def test_eligible_at_takes_activity_when_the_login_is_older(ref_conn, ref_db):
    stack = add_stack(ref_conn, age="10 days", locations=1, contacts_per_location=1, last_login_ago="7 months")
    activity = latest_activity(ref_conn, stack)

    verdict = eligibility(ref_conn, stack.customer)
    assert verdict["eligible_at"] == _ts(ref_conn, "SELECT %s::timestamptz + interval '14 days'", activity)
    assert verdict["blocked_by"] == ["activity"]
    assert_verdict(ref_conn, ref_db, stack, deleted=False)


def test_eligible_at_is_null_while_a_blocker_holds_and_returns_without_it(ref_conn, ref_db):
    stack = add_stack(ref_conn, age="5 days", locations=2, contacts_per_location=1)
    ref_conn.execute("INSERT INTO devices (location_id) VALUES (%s)", (stack.locations[1],))
    assert eligibility(ref_conn, stack.customer)["eligible_at"] is None
    assert eligibility(ref_conn, stack.customer)["blocked_by"] == ["activity", "location_device"]

    ref_conn.execute("DELETE FROM devices")
    activity = latest_activity(ref_conn, stack)
    verdict = eligibility(ref_conn, stack.customer)
    assert verdict["eligible_at"] == _ts(ref_conn, "SELECT %s::timestamptz + interval '14 days'", activity)
    assert verdict["blocked_by"] == ["activity"]


def test_policy_intervals_come_from_the_mapping(ref_conn, ref_db):
    mapping = mapping_from_toml('[policy]\ninactivity = "2 hours"\nlogin_window = "3 days"\n')
    deploy_mapping(ref_db, mapping)
    kept_activity = add_stack(ref_conn, age="1 hour", locations=1, contacts_per_location=1)
    kept_login = add_stack(ref_conn, age="3 hours", locations=1, contacts_per_location=1, last_login_ago="2 days")
    gone = add_stack(ref_conn, age="3 hours", locations=1, contacts_per_location=1, last_login_ago="4 days")

    login = _ts(ref_conn, "SELECT last_login_at FROM contacts WHERE id = %s", kept_login.contacts[0])
    assert eligibility(ref_conn, kept_login.customer)["eligible_at"] == _ts(
        ref_conn, "SELECT %s::timestamptz + interval '3 days'", login)
    assert candidate_ids(ref_conn) == {gone.customer}
    purge(ref_db, mapping, batch_size=10)
    assert stack_exists(ref_conn, kept_activity)
    assert stack_exists(ref_conn, kept_login)
    assert not stack_exists(ref_conn, gone)
