"""pg_cron scheduling: one named job that CALLs the purge procedure.

pg_cron keeps its tables in one database (`cron.database_name`); a job runs in any database
through `cron.schedule_in_database`, so the package's database need not be that one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import psycopg
from psycopg.conninfo import make_conninfo

from .db import connect, one_line
from .errors import ConfigError
from .mapping import Mapping
from .purge import check_deployed, fetch_runs

PRUNE_SUFFIX = ":prune-history"
PRUNE_SCHEDULE = "17 4 * * *"  # daily, off the hour


@dataclasses.dataclass(frozen=True)
class CronPlace:
    database: str  # where pg_cron's tables are
    target_database: str  # where the package is deployed
    dsn: str  # a connection string to `database`


def default_job_name(target_database: str, mapping: Mapping) -> str:
    return f"adhoc-gc:{target_database}:{mapping.schema}"


@dataclasses.dataclass(frozen=True)
class CronState:
    preloaded: bool  # pg_cron in shared_preload_libraries
    database: str  # cron.database_name, where pg_cron's tables are (or would be)
    target_database: str  # where the package is deployed
    dsn: str | None  # a connection string to `database`, when pg_cron is loaded
    installed: bool | None  # the extension exists in `database` (None: not looked, pg_cron is not loaded)


def inspect_cron(conn: psycopg.Connection, dsn: str, queries: dict[str, str]) -> CronState:
    """Where pg_cron stands: loaded? which database? extension created there?"""
    preloaded, cron_db, current_db, _ = conn.execute(queries["cron_settings"]).fetchone()
    conn.commit()
    cron_db = cron_db or "postgres"
    if not preloaded:
        return CronState(preloaded=False, database=cron_db, target_database=current_db, dsn=None, installed=None)
    cron_dsn = dsn if cron_db == current_db else make_conninfo(dsn, dbname=cron_db)
    with connect(cron_dsn) as cron_conn:
        installed = cron_conn.execute(queries["cron_installed"]).fetchone()[0]
    return CronState(preloaded=True, database=cron_db, target_database=current_db, dsn=cron_dsn,
                     installed=installed)


def locate_cron(conn: psycopg.Connection, dsn: str, queries: dict[str, str]) -> CronPlace:
    """Find pg_cron's database, or say exactly what to change to have one."""
    state = inspect_cron(conn, dsn, queries)
    if not state.preloaded:
        current_db = state.target_database
        raise ConfigError(
            "pg_cron is not loaded: add to postgresql.conf  shared_preload_libraries = 'pg_cron'  and  "
            f"cron.database_name = '{current_db}', restart PostgreSQL, then run CREATE EXTENSION pg_cron "
            f"in database {current_db!r}"
        )
    if not state.installed:
        raise ConfigError(f"pg_cron is loaded but its extension is missing: run CREATE EXTENSION pg_cron "
                          f"in database {state.database!r} (cron.database_name)")
    return CronPlace(database=state.database, target_database=state.target_database, dsn=state.dsn)


def schedule(dsn: str, mapping: Mapping, queries: dict[str, str], *, cron: str, batch_size: int,
             max_runtime_seconds: float, job_name: str | None, prune_history: str | None) -> dict:
    with connect(dsn) as conn:
        check_deployed(conn, mapping, queries)
        place = locate_cron(conn, dsn, queries)
        command = conn.execute(queries["cron_purge_command"], {
            "schema": mapping.schema, "batch_size": batch_size, "max_runtime": f"{max_runtime_seconds} seconds",
        }).fetchone()[0]
        prune_command = None
        if prune_history:
            try:
                with conn.transaction():
                    positive = conn.execute(queries["interval_is_positive"], {"value": prune_history}).fetchone()[0]
                    prune_command = conn.execute(queries["cron_prune_command"], {"keep": prune_history}).fetchone()[0]
            except psycopg.errors.DataError:
                raise ConfigError(f"--prune-cron-history: {prune_history!r} is not an interval") from None
            if not positive:
                # A zero or negative age would delete the whole history every day.
                raise ConfigError(f"--prune-cron-history: {prune_history!r} must be longer than zero")
    name = job_name or default_job_name(place.target_database, mapping)
    with connect(place.dsn) as cron_conn:
        try:
            with cron_conn.transaction():
                # A named job: scheduling the same name again updates it, never duplicates.
                jobid = cron_conn.execute(queries["cron_schedule"], {
                    "job_name": name, "schedule": cron, "command": command, "database": place.target_database,
                }).fetchone()[0]
                prune_jobid = None
                if prune_command:
                    prune_jobid = cron_conn.execute(queries["cron_schedule"], {
                        "job_name": name + PRUNE_SUFFIX, "schedule": PRUNE_SCHEDULE,
                        "command": prune_command, "database": place.database,
                    }).fetchone()[0]
        except (psycopg.errors.InvalidParameterValue, psycopg.errors.InternalError_) as exc:
            raise ConfigError(f"pg_cron refused the schedule {cron!r}: {one_line(exc)}") from None
    return {"job_name": name, "jobid": jobid, "schedule": cron, "command": command,
            "cron_database": place.database, "database": place.target_database,
            "prune_job_id": prune_jobid}


