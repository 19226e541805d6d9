"""The analysts' summary views and functions: blocked_summary, forecast and forecast_days(N),
daily_stats."""

import collections
import datetime as dt
import itertools
import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from helpers import add_stack, deploy_mapping, mapping_from_toml, purge


def test_blocked_summary_counts_each_reason(ref_conn):
    add_stack(ref_conn)  # eligible
    add_stack(ref_conn)  # eligible
    add_stack(ref_conn, age="3 days")  # activity
    held = add_stack(ref_conn, last_login_ago="10 days")  # login
    ref_conn.execute("INSERT INTO cases (location_id) VALUES (%s)", (held.locations[0],))  # ... and a case
    add_stack(ref_conn, adhoc=False)  # not counted at all
    summary = dict((r, (n, p)) for r, n, p in ref_conn.execute("SELECT * FROM adhoc_gc.blocked_summary"))
    assert {r: n for r, (n, _) in summary.items()} == {
        "eligible now": 2, "activity": 1, "login": 1, "location_case": 1}
    assert float(summary["eligible now"][1]) == 50.0  # of the 4 ad-hoc customers


def test_forecast_counts_stacks_by_the_day_they_become_eligible(ref_conn):
    add_stack(ref_conn, age="13 days 12 hours")  # eligible tomorrow (in 12 hours, or the day after)
    add_stack(ref_conn, age="10 days")  # in 4 days
    add_stack(ref_conn, age="10 days")  # in 4 days
    blocked = add_stack(ref_conn, age="10 days")  # held by a device: never on its own
    ref_conn.execute("INSERT INTO devices (location_id) VALUES (%s)", (blocked.locations[0],))
    add_stack(ref_conn, age="30 days")  # eligible already: not in the forecast
    rows = ref_conn.execute("SELECT day, becoming_eligible, cumulative FROM adhoc_gc.forecast ORDER BY day").fetchall()
    assert len(rows) == 30
    today = ref_conn.execute("SELECT now()::date").fetchone()[0]
    assert rows[0][0] == today
    by_day = {day: n for day, n, _ in rows if n}
    in_four = ref_conn.execute("SELECT (now() + interval '4 days')::date").fetchone()[0]
    assert by_day[in_four] == 2
    assert sum(by_day.values()) == 3
    assert rows[-1][2] == 3


def _forecast_stacks(conn):
    """Stacks becoming eligible today-ish, in 4 days, in about 40 and 100 days, and some never."""
    add_stack(conn, age="13 days 12 hours")  # in 12 hours: today or tomorrow
    add_stack(conn, age="10 days")  # in 4 days
    add_stack(conn, age="10 days")
    add_stack(conn, last_login_ago="6 months - 40 days")  # a login holds it for about 40 days
    add_stack(conn, last_login_ago="6 months - 100 days")
    blocked = add_stack(conn, age="10 days")
    conn.execute("INSERT INTO devices (location_id) VALUES (%s)", (blocked.locations[0],))
    add_stack(conn, age="30 days")  # eligible already


@pytest.mark.parametrize("days", [1, 7, 30, 60, 365])
def test_forecast_days_counts_each_of_the_next_n_days(ref_conn, days):
    _forecast_stacks(ref_conn)
    rows = ref_conn.execute("SELECT day, becoming_eligible, cumulative FROM adhoc_gc.forecast_days(%s)",
                            (days,)).fetchall()
    today = ref_conn.execute("SELECT now()::date").fetchone()[0]
    assert [day for day, _, _ in rows] == [today + dt.timedelta(days=i) for i in range(days)]  # every day, in order
    # What eligibility says, counted by day in Python.
    expected = collections.Counter(day for (day,) in ref_conn.execute(
        "SELECT eligible_at::date FROM adhoc_gc.eligibility WHERE NOT eligible AND eligible_at IS NOT NULL"))
    assert {day: n for day, n, _ in rows if n} == {day: n for day, n in expected.items()
                                                   if day < today + dt.timedelta(days=days)}
    assert [c for _, _, c in rows] == list(itertools.accumulate(n for _, n, _ in rows))
    if days >= 365:
        assert rows[-1][2] == 5  # all but the blocked one and the one eligible already


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kathmandu", "Pacific/Chatham", "Australia/Lord_Howe"])
def test_forecast_days_counts_by_the_day_in_the_session_time_zone(ref_conn, zone):
    # Stacks a login holds until every ~6 days and 5 hours over the next year: through both
    # of each zone's daylight-saving changes, at every hour of the day.
    for hours in range(3, 366 * 24, 149):
        add_stack(ref_conn, last_login_ago=f"6 months - {hours} hours")
    ref_conn.execute("SELECT set_config('TimeZone', %s, false)", (zone,))
    rows = ref_conn.execute("SELECT day, becoming_eligible FROM adhoc_gc.forecast_days(366)").fetchall()
    today = ref_conn.execute("SELECT now()::date").fetchone()[0]
    assert [day for day, _ in rows] == [today + dt.timedelta(days=i) for i in range(366)]
    expected = collections.Counter(day for (day,) in ref_conn.execute(
        "SELECT eligible_at::date FROM adhoc_gc.eligibility WHERE NOT eligible AND eligible_at IS NOT NULL"))
    assert {day: n for day, n in rows if n} == {day: n for day, n in expected.items()
                                                if day < today + dt.timedelta(days=366)}
    assert sum(n for _, n in rows) >= 58


