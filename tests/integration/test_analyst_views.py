"""The analysts' summary views: blocked_summary, forecast, daily_stats."""

import datetime as dt

from helpers import add_stack, purge


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
