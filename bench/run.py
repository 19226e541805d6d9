#!/usr/bin/env python3
"""adhoc-gc benchmark: the purge against a naive loop and a set-based floor, on generated data.

    PYTHONPATH=runner python bench/run.py --customers 100000
    PYTHONPATH=runner python bench/run.py --customers 1000000
    PYTHONPATH=runner python bench/run.py --customers 100000 --app-load   # + pgbench under a purge

One run: start a throwaway PostgreSQL 15 tuned for bulk work, build the reference schema with
bench/generate.sql (N customers) into a database, deploy adhoc-gc into it, VACUUM (FREEZE,
ANALYZE) it, and use it as a TEMPLATE. Every measurement then runs on its own fresh copy
(CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY), so each starts from the same rows:

  purge        `adhoc-gc purge --batch-size B --json` as a subprocess (archive on)
  purge-noarch the same with --no-archive
  naive        a psycopg loop, one transaction per candidate: rule queries then 3 DELETEs
               (timed on the first --naive-sample candidates, extrapolated per stack)
  floor        plain DELETEs by primary key of exactly the candidates' rows, B stacks per
               transaction, ids precomputed before timing, no checks, no archive
  views        SELECT count(*) FROM adhoc_gc.candidates / eligibility (best of 2), with
               EXPLAIN (ANALYZE, BUFFERS) saved to bench/results/explain-<view>-<size>.txt
  batch        one purge_batch in the middle of the key range under auto_explain (nested
               statements, ANALYZE, BUFFERS), saved to bench/results/explain-batch-<size>.txt,
               and pg_stat_statements' per-statement totals over the whole archive-on purge

Results: a table on stdout and bench/results/<size>-<date>.json. Nothing here is part of
the test suite. The server runs with fsync = off, synchronous_commit = off and
full_page_writes = off (a benchmark of CPU and I/O through the page cache, not of the disk).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RUNNER = ROOT / "runner"
if str(RUNNER) not in sys.path:
    sys.path.insert(0, str(RUNNER))  # this checkout's adhoc_gc, whatever is installed

from adhoc_gc.deploy import deploy  # noqa: E402
from adhoc_gc.mapping import parse_mapping  # noqa: E402
from adhoc_gc.throwaway import ThrowawayPostgres  # noqa: E402

RESULTS = BENCH / "results"
TEMPLATE = "bench_template"

# A server tuned for bulk work on this machine (2 cores, 23 GB). ThrowawayPostgres adds
# fsync = off, synchronous_commit = off, full_page_writes = off.
SERVER_SETTINGS = {
    "shared_buffers": "2GB",
    "maintenance_work_mem": "1GB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.max": "1000",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def size_label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def rss_mb(kilobytes: int) -> float:
    return round(kilobytes / 1024, 1)  # Linux ru_maxrss is in KiB


class Bench:
    def __init__(self, args):
        self.args = args
        self.label = size_label(args.customers)
        self.server: ThrowawayPostgres | None = None
        self.results: dict = {"customers": args.customers, "label": self.label, "seed": args.seed,
                              "batch_size": args.batch_size, "measurements": {}}
        self.clone_seconds: list[float] = []
        self.env = dict(os.environ, PYTHONPATH=str(RUNNER) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    # -- server and databases -------------------------------------------------------------

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.server.dsn(), autocommit=True)

    def clone(self, name: str) -> str:
        started = time.monotonic()
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}" STRATEGY FILE_COPY')
        self.clone_seconds.append(time.monotonic() - started)
        return self.server.dsn(name)

    def drop(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def build_template(self) -> None:
        args = self.args
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
        dsn = self.server.dsn(TEMPLATE)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute((ROOT / "sql" / "reference" / "app_schema.sql").read_text())
        log(f"generating {args.customers} customers (bench/generate.sql, seed {args.seed})")
        started = time.monotonic()
        out = subprocess.run(
            [str(self.server.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
             "-v", f"customers={int(args.customers)}", "-v", f"seed={int(args.seed)}",
             "-f", str(BENCH / "generate.sql"), dsn],
            capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"generate.sql failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        generate_seconds = time.monotonic() - started
        log(f"generated in {generate_seconds:.1f}s; deploying adhoc-gc")
        started = time.monotonic()
        deploy(dsn, parse_mapping({}, source="built-in defaults"))
        deploy_seconds = time.monotonic() - started
        started = time.monotonic()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM (FREEZE, ANALYZE)")
        vacuum_seconds = time.monotonic() - started
        with psycopg.connect(dsn, autocommit=True) as conn:
            rows = {t: conn.execute(f'SELECT count(*) FROM "public"."{t}"').fetchone()[0]
                    for t in ("customers", "locations", "contacts", "cases", "devices")}
            rows["adhoc_customers"] = conn.execute('SELECT count(*) FROM "public"."customers" WHERE "is_adhoc"').fetchone()[0]
            started = time.monotonic()
            candidates = conn.execute('SELECT count(*) FROM "adhoc_gc"."candidates"').fetchone()[0]
            held = dict(conn.execute(
                'SELECT reason, count(*) FROM "adhoc_gc"."eligibility", unnest(blocked_by) AS reason GROUP BY 1 ORDER BY 1'
            ).fetchall())
            stack_rows = conn.execute(
                'SELECT coalesce(sum(cardinality(location_ids)), 0), coalesce(sum(cardinality(contact_ids)), 0) '
                'FROM "adhoc_gc"."candidates"').fetchone()
            db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            version = conn.execute("SELECT version()").fetchone()[0]
            settings = dict(conn.execute(
                "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY(%s) ORDER BY 1",
                (["shared_buffers", "work_mem", "maintenance_work_mem", "max_wal_size", "checkpoint_timeout",
                  "fsync", "synchronous_commit", "full_page_writes", "wal_level", "autovacuum",
                  "max_parallel_workers_per_gather", "effective_cache_size", "random_page_cost", "jit"],)).fetchall())
        self.candidates = candidates
        self.candidate_rows = {"customers": candidates, "locations": int(stack_rows[0]), "contacts": int(stack_rows[1])}
        self.results["template"] = {
            "rows": rows, "eligible_stacks": candidates, "eligible_rows": self.candidate_rows,
            "held_by": held, "database_mb": round(db_bytes / 2**20, 1),
            "generate_seconds": round(generate_seconds, 1), "deploy_seconds": round(deploy_seconds, 2),
            "vacuum_freeze_analyze_seconds": round(vacuum_seconds, 1),
        }
        self.results["postgres"] = {"version": version, "settings": settings}
        log(f"template: {rows['customers']} customers ({rows['adhoc_customers']} ad hoc), {rows['locations']} locations, "
            f"{rows['contacts']} contacts, {rows['cases']} cases, {rows['devices']} devices, {db_bytes / 2**20:.0f} MB")
        log(f"eligible stacks (SELECT count(*) FROM adhoc_gc.candidates): {candidates} "
            f"({self.candidate_rows['locations']} locations, {self.candidate_rows['contacts']} contacts); held: {held}")

    # -- measurements ---------------------------------------------------------------------

    def purge_cli(self, archive: bool, run_no: int) -> dict:
        name = f"bench_purge_{'archive' if archive else 'noarchive'}_{run_no}"
        dsn = self.clone(name)
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")
            argv = [sys.executable, "-m", "adhoc_gc", "purge", "--batch-size", str(self.args.batch_size), "--json",
                    "--dsn", dsn]
            if not archive:
                argv.append("--no-archive")
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                started = time.monotonic()
                child = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=self.env,
                                         cwd=ROOT)
                # wait4 on this one child: its own peak RSS, not the max over every child so far.
                _, status, usage = os.wait4(child.pid, 0)
                child.returncode = os.waitstatus_to_exitcode(status)
                wall = time.monotonic() - started
                out.seek(0)
                err.seek(0)
                stdout, stderr = out.read().decode(), err.read().decode()
            if child.returncode != 0:
                raise SystemExit(f"adhoc-gc purge exited {child.returncode}: {stderr.strip()}")
            result = json.loads(stdout)
            with psycopg.connect(dsn, autocommit=True) as conn:
                left = conn.execute('SELECT count(*) FROM "adhoc_gc"."candidates"').fetchone()[0]
                archived = conn.execute('SELECT count(*) FROM "adhoc_gc"."purged"').fetchone()[0]
                top = conn.execute(
                    "SELECT calls, round(total_exec_time::numeric, 1), round((total_exec_time / calls)::numeric, 3), "
                    "       rows, regexp_replace(left(query, 160), '\\s+', ' ', 'g') "
                    "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "ORDER BY total_exec_time DESC LIMIT 12").fetchall()
            seconds = result["seconds"]
            rows = result["customers_deleted"] + result["locations_deleted"] + result["contacts_deleted"]
            return {
                "seconds": seconds, "wall_seconds": round(wall, 3),
                "customers_deleted": result["customers_deleted"], "locations_deleted": result["locations_deleted"],
                "contacts_deleted": result["contacts_deleted"], "batches": result["batches"],
                "stacks_per_s": round(result["customers_deleted"] / seconds, 1),
                "rows_per_s": round(rows / seconds, 1),
                "ms_per_stack": round(1000 * seconds / max(1, result["customers_deleted"]), 4),
                "batch_seconds": result["batch_seconds"],
                "runner_peak_rss_mb": rss_mb(usage.ru_maxrss),
                "candidates_left": left, "archived_stacks": archived,
                "statements": [{"calls": c, "total_ms": float(t), "mean_ms": float(m), "rows": r, "query": q}
                               for c, t, m, r, q in top],
            }
        finally:
            self.drop(name)

    def naive(self) -> dict:
        name = "bench_naive"
        dsn = self.clone(name)
        sample = self.args.naive_sample
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                started = time.monotonic()
                ids = [r[0] for r in conn.execute(
                    'SELECT customer_id FROM "adhoc_gc"."candidates" ORDER BY customer_id').fetchall()]
                fetch_seconds = time.monotonic() - started
                todo = ids[:sample]
                deleted = [0, 0, 0]
                skipped = 0
                started = time.monotonic()
                for cid in todo:
                    with conn.transaction():
                        cur = conn.cursor()
                        row = cur.execute(
                            "SELECT is_adhoc, greatest(created_at, updated_at), now() - interval '14 days', "
                            "       now() - interval '6 months' "
                            "FROM customers WHERE id = %s FOR UPDATE", (cid,)).fetchone()
                        if row is None:
                            skipped += 1
                            continue
                        adhoc, activity, inactive_before, login_before = row
                        locations = cur.execute(
                            "SELECT id, greatest(created_at, updated_at) FROM locations WHERE customer_id = %s FOR UPDATE",
                            (cid,)).fetchall()
                        location_ids = [r[0] for r in locations]
                        contacts = cur.execute(
                            "SELECT id, greatest(created_at, updated_at), last_login_at FROM contacts "
                            "WHERE location_id = ANY(%s) FOR UPDATE", (location_ids,)).fetchall()
                        contact_ids = [r[0] for r in contacts]
                        ok = adhoc and activity <= inactive_before
                        ok = ok and all(a <= inactive_before for _, a in locations)
                        ok = ok and all(a <= inactive_before and (login is None or login <= login_before)
                                        for _, a, login in contacts)
                        ok = ok and not cur.execute("SELECT EXISTS (SELECT 1 FROM cases WHERE location_id = ANY(%s))",
                                                    (location_ids,)).fetchone()[0]
                        ok = ok and not cur.execute("SELECT EXISTS (SELECT 1 FROM cases WHERE contact_id = ANY(%s))",
                                                    (contact_ids,)).fetchone()[0]
                        ok = ok and not cur.execute("SELECT EXISTS (SELECT 1 FROM devices WHERE location_id = ANY(%s))",
                                                    (location_ids,)).fetchone()[0]
                        if not ok:
                            skipped += 1
                            continue
                        deleted[2] += cur.execute("DELETE FROM contacts WHERE location_id = ANY(%s)", (location_ids,)).rowcount
                        deleted[1] += cur.execute("DELETE FROM locations WHERE customer_id = %s", (cid,)).rowcount
                        deleted[0] += cur.execute("DELETE FROM customers WHERE id = %s", (cid,)).rowcount
                seconds = time.monotonic() - started
            per_stack = seconds / max(1, deleted[0])
            return {
                "sample": len(todo), "customers_deleted": deleted[0], "locations_deleted": deleted[1],
                "contacts_deleted": deleted[2], "skipped": skipped,
                "sample_seconds": round(seconds, 3), "fetch_candidates_seconds": round(fetch_seconds, 3),
                "ms_per_stack": round(1000 * per_stack, 4),
                "stacks_per_s": round(deleted[0] / seconds, 1),
                "rows_per_s": round(sum(deleted) / seconds, 1),
                "extrapolated_seconds": round(fetch_seconds + per_stack * self.candidates, 1),
                "note": f"timed on the first {len(todo)} of {self.candidates} candidates (key order), "
                        "extrapolated per stack to all of them (plus the one candidates fetch)",
            }
        finally:
            self.drop(name)

    def floor(self, run_no: int) -> dict:
        name = f"bench_floor_{run_no}"
        dsn = self.clone(name)
        batch_size = self.args.batch_size
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                # Untimed: exactly the candidates' rows, grouped into batches of B stacks.
                rows = conn.execute(
                    'WITH "c" AS (SELECT customer_id, location_ids, contact_ids, '
                    '             (row_number() OVER (ORDER BY customer_id) - 1) / %s AS batch '
                    '             FROM "adhoc_gc"."candidates") '
                    "SELECT batch, array_agg(customer_id ORDER BY customer_id), "
                    "       (SELECT array_agg(x) FROM \"c\" AS c2, unnest(c2.location_ids) x WHERE c2.batch = c.batch), "
                    "       (SELECT array_agg(x) FROM \"c\" AS c2, unnest(c2.contact_ids) x WHERE c2.batch = c.batch) "
                    'FROM "c" GROUP BY batch ORDER BY batch', (batch_size,)).fetchall()
                batches = [(r[1], r[2] or [], r[3] or []) for r in rows]
                conn.execute("CHECKPOINT")
                durations = []
                deleted = [0, 0, 0]
                started = time.monotonic()
                for customers, locations, contacts in batches:
                    batch_started = time.monotonic()
                    with conn.transaction():
                        deleted[2] += conn.execute("DELETE FROM contacts WHERE id = ANY(%s)", (contacts,)).rowcount
                        deleted[1] += conn.execute("DELETE FROM locations WHERE id = ANY(%s)", (locations,)).rowcount
                        deleted[0] += conn.execute("DELETE FROM customers WHERE id = ANY(%s)", (customers,)).rowcount
                    durations.append(time.monotonic() - batch_started)
                seconds = time.monotonic() - started
            ordered = sorted(durations) or [0.0]
            return {
                "seconds": round(seconds, 3), "batches": len(batches),
                "customers_deleted": deleted[0], "locations_deleted": deleted[1], "contacts_deleted": deleted[2],
                "stacks_per_s": round(deleted[0] / seconds, 1), "rows_per_s": round(sum(deleted) / seconds, 1),
                "ms_per_stack": round(1000 * seconds / max(1, deleted[0]), 4),
                "batch_seconds": {"p50": round(ordered[int(0.5 * (len(ordered) - 1))], 4),
                                  "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 4),
                                  "max": round(ordered[-1], 4)},
            }
        finally:
            self.drop(name)

    def views(self) -> dict:
        name = "bench_views"
        dsn = self.clone(name)
        out: dict = {}
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for view in ("candidates", "eligibility"):
                    times = []
                    for _ in range(2):
                        started = time.monotonic()
                        count = conn.execute(f'SELECT count(*) FROM "adhoc_gc"."{view}"').fetchone()[0]
                        times.append(time.monotonic() - started)
                    plan = "\n".join(r[0] for r in conn.execute(
                        f'EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM "adhoc_gc"."{view}"').fetchall())
                    path = RESULTS / f"explain-{view}-{self.label}.txt"
                    path.write_text(f"-- {self.label} customers; SELECT count(*) FROM adhoc_gc.{view} = {count}\n{plan}\n")
                    out[view] = {"rows": count, "seconds_best_of_2": round(min(times), 3),
                                 "seconds_runs": [round(t, 3) for t in times], "explain": str(path.relative_to(ROOT))}
        finally:
            self.drop(name)
        return out

    def batch_anatomy(self) -> dict:
        """One purge_batch in the middle of the key range, under auto_explain."""
        name = "bench_batch"
        dsn = self.clone(name)
        notes: list[str] = []
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                ids = [r[0] for r in conn.execute(
                    'SELECT customer_id FROM "adhoc_gc"."candidates" ORDER BY customer_id').fetchall()]
                after = str(ids[len(ids) // 2])
                run_id = conn.execute(
                    "SELECT \"adhoc_gc\".\"_start_run\"('bench', %s, NULL, NULL, true)", (self.args.batch_size,)
                ).fetchone()[0]
                # A plain batch first (warms the caches and the plan cache), timed.
                timings = []
                for _ in range(3):
                    started = time.monotonic()
                    with conn.transaction():
                        row = conn.execute('SELECT * FROM "adhoc_gc"."purge_batch"(%s, %s, %s, true)',
                                           (run_id, after, self.args.batch_size)).fetchone()
                    timings.append(time.monotonic() - started)
                    after = row[0]
                conn.add_notice_handler(lambda diag: notes.append(diag.message_primary or ""))
                conn.execute("LOAD 'auto_explain'")
                for setting, value in (("log_min_duration", "0"), ("log_analyze", "on"), ("log_buffers", "on"),
                                       ("log_nested_statements", "on"), ("log_timing", "on"),
                                       ("log_level", "notice")):
                    conn.execute(f"SET auto_explain.{setting} = '{value}'")
                started = time.monotonic()
                with conn.transaction():
                    row = conn.execute('SELECT * FROM "adhoc_gc"."purge_batch"(%s, %s, %s, true)',
                                       (run_id, after, self.args.batch_size)).fetchone()
                explained_seconds = time.monotonic() - started
            durations = []
            for note in notes:
                match = re.search(r"duration: ([\d.]+) ms", note)
                first = next((line.strip() for line in note.splitlines()[2:] if line.strip()), "")
                durations.append({"ms": float(match.group(1)) if match else None, "statement": first[:200]})
            path = RESULTS / f"explain-batch-{self.label}.txt"
            path.write_text(
                f"-- {self.label} customers: one purge_batch(run, after_key, {self.args.batch_size}, archive => true) in the\n"
                f"-- middle of the key range, after 3 warm batches ({', '.join(f'{t * 1000:.0f} ms' for t in timings)}),\n"
                f"-- under auto_explain (log_analyze, log_buffers, log_nested_statements); timing overhead included:\n"
                f"-- {explained_seconds * 1000:.0f} ms; deleted {row[3]} customers, {row[4]} locations, {row[5]} contacts\n\n"
                + "\n\n".join(notes) + "\n")
            return {"warm_batch_ms": [round(t * 1000, 1) for t in timings],
                    "explained_batch_ms": round(explained_seconds * 1000, 1),
                    "deleted": {"customers": row[3], "locations": row[4], "contacts": row[5]},
                    "statements": durations, "explain": str(path.relative_to(ROOT))}
        finally:
            self.drop(name)

    def app_load(self) -> dict:
        """pgbench (bench/pgbench_app.sql) on a clone: alone, then during a purge."""
        seconds = self.args.app_seconds
        name = "bench_app"
        dsn = self.clone(name)
        pgbench = self.server.bindir / "pgbench"
        out: dict = {"seconds": seconds, "clients": self.args.app_clients}
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                max_customer, max_location = conn.execute(
                    'SELECT (SELECT max(id) FROM customers), (SELECT max(id) FROM locations)').fetchone()

            def run_pgbench(tag: str) -> tuple[subprocess.Popen, Path]:
                logdir = Path(tempfile.mkdtemp(prefix=f"pgbench-{tag}-"))
                os.chmod(logdir, 0o777)
                argv = [str(pgbench), "-n", "-f", str(BENCH / "pgbench_app.sql"),
                        "-c", str(self.args.app_clients), "-j", str(self.args.app_clients),
                        "-T", str(seconds), "-D", f"max_customer={max_customer}",
                        "-D", f"max_location={max_location}", "--log", "--log-prefix", str(logdir / "log"),
                        "-P", "5", "-r", "--failures-detailed", "--max-tries", "1",
                        "-h", self.server.host, "-p", str(self.server.port), "-U", "postgres", name]
                return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        cwd=logdir), logdir

            def summarize(proc: subprocess.Popen, logdir: Path) -> dict:
                stdout, stderr = proc.communicate()
                latencies, failed = [], 0
                for path in logdir.glob("log*"):
                    for line in path.read_text().splitlines():
                        parts = line.split()
                        if len(parts) >= 3:
                            if parts[2] == "failed":
                                failed += 1
                            else:
                                latencies.append(int(parts[2]))
                shutil.rmtree(logdir, ignore_errors=True)
                tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", stdout)
                errors = re.search(r"number of failed transactions: (\d+)", stdout)
                latencies.sort()
                p99 = latencies[int(0.99 * (len(latencies) - 1))] / 1000 if latencies else None
                return {"tps": float(tps.group(1)) if tps else None, "transactions": len(latencies),
                        "failed": int(errors.group(1)) if errors else failed,
                        "latency_p50_ms": latencies[len(latencies) // 2] / 1000 if latencies else None,
                        "latency_p99_ms": p99, "returncode": proc.returncode,
                        "stderr": stderr.strip()[-500:]}

            log(f"app load: pgbench alone for {seconds}s")
            proc, logdir = run_pgbench("alone")
            out["alone"] = summarize(proc, logdir)
            log(f"app load: pgbench for {seconds}s during adhoc-gc purge")
            proc, logdir = run_pgbench("purge")
            time.sleep(2)
            argv = [sys.executable, "-m", "adhoc_gc", "purge", "--batch-size", str(self.args.batch_size), "--json",
                    "--max-runtime", f"{max(1, seconds - 4)}s", "--dsn", dsn]
            purge = subprocess.run(argv, capture_output=True, text=True, env=self.env, cwd=ROOT)
            out["during_purge"] = summarize(proc, logdir)
            if purge.returncode != 0:
                out["purge"] = {"error": purge.stderr.strip()}
            else:
                result = json.loads(purge.stdout)
                out["purge"] = {k: result[k] for k in ("customers_deleted", "seconds", "batches", "batch_seconds")}
            alone, during = out["alone"]["tps"], out["during_purge"]["tps"]
            if alone and during:
                out["tps_drop_pct"] = round(100 * (alone - during) / alone, 1)
        finally:
            self.drop(name)
        return out

    # -- the whole run --------------------------------------------------------------------

    def run(self) -> dict:
        args = self.args
        RESULTS.mkdir(exist_ok=True)
        started = time.monotonic()
        self.results["machine"] = machine_info()
        self.results["started_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.results["commit"] = git_commit()
        log(f"starting a throwaway PostgreSQL ({', '.join(f'{k}={v}' for k, v in SERVER_SETTINGS.items())}; "
            "fsync, synchronous_commit, full_page_writes off)")
        self.server = ThrowawayPostgres(settings=SERVER_SETTINGS).start()
        try:
            with self.admin() as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            with psycopg.connect(self.server.dsn("template1"), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            self.build_template()
            m = self.results["measurements"]
            if not args.skip_purge:
                for archive, key in ((True, "purge_archive"), (False, "purge_no_archive")):
                    runs = []
                    for run_no in range(args.repeat):
                        log(f"{key}: adhoc-gc purge --batch-size {args.batch_size}{'' if archive else ' --no-archive'} "
                            f"--json on a fresh clone (run {run_no + 1}/{args.repeat})")
                        runs.append(self.purge_cli(archive, run_no))
                        log(f"  {runs[-1]['customers_deleted']} stacks in {runs[-1]['seconds']}s "
                            f"({runs[-1]['stacks_per_s']}/s), runner peak RSS {runs[-1]['runner_peak_rss_mb']} MB")
                    m[key] = best(runs)
                runs = []
                for run_no in range(args.repeat):
                    log(f"floor: plain DELETEs by key, {args.batch_size} stacks per transaction (run {run_no + 1}/{args.repeat})")
                    runs.append(self.floor(run_no))
                    log(f"  {runs[-1]['customers_deleted']} stacks in {runs[-1]['seconds']}s ({runs[-1]['stacks_per_s']}/s)")
                m["floor"] = best(runs)
            if not args.skip_naive:
                log(f"naive: per-customer transactions on the first {args.naive_sample} candidates")
                m["naive"] = self.naive()
                log(f"  {m['naive']['customers_deleted']} stacks in {m['naive']['sample_seconds']}s "
                    f"({m['naive']['ms_per_stack']} ms/stack)")
            log("views: count(*) on candidates and eligibility, EXPLAIN (ANALYZE, BUFFERS)")
            m["views"] = self.views()
            log("batch: one purge_batch under auto_explain")
            m["batch_anatomy"] = self.batch_anatomy()
            if args.app_load:
                m["app_load"] = self.app_load()
        finally:
            self.server.stop()
        self.results["clone_seconds"] = {"mean": round(statistics.mean(self.clone_seconds), 2),
                                         "max": round(max(self.clone_seconds), 2)} if self.clone_seconds else None
        self.results["bench_peak_rss_mb"] = rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        self.results["total_seconds"] = round(time.monotonic() - started, 1)
        self.results["ratios"] = ratios(self.results["measurements"])
        self.results["timing_policy"] = (
            f"each timed step runs once per fresh clone (--repeat {args.repeat}: the best of the runs is reported, all "
            "are kept under 'runs'); the view counts are best of 2 on one clone; naive is timed on a sample")
        return self.results


def best(runs: list[dict]) -> dict:
    chosen = dict(min(runs, key=lambda r: r["seconds"]))
    if len(runs) > 1:
        chosen["runs"] = [r["seconds"] for r in runs]
    return chosen


def ratios(m: dict) -> dict:
    out: dict = {}
    floor = m.get("floor")
    if floor:
        for key in ("purge_archive", "purge_no_archive"):
            if key in m:
                out[f"{key}_over_floor"] = round(m[key]["seconds"] / floor["seconds"], 2)
    if "naive" in m:
        for key in ("purge_archive", "purge_no_archive"):
            if key in m:
                out[f"naive_over_{key}_per_stack"] = round(m["naive"]["ms_per_stack"] / m[key]["ms_per_stack"], 1)
    return out


def machine_info() -> dict:
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "memory_gb": round(mem_kb / 2**20, 1), "cpu": cpu,
            "kernel": platform.release(), "python": platform.python_version(), "psycopg": psycopg.__version__}


def git_commit() -> str | None:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "sql", "runner", "migrations"],
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+uncommitted changes in sql/runner/migrations" if dirty else "")


def print_table(r: dict) -> None:
    m = r["measurements"]
    label = r["label"]
    print()
    print(f"adhoc-gc benchmark, {r['customers']} customers ({label}), batch size {r['batch_size']}: "
          f"{r['template']['eligible_stacks']} eligible stacks, "
          f"{sum(r['template']['eligible_rows'].values())} rows to delete")
    print(f"machine: {r['machine']['nproc']} cores, {r['machine']['memory_gb']} GB, {r['machine']['cpu']}; "
          f"{r['postgres']['version'].split(' on ')[0]}")
    header = f"{'measurement':<28}{'seconds':>10}{'stacks/s':>11}{'rows/s':>11}{'ms/stack':>10}  notes"
    print(header)
    print("-" * len(header))

    def row(name, d, seconds_key="seconds", notes=""):
        print(f"{name:<28}{d[seconds_key]:>10.2f}{d['stacks_per_s']:>11.0f}{d['rows_per_s']:>11.0f}"
              f"{d['ms_per_stack']:>10.3f}  {notes}")

    for key, name in (("purge_archive", "purge (archive on)"), ("purge_no_archive", "purge --no-archive")):
        if key in m:
            d = m[key]
            b = d["batch_seconds"]
            row(name, d, notes=f"batches p50/p95/max {b['p50']}/{b['p95']}/{b['max']} s; runner RSS "
                               f"{d['runner_peak_rss_mb']} MB; {d['candidates_left']} candidates left")
    if "floor" in m:
        d = m["floor"]
        b = d["batch_seconds"]
        row("floor (plain DELETEs)", d, notes=f"batches p50/p95/max {b['p50']}/{b['p95']}/{b['max']} s")
    if "naive" in m:
        d = m["naive"]
        row(f"naive (sample {d['sample']})", d, seconds_key="sample_seconds",
            notes=f"extrapolated to all {r['template']['eligible_stacks']}: {d['extrapolated_seconds']:.0f} s")
    for view, d in m.get("views", {}).items():
        print(f"{'count(*) ' + view:<28}{d['seconds_best_of_2']:>10.2f}{'':>11}{'':>11}{'':>10}  "
              f"{d['rows']} rows, best of 2; plan in {d['explain']}")
    print()
    for key, value in r["ratios"].items():
        print(f"{key:<40}{value:>8}")
    print(f"{'bench harness peak RSS (MB)':<40}{r['bench_peak_rss_mb']:>8}")
    if "app_load" in m:
        a = m["app_load"]
        print(f"app load ({a['clients']} clients, {a['seconds']} s): alone {a['alone']['tps']} tps "
              f"p99 {a['alone']['latency_p99_ms']} ms, during purge {a['during_purge']['tps']} tps "
              f"p99 {a['during_purge']['latency_p99_ms']} ms, failed {a['during_purge']['failed']}; "
              f"drop {a.get('tps_drop_pct')}%")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--naive-sample", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each purge/floor measurement (best is kept)")
    parser.add_argument("--skip-purge", action="store_true", help="leave out purge and floor")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--app-load", action="store_true", help="also pgbench alone and during a purge")
    parser.add_argument("--app-seconds", type=int, default=30)
    parser.add_argument("--app-clients", type=int, default=2)
    parser.add_argument("--output", type=Path, help="results file (default bench/results/<size>-<date>.json)")
    args = parser.parse_args(argv)
    results = Bench(args).run()
    output = args.output or RESULTS / f"{results['label']}-{dt.date.today().isoformat()}.json"
    output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_table(results)
    print(f"\nresults: {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output} "
          f"(total {results['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
