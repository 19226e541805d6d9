"""The `adhoc-gc` command line. Exit codes: 0 success, 1 database or runtime failure,
2 bad usage or configuration, 3 purge skipped (another purge holds the lock, or a standby).
Every error is one line on stderr."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import signal
import sys
import traceback
from typing import Any, Sequence

import psycopg

from . import __version__
from .db import connect, one_line
from .errors import EXIT_FAILURE, EXIT_OK, AdhocGcError, ConfigError, RunFailed, Terminated
from .mapping import Mapping, load_mapping, resolve_dsn
from .progress import LogLines, TerminalLine
from .progress import choose as choose_progress
from .purge import PurgeOptions, PurgeProgress, fetch_runs, run_purge
from .render import render_queries
from .streams import GuardedStream

DEBUG_ENV = "ADHOC_GC_DEBUG"


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message} (see `{self.prog} --help`)")


# Upper bounds that keep every number inside what the SQL it reaches accepts (integer
# batch sizes and counts, bigint run ids, intervals), so a huge value is a usage error
# here, not a database error halfway through.
MAX_INT = 2_147_483_647
MAX_BIGINT = 9_223_372_036_854_775_807
MAX_SECONDS = 1_000_000 * 3600  # a million hours


def _duration(text: str) -> float:
    """'90', '90s', '15m', '2h' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m or 2h")
    factor = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[match.group(2)]
    seconds = float(match.group(1)) * factor
    if seconds <= 0:  # a run that may start no batch: as --max-batches 0, refused
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than zero")
    if not seconds <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than a million hours")
    return seconds