def test_the_forecast_view_is_forecast_days_30(ref_conn):
    _forecast_stacks(ref_conn)
    view = ref_conn.execute("SELECT * FROM adhoc_gc.forecast ORDER BY day")
    function = ref_conn.execute("SELECT * FROM adhoc_gc.forecast_days(30)")
    assert [(c.name, c.type_code) for c in view.description] == [(c.name, c.type_code) for c in function.description]
    assert view.fetchall() == function.fetchall()
    by_day = dict(ref_conn.execute("SELECT day, becoming_eligible FROM adhoc_gc.forecast_days(120)").fetchall())
    assert sum(by_day.values()) == 5
    assert sum(n for day, n in ref_conn.execute("SELECT day, becoming_eligible FROM adhoc_gc.forecast")) == 3


@pytest.mark.parametrize("days", [0, -1, None, 3661])
def test_forecast_days_refuses_a_horizon_out_of_range(ref_conn, days):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="from 1 to 3660"):
        ref_conn.execute("SELECT * FROM adhoc_gc.forecast_days(%s::integer)", (days,))


def test_forecast_days_at_the_longest_horizon(ref_conn):
    assert ref_conn.execute("SELECT count(*), max(day) - min(day) FROM adhoc_gc.forecast_days(3660)").fetchone() == (
        3660, 3659)


def test_an_analyst_reads_the_forecast_both_ways(ref_db, ref_conn):
    suffix = uuid.uuid4().hex[:8]  # roles are cluster-wide
    owner, analyst, stranger = (f"gc_{kind}_{suffix}" for kind in ("owner", "analyst", "stranger"))
    for role in (owner, analyst, stranger):
        ref_conn.execute(f'CREATE ROLE "{role}" LOGIN')
    ref_conn.execute(f'GRANT SELECT, UPDATE, INSERT, DELETE ON customers, locations, contacts TO "{owner}"')
    ref_conn.execute(f'GRANT SELECT ON cases, devices TO "{owner}"')
    try:
        deploy_mapping(ref_db, mapping_from_toml(f'[roles]\nowner = "{owner}"\nanalyst = "{analyst}"\n'))
        _forecast_stacks(ref_conn)
        with psycopg.connect(make_conninfo(ref_db, user=analyst), autocommit=True) as conn:
            assert conn.execute("SELECT sum(becoming_eligible) FROM adhoc_gc.forecast").fetchone()[0] == 3
            assert conn.execute("SELECT sum(becoming_eligible) FROM adhoc_gc.forecast_days(120)").fetchone()[0] == 5
        with psycopg.connect(make_conninfo(ref_db, user=stranger), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM adhoc_gc.forecast_days(7)")
        assert ref_conn.execute("SELECT pg_get_userbyid(proowner), has_function_privilege('public', oid, 'EXECUTE') "
                                "FROM pg_proc WHERE oid = 'adhoc_gc.forecast_days(integer)'::regprocedure"
                                ).fetchone() == (owner, False)
    finally:
        ref_conn.execute("DROP SCHEMA adhoc_gc CASCADE")
        for role in (owner, analyst, stranger):
            ref_conn.execute(f'DROP OWNED BY "{role}" CASCADE')
            ref_conn.execute(f'DROP ROLE "{role}"')


def test_daily_stats_sum_the_runs_of_each_day(ref_db, ref_conn):
    for _ in range(3):
        add_stack(ref_conn, locations=2)
    purge(ref_db, batch_size=2)
    purge(ref_db, batch_size=2)  # nothing left: a run that deletes nothing
    ref_conn.execute("INSERT INTO adhoc_gc.runs (started_at, status, trigger, batch_size, error) "
                     "VALUES (now() - interval '1 day', 'failed', 'pg_cron', 10, 'boom')")
    stats = ref_conn.execute("SELECT * FROM adhoc_gc.daily_stats ORDER BY day").fetchall()
    today = ref_conn.execute("SELECT now()::date").fetchone()[0]
    assert stats == [
        (today - dt.timedelta(days=1), 1, 0, 1, 0, 0, 0, 0),
        (today, 2, 2, 0, 0, 3, 6, 6),
    ]


def test_the_ten_example_queries_in_the_analysts_guide_run(ref_db, ref_conn):
    import re
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "analysts.md").read_text()
    (block,) = re.findall(r"```sql\n(.*?)```", guide, flags=re.S)
    statements = [part for part in block.split(";")
                  if any(line.strip() and not line.strip().startswith("--") for line in part.splitlines())]
    assert len(statements) == 10
    add_stack(ref_conn)
    add_stack(ref_conn, last_login_ago="10 days")
    purge(ref_db, batch_size=5)
    for statement in statements:
        ref_conn.execute(statement).fetchall()