def unschedule(dsn: str, mapping: Mapping, queries: dict[str, str], job_name: str | None) -> list[str]:
    """Removes the job (and its history-pruning job); returns the names removed."""
    with connect(dsn) as conn:
        place = locate_cron(conn, dsn, queries)
    name = job_name or default_job_name(place.target_database, mapping)
    removed = []
    with connect(place.dsn) as cron_conn:
        with cron_conn.transaction():
            for candidate in (name, name + PRUNE_SUFFIX):
                if cron_conn.execute(queries["cron_unschedule"], {"job_name": candidate}).fetchall():
                    removed.append(candidate)
    return removed


def status(dsn: str, mapping: Mapping, queries: dict[str, str], job_name: str | None, limit: int = 5) -> dict:
    """The pg_cron job and the last runs; without pg_cron (a runner-only install), the runs
    and what pg_cron lacks (`cron_unavailable`), not an error."""
    with connect(dsn) as conn:
        try:
            place = locate_cron(conn, dsn, queries)
            unavailable = None
        except ConfigError as exc:
            place, unavailable = None, str(exc)
        runs = fetch_runs(conn, queries, limit)
    if place is None:
        return {"job_name": job_name, "cron_database": None, "scheduled": False, "cron_unavailable": unavailable,
                "runs": runs}
    name = job_name or default_job_name(place.target_database, mapping)
    with connect(place.dsn) as cron_conn:
        job = cron_conn.execute(queries["cron_job"], {"job_name": name}).fetchone()
        cron_runs = []
        if job:
            cron_runs = cron_conn.execute(queries["cron_job_runs"], {"jobid": job[0], "limit": limit}).fetchall()
    result: dict = {"job_name": name, "cron_database": place.database, "scheduled": job is not None,
                    "cron_unavailable": None, "runs": runs}
    if job:
        jobid, _, cron, command, database, username, active = job
        result.update(jobid=jobid, schedule=cron, command=command, database=database, username=username,
                      active=active, next_run_utc=next_run(cron, dt.datetime.now(dt.timezone.utc)),
                      cron_runs=[dict(zip(["runid", "status", "return_message", "start_time", "end_time"], r))
                                 for r in cron_runs])
    return result


# --- the next time a cron expression fires (pg_cron reads schedules in UTC) ----------------

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 7))
_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


def _parse_field(text: str, low: int, high: int) -> set[int] | None:
    values: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"(\*|\d+(?:-\d+)?)(?:/(\d+))?", part)
        if not match:
            return None
        span, step = match.group(1), int(match.group(2) or 1)
        if span == "*":
            start, end = low, high
        elif "-" in span:
            start, end = (int(x) for x in span.split("-"))
        else:
            start = end = int(span)
            if match.group(2):
                end = high
        if start < low or end > high or start > end or step < 1:
            return None
        values.update(range(start, end + 1, step))
    return values


def next_run(expression: str, after: dt.datetime) -> dt.datetime | None:
    """The next minute after `after` (UTC) that the 5-field cron expression matches, or None
    for forms this does not read (pg_cron's '30 seconds' schedules, say)."""
    fields = _MACROS.get(expression.strip(), expression).split()
    if len(fields) != 5:
        return None
    parsed = [_parse_field(text, low, high) for text, (_, low, high) in zip(fields, _FIELDS)]
    if any(p is None for p in parsed):
        return None
    minutes, hours, days, months, weekdays = parsed
    weekdays = {0 if d == 7 else d for d in weekdays}
    day_restricted, weekday_restricted = fields[2] != "*", fields[4] != "*"
    moment = after.astimezone(dt.timezone.utc).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    for _ in range(366 * 24 * 60 * 5):
        cron_weekday = (moment.weekday() + 1) % 7  # cron: 0 = Sunday
        if day_restricted and weekday_restricted:
            day_ok = moment.day in days or cron_weekday in weekdays
        else:
            day_ok = moment.day in days and cron_weekday in weekdays
        if moment.month not in months or not day_ok:
            moment = (moment + dt.timedelta(days=1)).replace(hour=0, minute=0)
            continue
        if moment.hour not in hours:
            moment = (moment + dt.timedelta(hours=1)).replace(minute=0)
            continue
        if moment.minute in minutes:
            return moment
        moment += dt.timedelta(minutes=1)
    return None