def _whole_number(text: str, least: int, most: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least {least}")
    if value > most:
        raise argparse.ArgumentTypeError(f"{text!r} must be at most {most}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1, MAX_INT)


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0, MAX_INT)


def _run_id(text: str) -> int:
    return _whole_number(text, 1, MAX_BIGINT)


def _seconds(text: str, least_exclusive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    if least_exclusive and not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than a million hours")
    return value


def _positive_float(text: str) -> float:
    return _seconds(text, least_exclusive=True)


def _non_negative_float(text: str) -> float:
    return _seconds(text, least_exclusive=False)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE",
                        help="mapping file (default: $ADHOC_GC_CONFIG, else ./adhoc-gc.toml, else built-in defaults)")
    common.add_argument("--dsn", metavar="DSN",
                        help="libpq connection string (default: $ADHOC_GC_DSN, else [database].dsn, else PG* variables)")

    parser = _Parser(prog="adhoc-gc", description="Deletes ad-hoc customer stacks from PostgreSQL, in batches.")
    parser.add_argument("--version", action="version", version=f"adhoc-gc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("deploy", parents=[common], help="check the mapping, apply migrations, re-create views and functions")
    p.add_argument("--json", action="store_true", help="print what was done as JSON")

    p = sub.add_parser("render", parents=[common], help="print the SQL that deploy runs (no database needed)")
    p.add_argument("--objects-only", action="store_true", help="only the views and functions, not schema and tables")

    p = sub.add_parser("plan", parents=[common], help="what a purge would delete now, and what holds the rest (read only)")
    p.add_argument("--sample", type=_non_negative_int, default=10, metavar="N", help="how many candidates to list (default 10)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("purge", parents=[common], help="delete eligible stacks in batches, recording the run")
    p.add_argument("--batch-size", type=_positive_int, default=500, metavar="N", help="stacks per batch (default 500)")
    p.add_argument("--max-batches", type=_positive_int, metavar="N", help="stop after N batches")
    p.add_argument("--max-runtime", type=_duration, metavar="DURATION", help="stop starting batches after this long (e.g. 10m)")
    p.add_argument("--sleep", type=_non_negative_float, default=0.0, metavar="SECONDS", help="pause between batches")
    p.add_argument("--no-archive", action="store_true", help="do not keep the deleted rows in the purged table")
    p.add_argument("--force", action="store_true", help="run even when [guard] caps would refuse it")
    p.add_argument("--quiet", action="store_true", help="no progress and no summary; errors only")
    p.add_argument("--log-format", choices=["text", "json"],
                   help="log lines instead of the live progress line (default on a terminal: the live line)")
    p.add_argument("--target-batch-seconds", type=_positive_float, metavar="SECONDS",
                   help="adapt the batch size so a batch takes about this long (--batch-size is the ceiling)")
    p.add_argument("--json", action="store_true", help="print the run's result as JSON")

    p = sub.add_parser("runs", parents=[common], help="purge run history, newest first")
    p.add_argument("--limit", type=_positive_int, default=20, metavar="N")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("explain", parents=[common], help="why a customer is or is not deleted, rule by rule")
    p.add_argument("customer_key", metavar="CUSTOMER_KEY")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("restore", parents=[common], help="put archived stacks back with their original keys")
    p.add_argument("--run", type=_run_id, metavar="RUN_ID", help="every stack that run deleted")
    p.add_argument("--customer", metavar="CUSTOMER_KEY", help="the stack of this customer")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("schedule", parents=[common], help="create or update the pg_cron job that runs the purge")
    p.add_argument("--cron", required=True, metavar="SCHEDULE", help="cron schedule in UTC, e.g. '30 3 * * *'")
    p.add_argument("--batch-size", type=_positive_int, default=500, metavar="N", help="stacks per batch (default 500)")
    p.add_argument("--max-runtime", type=_duration, default=600.0, metavar="DURATION",
                   help="stop starting batches after this long (default 10m)")
    p.add_argument("--job-name", metavar="NAME", help="pg_cron job name (default adhoc-gc:DATABASE:SCHEMA)")
    p.add_argument("--prune-cron-history", metavar="INTERVAL",
                   help="also schedule a daily job deleting cron.job_run_details older than this, e.g. '14 days'")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("unschedule", parents=[common], help="remove the pg_cron job (and its history-pruning job)")
    p.add_argument("--job-name", metavar="NAME")

    p = sub.add_parser("status", parents=[common], help="the pg_cron job, its next run, and the last runs")
    p.add_argument("--job-name", metavar="NAME")
    p.add_argument("--limit", type=_positive_int, default=5, metavar="N")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("metrics", parents=[common],
                       help="print metrics in Prometheus' text format, for node_exporter's textfile collector (read only)")
    p.add_argument("--no-candidates", action="store_true", help="leave out adhoc_gc_candidates (counting them may be slow)")

    p = sub.add_parser("uninstall", parents=[common],
                       help="unschedule the pg_cron job and drop the views, functions and procedure (--drop-data: tables, schema)")
    p.add_argument("--drop-data", action="store_true",
                   help="also drop the tables (runs, purged and yoyo's) and then the schema if nothing else is in it")
    p.add_argument("--job-name", metavar="NAME", help="pg_cron job name (default adhoc-gc:DATABASE:SCHEMA)")
    p.add_argument("--json", action="store_true", help="print what was done as JSON")

    p = sub.add_parser("doctor", parents=[common],
                       help="check indexes, statistics, foreign keys, deployment, pg_cron and roles; print each fix")
    p.add_argument("--json", action="store_true", help="print the findings as a JSON list")

    p = sub.add_parser("report", parents=[common],
                       help="funnel, purged per day, backlog trend, what holds the rest, last runs (read only)")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the report as JSON")
    output.add_argument("--csv", action="store_true", help="print the report as one flat CSV: section,key,metric,value")
    output.add_argument("--html", metavar="FILE",
                        help="write one self-contained HTML page (inline CSS and SVG charts) to FILE ('-': stdout)")

    p = sub.add_parser("demo", help="the whole job on a throwaway local PostgreSQL, then clean up")
    p.add_argument("--customers", type=_positive_int, default=2000, metavar="N", help="customers to generate (default 2000)")
    p.add_argument("--keep", action="store_true", help="leave the database running and print its DSN")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if isinstance(sys.stdout, GuardedStream):  # the demo runs the other commands through main
        return _main(argv)
    out, err = GuardedStream(sys.stdout), GuardedStream(sys.stderr)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    previous_sigterm = _on_sigterm_raise_terminated()
    try:
        code = _main(argv)
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        out.flush()
        err.flush()
        sys.stdout, sys.stderr = saved
    # A reader that stopped reading (`| head`) is not a failure: the command's own code
    # stands. Output that could not be written anywhere else is.
    failure = out.failure if not out.broken_pipe else None
    if failure is not None or out.lost:
        reason = failure.strerror or str(failure) if failure is not None else "standard output is closed"
        err.write(f"adhoc-gc: error: cannot write the output: {reason}\n")
        err.flush()
        return code if code != EXIT_OK else EXIT_FAILURE
    return code


def _on_sigterm_raise_terminated():
    """The previous SIGTERM handler, or None where none can be set (not the main thread)."""

    def terminated(signum, frame):
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, terminated)
    except ValueError:
        return None


def _main(argv: Sequence[str] | None) -> int:
    try:
        arguments = list(sys.argv[1:] if argv is None else argv)
        for argument in arguments:
            try:
                argument.encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigError(f"an argument is not valid UTF-8: {argument!r}") from None
        args = build_parser().parse_args(arguments)
        return COMMANDS[args.command](args)
    except AdhocGcError as exc:
        print(f"adhoc-gc: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except psycopg.Error as exc:
        print(f"adhoc-gc: error: database error: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt as exc:
        print(f"adhoc-gc: error: {exc if isinstance(exc, Terminated) else 'interrupted'}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - a bug of ours: still one line, traceback on request
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        print(f"adhoc-gc: error: internal error: {type(exc).__name__}: {one_line(exc)} "
              f"(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


def _setup(args) -> tuple[Mapping, str, dict[str, str]]:
    mapping = load_mapping(args.config)
    return mapping, resolve_dsn(mapping, args.dsn), render_queries(mapping)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return str(value)


# --- commands --------------------------------------------------------------------------

def cmd_deploy(args) -> int:
    from .deploy import deploy

    mapping, dsn, _ = _setup(args)
    result = deploy(dsn, mapping)
    if args.json:
        _print_json(result)
    else:
        applied = ", ".join(result["migrations"]) or "none pending"
        print(f"deployed adhoc-gc {__version__} into schema {mapping.schema!r} "
              f"(mapping {mapping.source}, fingerprint {mapping.fingerprint()})")
        print(f"  migrations applied: {applied}")
        print(f"  views and functions re-created: {len(result['objects'])}")
    return EXIT_OK


def cmd_render(args) -> int:
    from .deploy import render_deploy_sql

    mapping = load_mapping(args.config)
    sys.stdout.write(render_deploy_sql(mapping, objects_only=args.objects_only))
    return EXIT_OK


def cmd_plan(args) -> int:
    mapping, dsn, queries = _setup(args)
    with connect(dsn) as conn:
        from .purge import check_deployed

        check_deployed(conn, mapping, queries)
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            total, eligible, held = conn.execute(queries["plan_summary"]).fetchone()
            reasons = conn.execute(queries["plan_blockers"]).fetchall()
            sample = conn.execute(queries["plan_sample"], {"limit": max(args.sample, 0)}).fetchall()
    plan = {
        "adhoc_customers": total,
        "eligible": eligible,
        "held": held,
        "held_by": {reason: count for reason, count in reasons},
        "sample": [
            {"customer_id": r[0], "last_activity_at": r[1], "location_ids": r[2], "contact_ids": r[3]}
            for r in sample
        ],
    }
    if args.json:
        _print_json(plan)
        return EXIT_OK
    print(f"ad-hoc customers: {total}")
    print(f"  eligible now:   {eligible}")
    print(f"  held:           {held}")
    for reason, count in reasons:
        print(f"    {reason:<24} {count}")
    if sample:
        print(f"first {len(sample)} candidates:")
        for item in plan["sample"]:
            print(f"  customer {item['customer_id']}: last activity {_fmt(item['last_activity_at'])}, "
                  f"locations {','.join(item['location_ids']) or '-'}, contacts {','.join(item['contact_ids']) or '-'}")
    return EXIT_OK


def cmd_purge(args) -> int:
    mapping, dsn, queries = _setup(args)
    options = PurgeOptions(
        batch_size=args.batch_size,
        max_batches=args.max_batches,
        max_runtime=args.max_runtime,
        sleep=args.sleep,
        archive=not args.no_archive,
        force=args.force,
        target_batch_seconds=args.target_batch_seconds,
    )
    # --json is for scripts: no progress unless --log-format asks for it.
    reporter = choose_progress(args.quiet or (args.json and args.log_format is None), args.log_format)
    with connect(dsn) as conn:
        if reporter == "terminal":
            # The ETA needs the number of candidates: counted only for a person watching.
            total = conn.execute(queries["count_candidates"]).fetchone()[0]
            conn.commit()
            reporter = TerminalLine(total)
        try:
            progress = run_purge(conn, mapping, queries, options, on_batch=reporter,
                                 on_start=reporter.started if reporter else None)
        except (AdhocGcError, KeyboardInterrupt) as exc:
            # A run that ended otherwise: said as a result too (the error line follows).
            status = getattr(exc, "run_status", None)
            if status:
                ended = getattr(exc, "progress", None)  # a started run: its status and error recorded
                if ended is None:  # skipped or refused before it started
                    ended = PurgeProgress(run_id=exc.run_id, status=status, error=str(exc))
                if isinstance(reporter, LogLines) and reporter.json:  # text logs have the error line
                    reporter.finished(ended)
                if args.json:
                    _print_json(_purge_result(ended))
            raise
        if reporter:
            reporter.finished(progress)
    if args.json:
        _print_json(_purge_result(progress))
    elif not args.quiet:
        print(f"run {progress.run_id} {progress.status}: {progress.customers} customers, "
              f"{progress.locations} locations, {progress.contacts} contacts deleted "
              f"in {progress.batches} batches ({progress.elapsed:.1f}s)")
    return EXIT_OK


def _purge_result(progress: PurgeProgress) -> dict:
    return {
        "run_id": progress.run_id, "status": progress.status, "batches": progress.batches,
        "customers_deleted": progress.customers, "locations_deleted": progress.locations,
        "contacts_deleted": progress.contacts, "seconds": round(progress.elapsed, 3),
        "batch_seconds": progress.batch_stats(),
        "batch_retries": progress.retries, "throttled_seconds": progress.throttled_seconds,
        "error": progress.error,
    }


def cmd_runs(args) -> int:
    mapping, dsn, queries = _setup(args)
    with connect(dsn) as conn:
        try:
            runs = fetch_runs(conn, queries, args.limit)
        except psycopg.errors.UndefinedTable:
            raise ConfigError(f"adhoc-gc is not deployed in schema {mapping.schema!r}: run `adhoc-gc deploy` first") from None
    if args.json:
        _print_json(runs)
        return EXIT_OK
    if not runs:
        print("no runs yet")
        return EXIT_OK
    print(f"{'id':>5}  {'started':<19}  {'status':<9}  {'trigger':<8}  {'batches':>7}  {'customers':>9}  "
          f"{'locations':>9}  {'contacts':>8}  {'retries':>7}  {'throttled':>9}  error")
    for r in runs:
        print(f"{r['id']:>5}  {_fmt(r['started_at']):<19}  {r['status']:<9}  {r['trigger']:<8}  {r['batches']:>7}  "
              f"{r['customers_deleted']:>9}  {r['locations_deleted']:>9}  {r['contacts_deleted']:>8}  "
              f"{r['batch_retries']:>7}  {r['throttled_seconds']:>8.0f}s  {r['error'] or ''}")
    return EXIT_OK


def cmd_explain(args) -> int:
    mapping, dsn, queries = _setup(args)
    key = args.customer_key
    with connect(dsn) as conn:
        from .purge import check_deployed

        check_deployed(conn, mapping, queries)
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION READ ONLY")
                customer = conn.execute(queries["explain_customer"], {
                    "customer_id": key, "adhoc_values": list(mapping.customer.adhoc_values or []),
                }).fetchone()
                verdict = conn.execute(queries["explain_eligibility"], {
                    "customer_id": key, "inactivity": mapping.policy.inactivity}).fetchone()
        except psycopg.errors.DataError:
            raise ConfigError(f"{key!r} is not a valid key for {mapping.customer.table}") from None
    if customer is None:
        raise ConfigError(f"customer {key!r} not found in {mapping.customer.table}")
    report = _explain_report(mapping, key, customer, verdict)
    if args.json:
        _print_json(report)
        return EXIT_OK
    print(f"customer {key}: {'ELIGIBLE now' if report['eligible'] else 'not eligible'}")
    for rule in report["rules"]:
        mark = "ok  " if rule["passes"] else "HOLD"
        print(f"  [{mark}] {rule['rule']}: {rule['detail']}")
    if report["eligible_at"] and not report["eligible"]:
        print(f"  becomes eligible at {_fmt(report['eligible_at'])} if nothing changes")
    elif not report["eligible"] and report["adhoc"]:
        if report.get("customer_activity_missing"):
            print("  will not become eligible while the customer row has no activity value")
        else:
            print("  will not become eligible while a blocker holds it")
    return EXIT_OK


def _explain_report(mapping: Mapping, key: str, customer, verdict) -> dict:
    _, is_adhoc, adhoc_value = customer
    policy = mapping.policy
    rules = [{
        "rule": "created ad hoc",
        "passes": bool(is_adhoc),
        "detail": f"{mapping.customer.adhoc} = {'NULL' if adhoc_value is None else adhoc_value}",
    }]
    report: dict[str, Any] = {"customer_id": key, "adhoc": bool(is_adhoc), "eligible": False, "eligible_at": None,
                              "rules": rules}
    if verdict is None:  # not ad hoc: the view has no row for it
        rules[0]["detail"] += " (customers created manually, by API or by import are never collected)"
        return report
    (eligible, eligible_at, last_activity, last_login, blocked_by, location_ids, contact_ids, now,
     inactive_long_enough) = verdict
    # 'activity' while the stack has been inactive long enough: the customer row's own
    # activity columns are all NULL, and nothing tells its age.
    activity_missing = "activity" in blocked_by and inactive_long_enough
    report.update(eligible=eligible, eligible_at=eligible_at, last_activity_at=last_activity,
                  last_login_at=last_login, blocked_by=blocked_by, location_ids=location_ids,
                  contact_ids=contact_ids, customer_activity_missing=activity_missing)
    detail = f"last activity {_fmt(last_activity)}"
    if activity_missing or last_activity is None:
        columns = ", ".join(mapping.customer.activity)
        detail = (f"the customer's own activity ({columns}) is NULL, so nothing tells its age: never collected"
                  + ("" if last_activity is None else f" (last activity in its stack {_fmt(last_activity)})"))
    rules.append({
        "rule": f"inactive for {policy.inactivity}",
        "passes": "activity" not in blocked_by,
        "detail": detail,
    })
    if policy.login_rule and mapping.contact.last_login:
        rules.append({
            "rule": f"no login within {policy.login_window}",
            "passes": "login" not in blocked_by,
            "detail": f"last login {_fmt(last_login) if last_login else 'never'}",
        })
    for blocker in mapping.blockers:
        rules.append({
            "rule": f"no {blocker.name} ({blocker.table}.{blocker.column} -> {blocker.references})",
            "passes": blocker.name not in blocked_by,
            "detail": "found" if blocker.name in blocked_by else "none",
        })
    return report


def _fmt(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "-" if value is None else str(value)


def cmd_restore(args) -> int:
    if args.run is None and args.customer is None:
        raise ConfigError("restore needs --run RUN_ID or --customer CUSTOMER_KEY (or both)")
    mapping, dsn, queries = _setup(args)
    with connect(dsn) as conn:
        from .purge import check_deployed

        check_deployed(conn, mapping, queries)
        try:
            with conn.transaction():
                stacks, customers, locations, contacts, owned = conn.execute(
                    queries["restore"], {"run_id": args.run, "customer_id": args.customer}).fetchone()
        except psycopg.errors.NoDataFound as exc:
            raise ConfigError(one_line(exc).removeprefix("adhoc-gc: ")) from None
        except psycopg.errors.UniqueViolation as exc:
            raise RunFailed(one_line(exc).removeprefix("adhoc-gc: ")) from None
    result = {"stacks": stacks, "customers": customers, "locations": locations, "contacts": contacts,
              "owned_rows": owned}
    if args.json:
        _print_json(result)
    else:
        print(f"restored {stacks} stacks: {customers} customers, {locations} locations, {contacts} contacts, "
              f"{owned} owned rows")
        print("note: restored stacks that still pass the rules are deleted again by the next purge; "
              "fix the mapping or policy first")
    return EXIT_OK


def cmd_schedule(args) -> int:
    from .schedule import schedule

    mapping, dsn, queries = _setup(args)
    result = schedule(dsn, mapping, queries, cron=args.cron, batch_size=args.batch_size,
                      max_runtime_seconds=args.max_runtime, job_name=args.job_name,
                      prune_history=args.prune_cron_history)
    if args.json:
        _print_json(result)
        return EXIT_OK
    print(f"pg_cron job {result['job_name']!r} (id {result['jobid']}) runs {result['schedule']!r} (UTC) "
          f"in database {result['database']!r}:")
    print(f"  {result['command']}")
    if result["prune_job_id"]:
        print(f"  and job {result['job_name'] + ':prune-history'!r} prunes cron.job_run_details daily")
    return EXIT_OK


def cmd_unschedule(args) -> int:
    from .schedule import unschedule

    mapping, dsn, queries = _setup(args)
    removed = unschedule(dsn, mapping, queries, args.job_name)
    print("removed pg_cron job(s): " + ", ".join(removed) if removed else "no such pg_cron job: nothing to remove")
    return EXIT_OK


def cmd_status(args) -> int:
    from .schedule import status

    mapping, dsn, queries = _setup(args)
    result = status(dsn, mapping, queries, args.job_name, limit=args.limit)
    if args.json:
        _print_json(result)
        return EXIT_OK
    if result["scheduled"]:
        state = "active" if result["active"] else "INACTIVE"
        print(f"pg_cron job {result['job_name']!r} (id {result['jobid']}, {state}) in database {result['database']!r}")
        print(f"  schedule: {result['schedule']} (UTC); next run: {_fmt(result['next_run_utc'])} UTC")
        print(f"  command:  {result['command']}")
        print("  last pg_cron runs:")
        for r in result["cron_runs"] or []:
            print(f"    {_fmt(r['start_time'])}  {r['status']:<10} {r['return_message'] or ''}")
        if not result["cron_runs"]:
            print("    none yet")
    elif result["cron_unavailable"]:
        print(f"no pg_cron job: {result['cron_unavailable']}")
    else:
        print(f"no pg_cron job {result['job_name']!r} (cron database {result['cron_database']!r})")
    print("last purge runs:")
    for r in result["runs"]:
        print(f"  {r['id']:>5}  {_fmt(r['started_at'])}  {r['status']:<9}  {r['trigger']:<8}  "
              f"{r['customers_deleted']} customers  {r['error'] or ''}")
    if not result["runs"]:
        print("  none yet")
    return EXIT_OK


def cmd_metrics(args) -> int:
    from .metrics import collect, exposition

    mapping, dsn, queries = _setup(args)
    sys.stdout.write(exposition(collect(dsn, mapping, queries, candidates=not args.no_candidates)))
    return EXIT_OK


def cmd_uninstall(args) -> int:
    from .uninstall import uninstall

    mapping, dsn, queries = _setup(args)
    result = uninstall(dsn, mapping, queries, drop_data=args.drop_data, job_name=args.job_name)
    if args.json:
        _print_json(result)
        return EXIT_OK
    schema, database = result["schema"], result["database"]
    dropped = result["dropped"]
    if not result["installed"]:
        print(f"adhoc-gc is not installed in schema {schema!r} of database {database!r}: nothing to drop")
    else:
        print(f"uninstalled adhoc-gc from schema {schema!r} of database {database!r}:")
    if result["pg_cron"] != "loaded":
        print(f"  pg_cron {result['pg_cron']}: no job to remove")
    elif result["cron_jobs_removed"]:
        print("  removed pg_cron job(s): " + ", ".join(result["cron_jobs_removed"]))
    else:
        print("  no pg_cron job to remove")
    if result["installed"]:
        print("  dropped " + ", ".join(f"{len(dropped[kind])} {kind[:-1] if len(dropped[kind]) == 1 else kind}"
                                       for kind in ("views", "procedures", "functions")))
    if result["tables_dropped"]:
        print("  dropped tables: " + ", ".join(result["tables_dropped"]))
    if result["tables_kept"]:
        rows = result["rows_kept"]
        counts = (f" ({rows['runs']} run{'' if rows['runs'] == 1 else 's'}, {rows['purged']} archived "
                  f"stack{'' if rows['purged'] == 1 else 's'})" if rows else "")
        print(f"  kept tables{counts}: " + ", ".join(result["tables_kept"]))
        print("  `adhoc-gc deploy` installs again on top of them; `adhoc-gc uninstall --drop-data` drops them")
    if result["schema_dropped"]:
        print(f"  dropped schema {schema!r}")
    elif result["schema_kept_because"]:
        print(f"  kept schema {schema!r}: {result['schema_kept_because']}")
    return EXIT_OK


def cmd_doctor(args) -> int:
    from .doctor import format_text, problem_count, run_doctor
    from .errors import DoctorFoundProblems

    mapping, dsn, queries = _setup(args)
    findings = run_doctor(dsn, mapping, queries)
    if args.json:
        _print_json([f.as_dict() for f in findings])
    else:
        print("\n".join(format_text(findings)))
    problems = problem_count(findings)
    if problems:
        sys.stdout.flush()
        raise DoctorFoundProblems(f"doctor found {problems} problem{'s' if problems > 1 else ''}, each printed "
                                  "with its fix")
    return EXIT_OK


def cmd_report(args) -> int:
    from .report import build_report, format_csv, format_html, format_text

    if args.html is not None and not args.html.strip():
        raise ConfigError("--html needs a file name, or - for stdout")
    mapping, dsn, queries = _setup(args)
    report = build_report(dsn, mapping, queries)
    if args.json:
        _print_json(report)
    elif args.csv:
        sys.stdout.write(format_csv(report))
    elif args.html == "-":
        sys.stdout.write(format_html(report))
    elif args.html is not None:
        try:
            with open(args.html, "w", encoding="utf-8") as page:
                page.write(format_html(report))
        except OSError as exc:
            raise RunFailed(f"cannot write {args.html}: {exc.strerror or exc}") from None
        print(f"report written to {args.html}")
    else:
        print(format_text(report))
    return EXIT_OK


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(customers=args.customers, keep=args.keep)


COMMANDS = {
    "deploy": cmd_deploy,
    "render": cmd_render,
    "plan": cmd_plan,
    "purge": cmd_purge,
    "runs": cmd_runs,
    "explain": cmd_explain,
    "restore": cmd_restore,
    "schedule": cmd_schedule,
    "unschedule": cmd_unschedule,
    "status": cmd_status,
    "metrics": cmd_metrics,
    "uninstall": cmd_uninstall,
    "doctor": cmd_doctor,
    "report": cmd_report,
    "demo": cmd_demo,
}
