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
  batch        the first 7 batches of a run, batches 1 and 7 under auto_explain (nested
               statements, ANALYZE, BUFFERS), saved to bench/results/explain-batch-<size>.txt,
               and pg_stat_statements' per-statement totals over the whole archive-on purge
  --sweep      purge, purge --no-archive and floor again at other batch sizes
  --app-load   pgbench (bench/pgbench_app.sql) alone, then during a purge: TPS, latency;
               saturated, then paced at --app-rate of the saturated rate

Every clone starts with its tables and indexes prewarmed into shared buffers, after a
CHECKPOINT. Each timed step records wall time, CPU seconds (server and client: much less
disturbed than wall time by other work on the machine) and the 1-minute load average.
Timing: --repeat runs of purge, floor and naive, each on a fresh clone, best reported.
docs/performance.md has the results and what they mean.

Results: a table on stdout and bench/results/<size>-<date>.json. Nothing here is part of
the test suite. The server is durable, as in production (fsync, synchronous_commit and
full_page_writes on, wal_level replica: every batch commit waits for its WAL to reach the
disk). --unsafe-fast turns all of that off (wal_level minimal): a benchmark of CPU and the
page cache only, where the fixed costs every approach shares are smallest, so the ratios
are the harshest.
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
PRODUCT = ROOT  # the adhoc-gc checkout measured (runner/, sql/, migrations/); --product
RUNNER = PRODUCT / "runner"


def load_product(path: Path) -> None:
    """Import adhoc_gc from the checkout at `path`, whatever is installed."""
    global PRODUCT, RUNNER, deploy, parse_mapping, ThrowawayPostgres
    PRODUCT, RUNNER = path.resolve(), path.resolve() / "runner"
    sys.path.insert(0, str(RUNNER))
    import adhoc_gc
    from adhoc_gc.deploy import deploy
    from adhoc_gc.mapping import parse_mapping
    from adhoc_gc.throwaway import ThrowawayPostgres

    if not Path(adhoc_gc.__file__).resolve().is_relative_to(RUNNER):
        raise SystemExit(f"adhoc_gc was imported from {adhoc_gc.__file__}, not from {RUNNER}")


RESULTS = BENCH / "results"
TEMPLATE = "bench_template"

# A server sized for this machine (2 cores, 23 GB). ThrowawayPostgres turns fsync,
# synchronous_commit and full_page_writes off; DURABLE_SETTINGS turn them back on (the
# default), UNSAFE_FAST_SETTINGS (--unsafe-fast) keep them off.
SERVER_SETTINGS = {
    "shared_buffers": "2GB",
    "maintenance_work_mem": "1GB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.max": "1000",
}
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "wal_level": "replica"}
UNSAFE_FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                        "wal_level": "minimal", "max_wal_senders": "0"}


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
        # Results and plans of an --unsafe-fast run are kept apart from the durable ones.
        self.label = size_label(args.customers) + ("-unsafe-fast" if getattr(args, "unsafe_fast", False) else "")
        self.server = None
        self.results: dict = {"customers": args.customers, "label": self.label, "seed": args.seed,
                              "batch_size": args.batch_size,
                              "app_sleep": getattr(args, "app_sleep", None), "measurements": {}}
        self.clone_seconds: list[float] = []
        self.env = dict(os.environ, PYTHONPATH=str(RUNNER) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    # -- server and databases -------------------------------------------------------------

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.server.dsn(), autocommit=True)

    def clone(self, name: str) -> str:
        self.loadavg_at_clone = os.getloadavg()[0]
        started = time.monotonic()
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}" STRATEGY FILE_COPY')
        self.clone_seconds.append(time.monotonic() - started)
        dsn = self.server.dsn(name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            # Same start for every measurement: the application's tables and indexes in
            # shared buffers (the previous clone's were dropped with it), then a checkpoint.
            conn.execute("SELECT sum(pg_prewarm(c.oid)) FROM pg_class AS c "
                         "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'i')")
            conn.execute("CHECKPOINT")
        return dsn

    def server_cpu(self) -> float | None:
        """CPU seconds used so far by the server: the postmaster, its live children, and (as the
        postmaster's children times) every backend or worker that has exited. A measurement's
        delta of this plus its client's CPU is far less sensitive than wall time to other work
        sharing the machine's cores."""
        try:
            import psutil

            pid = int((self.server.datadir / "postmaster.pid").read_text().split()[0])
            postmaster = psutil.Process(pid)
            times = postmaster.cpu_times()
            total = times.user + times.system + times.children_user + times.children_system
            for child in postmaster.children():
                try:
                    t = child.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
            return total
        except Exception:  # noqa: BLE001 - psutil missing or /proc unreadable: no CPU figures
            return None

    def drop(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def build_template(self) -> None:
        args = self.args
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
        dsn = self.server.dsn(TEMPLATE)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute((PRODUCT / "sql" / "reference" / "app_schema.sql").read_text())
        log(f"generating {args.customers} customers (bench/generate.sql, seed {args.seed})")
        started = time.monotonic()
        out = subprocess.run(
            [str(self.server.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
             "-v", f"customers={int(args.customers)}", "-v", f"seed={int(args.seed)}",
             "-f", str(BENCH / "generate.sql"), dsn],
            check=False, capture_output=True, text=True)
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
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s) ORDER BY 1",
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

    def purge_cli(self, archive: bool, run_no: int, batch_size: int | None = None) -> dict:
        batch_size = batch_size or self.args.batch_size
        name = f"bench_purge_{'archive' if archive else 'noarchive'}_{run_no}"
        dsn = self.clone(name)
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")
            argv = [sys.executable, "-m", "adhoc_gc", "purge", "--batch-size", str(batch_size), "--json",
                    "--dsn", dsn]
            if not archive:
                argv.append("--no-archive")
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                cpu_before = self.server_cpu()
                started = time.monotonic()
                child = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=self.env,
                                         cwd=PRODUCT)
                # wait4 on this one child: its own peak RSS, not the max over every child so far.
                _, status, usage = os.wait4(child.pid, 0)
                child.returncode = os.waitstatus_to_exitcode(status)
                wall = time.monotonic() - started
                time.sleep(0.2)  # let the postmaster reap the runner's backend
                cpu_after = self.server_cpu()
                out.seek(0)
                err.seek(0)
                stdout, stderr = out.read().decode(), err.read().decode()
            if child.returncode != 0:
                raise SystemExit(f"adhoc-gc purge exited {child.returncode}: {stderr.strip()}")
            result = json.loads(stdout)
            with psycopg.connect(dsn, autocommit=True) as conn:
                top = conn.execute(
                    "SELECT calls, round(total_exec_time::numeric, 1), round((total_exec_time / calls)::numeric, 3), "
                    "       rows, regexp_replace(left(query, 160), '\\s+', ' ', 'g') "
                    "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "ORDER BY total_exec_time DESC LIMIT 12").fetchall()
                left = conn.execute('SELECT count(*) FROM "adhoc_gc"."candidates"').fetchone()[0]
                archived = conn.execute('SELECT count(*) FROM "adhoc_gc"."purged"').fetchone()[0]
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
                "server_cpu_seconds": None if cpu_before is None else round(cpu_after - cpu_before, 2),
                "runner_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
                "loadavg_1m_before": round(self.loadavg_at_clone, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2),
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
                cpu_before, self_before = self.server_cpu(), self_cpu()
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
                cpu_after, self_after = self.server_cpu(), self_cpu()
            per_stack = seconds / max(1, deleted[0])
            return {
                "loadavg_1m_before": round(self.loadavg_at_clone, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2),
                "sample": len(todo), "customers_deleted": deleted[0], "locations_deleted": deleted[1],
                "contacts_deleted": deleted[2], "skipped": skipped,
                "sample_seconds": round(seconds, 3), "fetch_candidates_seconds": round(fetch_seconds, 3),
                "server_cpu_seconds": None if cpu_before is None else round(cpu_after - cpu_before, 2),
                "runner_cpu_seconds": round(self_after - self_before, 2),
                "cpu_ms_per_stack": None if cpu_before is None else round(
                    1000 * (cpu_after - cpu_before + self_after - self_before) / max(1, deleted[0]), 4),
                "ms_per_stack": round(1000 * per_stack, 4),
                "stacks_per_s": round(deleted[0] / seconds, 1),
                "rows_per_s": round(sum(deleted) / seconds, 1),
                "extrapolated_seconds": round(fetch_seconds + per_stack * self.candidates, 1),
                "note": f"timed on the first {len(todo)} of {self.candidates} candidates (key order), "
                        "extrapolated per stack to all of them (plus the one candidates fetch)",
            }
        finally:
            self.drop(name)

    def floor(self, run_no: int, batch_size: int | None = None) -> dict:
        name = f"bench_floor_{run_no}"
        dsn = self.clone(name)
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                batches = self.floor_batches(conn, batch_size or self.args.batch_size)
                cpu_before, self_before = self.server_cpu(), self_cpu()
                result = self.floor_delete(conn, batches)
                cpu_after, self_after = self.server_cpu(), self_cpu()
            return {
                "loadavg_1m_before": round(self.loadavg_at_clone, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2),
                **result,
                "server_cpu_seconds": None if cpu_before is None else round(cpu_after - cpu_before, 2),
                "runner_cpu_seconds": round(self_after - self_before, 2),
            }
        finally:
            self.drop(name)

    @staticmethod
    def floor_batches(conn: psycopg.Connection, batch_size: int) -> list[int]:
        """Untimed: exactly the candidates' rows, grouped into batches of B stacks, as arrays in
        a table of the clone (one row per batch, read by primary key)."""
        conn.execute(
            'CREATE TABLE "public"."bench_floor" AS '
            'WITH "c" AS (SELECT "customer_id", "location_ids", "contact_ids", '
            f'                    (row_number() OVER (ORDER BY "customer_id") - 1) / {int(batch_size)} AS "batch" '
            '             FROM "adhoc_gc"."candidates") '
            'SELECT "batch", "b"."customers", coalesce("l"."ids", \'{}\') AS "locations", '
            '       coalesce("ct"."ids", \'{}\') AS "contacts" '
            'FROM (SELECT "batch", array_agg("customer_id") AS "customers" FROM "c" GROUP BY 1) AS "b" '
            'LEFT JOIN (SELECT "batch", array_agg("x") AS "ids" FROM "c", unnest("location_ids") AS "x" '
            '           GROUP BY 1) AS "l" USING ("batch") '
            'LEFT JOIN (SELECT "batch", array_agg("x") AS "ids" FROM "c", unnest("contact_ids") AS "x" '
            '           GROUP BY 1) AS "ct" USING ("batch")')
        conn.execute('ALTER TABLE "public"."bench_floor" ADD PRIMARY KEY ("batch")')
        conn.execute('ANALYZE "public"."bench_floor"')
        return [r[0] for r in conn.execute('SELECT "batch" FROM "public"."bench_floor" ORDER BY 1')]

    @staticmethod
    def floor_delete(conn: psycopg.Connection, batches: list[int], deadline: float | None = None) -> dict:
        """The timed part of the floor: each batch's three DELETEs in one transaction; no batch
        starts after `deadline` (time.monotonic()), as no purge batch starts after --max-runtime."""
        durations = []
        deleted = [0, 0, 0]
        started = time.monotonic()
        for batch in batches:
            if deadline is not None and time.monotonic() >= deadline:
                break
            batch_started = time.monotonic()
            with conn.transaction():
                for column, table, index in (("contacts", "contacts", 2), ("locations", "locations", 1),
                                             ("customers", "customers", 0)):
                    deleted[index] += conn.execute(
                        f'DELETE FROM "public"."{table}" WHERE "id" = ANY ('
                        f'(SELECT "{column}" FROM "public"."bench_floor" WHERE "batch" = %s)::bigint[])',
                        (batch,)).rowcount
            durations.append(time.monotonic() - batch_started)
        seconds = time.monotonic() - started
        ordered = sorted(durations) or [0.0]
        return {
            "seconds": round(seconds, 3), "batches": len(durations),
            "customers_deleted": deleted[0], "locations_deleted": deleted[1], "contacts_deleted": deleted[2],
            "stacks_per_s": round(deleted[0] / seconds, 1), "rows_per_s": round(sum(deleted) / seconds, 1),
            "ms_per_stack": round(1000 * seconds / max(1, deleted[0]), 4),
            "batch_seconds": {"p50": round(ordered[int(0.5 * (len(ordered) - 1))], 4),
                              "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 4),
                              "max": round(ordered[-1], 4)},
        }

    def views(self) -> dict:
        name = "bench_views"
        dsn = self.clone(name)
        out: dict = {}
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                # count(*) on eligibility alone lets the planner drop every join (they cannot
                # change the row count): "eligible" also counts WHERE eligible, which
                # evaluates the rules.
                for key, view, where in (("candidates", "candidates", ""), ("eligibility", "eligibility", ""),
                                         ("eligibility-eligible", "eligibility", " WHERE eligible")):
                    query = f'SELECT count(*) FROM "adhoc_gc"."{view}"{where}'
                    times = []
                    for _ in range(2):
                        started = time.monotonic()
                        count = conn.execute(query).fetchone()[0]
                        times.append(time.monotonic() - started)
                    plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}").fetchall())
                    path = RESULTS / f"explain-{key}-{self.label}.txt"
                    path.write_text(f"-- {self.label} customers: {query.replace(chr(34), '')} = {count}\n{plan}\n")
                    out[key] = {"query": query, "rows": count, "seconds_best_of_2": round(min(times), 3),
                                "seconds_runs": [round(t, 3) for t in times], "explain": str(path.relative_to(ROOT))}
        finally:
            self.drop(name)
        return out

    def batch_anatomy(self) -> dict:
        """The first batches of a run as the runner sends them, two of them under auto_explain.

        PL/pgSQL plans each statement of purge_batch for its actual values ("custom" plans)
        on the first 5 calls in a session, then may switch to one generic plan: batch 1
        shows the former, batch 7 the latter (the steady state of a long run)."""
        name = "bench_batch"
        dsn = self.clone(name)
        notes: list[str] = []
        explained = {1, 7}
        batches = []
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                run_id = conn.execute(
                    "SELECT \"adhoc_gc\".\"_start_run\"('bench', %s, NULL, NULL, true)", (self.args.batch_size,)
                ).fetchone()[0]
                conn.add_notice_handler(lambda diag: notes.append(diag.message_primary or ""))
                conn.execute("LOAD 'auto_explain'")
                for setting, value in (("log_analyze", "on"), ("log_buffers", "on"),
                                       ("log_nested_statements", "on"), ("log_timing", "on"),
                                       ("log_level", "notice")):
                    conn.execute(f"SET auto_explain.{setting} = '{value}'")
                after = None
                for number in range(1, max(explained) + 1):
                    conn.execute("SET auto_explain.log_min_duration = %s" % ("1" if number in explained else "-1"))
                    if number in explained:
                        notes.append(f"######## batch {number} ########")
                    started = time.monotonic()
                    with conn.transaction():
                        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                        row = conn.execute('SELECT * FROM "adhoc_gc"."purge_batch"(%s, %s, %s, true)',
                                           (run_id, after, self.args.batch_size)).fetchone()
                    batches.append({"batch": number, "ms": round((time.monotonic() - started) * 1000, 1),
                                    "explained": number in explained, "customers_deleted": row[3]})
                    if row[1]:
                        break
                    after = row[0]
            path = RESULTS / f"explain-batch-{self.label}.txt"
            path.write_text(
                f"-- {self.label} customers: the first batches of a run, purge_batch(run, after_key, "
                f"{self.args.batch_size}, archive => true) one per transaction as the runner calls it; batches "
                f"{sorted(explained)} under auto_explain\n"
                f"-- (log_analyze, log_buffers, log_nested_statements; statements over 1 ms, so the foreign-key "
                f"checks' own queries are left out;\n-- instrumentation overhead included). Batch times (ms): "
                + ", ".join(f"{b['batch']}: {b['ms']}{'*' if b['explained'] else ''}" for b in batches)
                + "\n\n" + "\n\n".join(notes) + "\n")
            return {"batches": batches, "explain": str(path.relative_to(ROOT))}
        finally:
            self.drop(name)

    def app_load(self) -> dict:
        """pgbench (bench/pgbench_app.sql) on a clone, alone and then while a purge runs, twice:
        saturated (as many transactions as the clients can push: every CPU cycle the purge
        takes is one the application loses) and paced (pgbench --rate at --app-rate of the
        saturated rate: an application with headroom, as production servers run)."""
        seconds = self.args.app_seconds
        name = "bench_app"
        pgbench = self.server.bindir / "pgbench"
        out: dict = {"seconds": seconds, "clients": self.args.app_clients, "script": "bench/pgbench_app.sql"}
        try:
            with psycopg.connect(self.server.dsn(TEMPLATE), autocommit=True) as conn:
                max_customer, max_location = conn.execute(
                    'SELECT (SELECT max(id) FROM customers), (SELECT max(id) FROM locations)').fetchone()

            def start_pgbench(tag: str, rate: float | None) -> tuple[subprocess.Popen, Path]:
                logdir = Path(tempfile.mkdtemp(prefix=f"pgbench-{tag}-"))
                argv = [str(pgbench), "-n", "-f", str(BENCH / "pgbench_app.sql"),
                        "-c", str(self.args.app_clients), "-j", str(self.args.app_clients),
                        "-T", str(seconds), "-D", f"max_customer={max_customer}",
                        "-D", f"max_location={max_location}", "--log", "--log-prefix", str(logdir / "log"),
                        "--failures-detailed", "--max-tries", "1",
                        "-h", self.server.host, "-p", str(self.server.port), "-U", "postgres", name]
                if rate is not None:
                    # Latency then counts from the scheduled start: lag behind the schedule is felt.
                    argv[1:1] = ["--rate", f"{rate:.0f}"]
                return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        cwd=logdir), logdir

            def summarize(proc: subprocess.Popen, logdir: Path, window: tuple[float, float] | None) -> dict:
                stdout, stderr = proc.communicate()
                latencies, failed = [], 0
                for path in logdir.glob("log*"):
                    # client_id transaction_no latency_us|failed script_no epoch_s epoch_us [lag_us]
                    for line in path.read_text().splitlines():
                        parts = line.split()
                        if len(parts) < 6:
                            continue
                        at = int(parts[4]) + int(parts[5]) / 1e6
                        if window and not window[0] <= at <= window[1]:
                            continue
                        if parts[2] in ("failed", "skipped"):
                            failed += 1
                        else:
                            latencies.append(int(parts[2]) / 1000)
                shutil.rmtree(logdir, ignore_errors=True)
                tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", stdout)
                errors = re.search(r"number of failed transactions: (\d+)", stdout)
                latencies.sort()
                span = (window[1] - window[0]) if window else None

                def pct(q):
                    return round(latencies[int(q * (len(latencies) - 1))], 2) if latencies else None

                return {"tps_whole_run": float(tps.group(1)) if tps else None,
                        "tps": round(len(latencies) / span, 1) if span else (float(tps.group(1)) if tps else None),
                        "window_seconds": round(span, 2) if span else seconds,
                        "transactions": len(latencies), "failed": failed,
                        "failed_whole_run": int(errors.group(1)) if errors else None,
                        "latency_p50_ms": pct(0.5), "latency_p99_ms": pct(0.99),
                        "latency_max_ms": round(latencies[-1], 2) if latencies else None,
                        "returncode": proc.returncode, "stderr": stderr.strip()[-500:]}

            def under_load(tag: str, rate: float | None, what: str, delete, prepare=None) -> dict:
                """pgbench on a fresh clone, `delete(conn, dsn, deadline, prepared)` starting 2 s
                in (`prepare(conn)` before pgbench, untimed); the application's figures counted
                over the deleter's lifetime."""
                dsn = self.clone(name)
                log(f"app load ({tag}): pgbench for {seconds}s, {what} starting 2s in (at most {seconds - 4}s)")
                with psycopg.connect(dsn, autocommit=True) as conn:
                    prepared = prepare(conn) if prepare else None
                    proc, logdir = start_pgbench(tag, rate)
                    time.sleep(2)
                    started, deadline = time.time(), time.monotonic() + max(1, seconds - 4)
                    deleted = delete(conn, dsn, deadline, prepared)
                    ended = time.time()
                return {"during": summarize(proc, logdir, (started, ended)), "deleted": deleted}

            def purge(*extra: str):
                def run(conn, dsn, deadline, prepared) -> dict:
                    argv = [sys.executable, "-m", "adhoc_gc", "purge", "--batch-size", str(self.args.batch_size),
                            *extra, "--json", "--max-runtime", f"{max(1, seconds - 4)}s", "--dsn", dsn]
                    done = subprocess.run(argv, check=False, capture_output=True, text=True, env=self.env,
                                          cwd=PRODUCT)
                    if done.returncode != 0:
                        return {"error": done.stderr.strip(), "returncode": done.returncode}
                    result = json.loads(done.stdout)
                    return {k: result[k] for k in ("customers_deleted", "seconds", "batches", "batch_seconds")}
                return run

            def delete_floor(conn, dsn, deadline, batches) -> dict:
                return self.floor_delete(conn, batches, deadline)

            def prepare_floor(conn) -> list[int]:
                return self.floor_batches(conn, self.args.batch_size)

            def drop_pct(alone: dict, during: dict) -> float | None:
                if alone["tps"] and during["tps"]:
                    return round(100 * (alone["tps"] - during["tps"]) / alone["tps"], 1)
                return None

            def scenario(tag: str, rate: float | None, also: dict) -> dict:
                result: dict = {"rate": None if rate is None else round(rate)}
                pace = "saturated" if rate is None else f"--rate {rate:.0f}"
                log(f"app load ({tag}): pgbench ({self.args.app_clients} clients, {pace}) alone for {seconds}s")
                self.clone(name)
                proc, logdir = start_pgbench(f"{tag}-alone", rate)
                result["alone"] = summarize(proc, logdir, None)
                loaded = under_load(tag, rate, "an adhoc-gc purge", purge())
                result["during_purge"], result["purge"] = loaded["during"], loaded["deleted"]
                result["tps_drop_pct"] = drop_pct(result["alone"], result["during_purge"])
                # The same application load while something else deletes the same stacks: what
                # deleting them costs the application anyway (the floor), or a gentler purge.
                for key, (what, *deleter) in also.items():
                    loaded = under_load(tag, rate, what, *deleter)
                    loaded["tps_drop_pct"] = drop_pct(result["alone"], loaded["during"])
                    result[key] = loaded
                return result

            saturated_also = {"floor": ("the floor's plain DELETEs", delete_floor, prepare_floor)}
            if self.args.app_sleep:
                saturated_also["purge_sleep"] = (f"an adhoc-gc purge --sleep {self.args.app_sleep}",
                                                 purge("--sleep", str(self.args.app_sleep)))
            out["saturated"] = scenario("saturated", None, saturated_also)
            rate = self.args.app_rate * out["saturated"]["alone"]["tps"]
            out["paced"] = scenario("paced", rate, {})
        finally:
            self.drop(name)
        return out

    # -- the whole run --------------------------------------------------------------------

    def run(self) -> dict:
        args = self.args
        RESULTS.mkdir(exist_ok=True)
        started = time.monotonic()
        self.results["machine"] = machine_info()
        self.results["started_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.results["product"] = {"path": str(PRODUCT), "commit": git_commit(PRODUCT)}
        self.results["bench_commit"] = git_commit(ROOT)
        settings = {**SERVER_SETTINGS, **(UNSAFE_FAST_SETTINGS if args.unsafe_fast else DURABLE_SETTINGS)}
        self.results["durability"] = "unsafe-fast" if args.unsafe_fast else "durable"
        log(f"starting a throwaway PostgreSQL ({', '.join(f'{k}={v}' for k, v in settings.items())})")
        self.server = ThrowawayPostgres(settings=settings).start()
        try:
            with self.admin() as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            with psycopg.connect(self.server.dsn("template1"), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            self.build_template()
            m = self.results["measurements"]
            if not args.skip_purge:
                # Round by round (archive on, archive off, floor; the order turned each
                # round), not each measurement's repeats in a row: this machine's speed drifts
                # by several percent over minutes, and a drift must not land on one side only.
                steps = {
                    "purge_archive": (f"adhoc-gc purge --batch-size {args.batch_size} --json",
                                      lambda run_no: self.purge_cli(True, run_no)),
                    "purge_no_archive": (f"adhoc-gc purge --batch-size {args.batch_size} --no-archive --json",
                                         lambda run_no: self.purge_cli(False, run_no)),
                    "floor": (f"plain DELETEs by key, {args.batch_size} stacks per transaction",
                              lambda run_no: self.floor(run_no)),
                }
                runs = {key: [] for key in steps}
                for run_no in range(args.repeat):
                    keys = list(steps)
                    keys = keys[run_no % len(keys):] + keys[:run_no % len(keys)]
                    for key in keys:
                        what, step = steps[key]
                        log(f"{key}: {what} on a fresh clone (round {run_no + 1}/{args.repeat})")
                        result = step(run_no)
                        runs[key].append(result)
                        rss = f", runner peak RSS {result['runner_peak_rss_mb']} MB" if "runner_peak_rss_mb" in result else ""
                        log(f"  {result['customers_deleted']} stacks in {result['seconds']}s "
                            f"({result['stacks_per_s']}/s){rss}")
                for key in steps:
                    m[key] = best(runs[key])
            if not args.skip_naive:
                runs = []
                for run_no in range(args.repeat):
                    log(f"naive: per-customer transactions on the first {args.naive_sample} candidates "
                        f"(run {run_no + 1}/{args.repeat})")
                    runs.append(self.naive())
                    log(f"  {runs[-1]['customers_deleted']} stacks in {runs[-1]['sample_seconds']}s "
                        f"({runs[-1]['ms_per_stack']} ms/stack)")
                m["naive"] = dict(min(runs, key=lambda r: r["ms_per_stack"]))
                if len(runs) > 1:
                    m["naive"]["runs_ms_per_stack"] = [r["ms_per_stack"] for r in runs]
            for size in args.sweep:
                log(f"batch size {size}: purge (archive on), purge --no-archive, floor (one run each)")
                m[f"batch_size_{size}"] = {
                    "purge_archive": self.purge_cli(True, 0, size),
                    "purge_no_archive": self.purge_cli(False, 0, size),
                    "floor": self.floor(0, size),
                }
                for key, d in m[f"batch_size_{size}"].items():
                    d.pop("statements", None)
                    log(f"  {key}: {d['seconds']}s ({d['ms_per_stack']} ms/stack), batches p50/p95/max "
                        f"{d['batch_seconds']['p50']}/{d['batch_seconds']['p95']}/{d['batch_seconds']['max']} s")
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
            f"each timed step runs on its own fresh clone, {args.repeat} time(s) (--repeat), purge, purge --no-archive "
            "and floor round by round (the order turned each round): the best run is reported, "
            "all are kept under 'runs'; the view counts are best of 2 on one clone; naive is timed on a sample; "
            "--sweep sizes once each")
        return self.results


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
    if floor and floor.get("server_cpu_seconds") is not None:
        floor_cpu = floor["server_cpu_seconds"] + floor["runner_cpu_seconds"]
        for key in ("purge_archive", "purge_no_archive"):
            if key in m and m[key].get("server_cpu_seconds") is not None:
                cpu = m[key]["server_cpu_seconds"] + m[key]["runner_cpu_seconds"]
                out[f"{key}_over_floor_cpu"] = round(cpu / floor_cpu, 2)
                if m.get("naive", {}).get("cpu_ms_per_stack"):
                    out[f"naive_over_{key}_per_stack_cpu"] = round(
                        m["naive"]["cpu_ms_per_stack"] / (1000 * cpu / max(1, m[key]["customers_deleted"])), 1)
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


def git_commit(path: Path) -> str | None:
    """HEAD of the checkout at `path` (flagged when sql/runner/migrations differ from it), or
    the COMMIT file of an exported tree (`git archive`), or None."""
    out = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel", "HEAD"],
                         check=False, capture_output=True, text=True)
    if out.returncode == 0 and Path(out.stdout.split()[0]).resolve() == path.resolve():
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--", "sql", "runner", "migrations"],
                               check=False, capture_output=True, text=True).stdout.strip()
        return out.stdout.split()[1][:12] + ("+uncommitted changes in sql/runner/migrations" if dirty else "")
    stamp = path / "COMMIT"
    return stamp.read_text().strip() if stamp.exists() else None


def print_table(r: dict) -> None:
    m = r["measurements"]
    label = r["label"]
    print()
    print(f"adhoc-gc benchmark, {r['customers']} customers ({label}), batch size {r['batch_size']}: "
          f"{r['template']['eligible_stacks']} eligible stacks, "
          f"{sum(r['template']['eligible_rows'].values())} rows to delete")
    print(f"machine: {r['machine']['nproc']} cores, {r['machine']['memory_gb']} GB, {r['machine']['cpu']}; "
          f"{r['postgres']['version'].split(' on ')[0]}")
    header = f"{'measurement':<28}{'seconds':>10}{'cpu s':>8}{'stacks/s':>11}{'rows/s':>11}{'ms/stack':>10}  notes"
    print(header)
    print("-" * len(header))

    def row(name, d, seconds_key="seconds", notes=""):
        cpu = d.get("server_cpu_seconds")
        cpu = f"{cpu + d['runner_cpu_seconds']:.1f}" if cpu is not None else "-"
        print(f"{name:<28}{d[seconds_key]:>10.2f}{cpu:>8}{d['stacks_per_s']:>11.0f}{d['rows_per_s']:>11.0f}"
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
    for key in sorted(k for k in m if k.startswith("batch_size_")):
        size = key.removeprefix("batch_size_")
        for part, name in (("purge_archive", "purge"), ("purge_no_archive", "purge --no-archive"), ("floor", "floor")):
            d = m[key][part]
            b = d["batch_seconds"]
            row(f"  B={size}: {name}", d, notes=f"batches p50/p95/max {b['p50']}/{b['p95']}/{b['max']} s")
    for view, d in m.get("views", {}).items():
        name = {"candidates": "count(*) candidates", "eligibility": "count(*) eligibility",
                "eligibility-eligible": "  ... WHERE eligible"}.get(view, view)
        print(f"{name:<28}{d['seconds_best_of_2']:>10.2f}{'':>8}{'':>11}{'':>11}{'':>10}  "
              f"{d['rows']} rows, best of 2; plan in {d['explain']}")
    print()
    for key, value in r["ratios"].items():
        print(f"{key:<40}{value:>8}")
    print(f"{'bench harness peak RSS (MB)':<40}{r['bench_peak_rss_mb']:>8}")
    if "app_load" in m:
        a = m["app_load"]
        for tag in ("saturated", "paced"):
            if tag not in a:
                continue
            sc = a[tag]
            pace = "as fast as they can" if sc["rate"] is None else f"paced at {sc['rate']} tps"
            print(f"app load, {tag} (pgbench, {a['clients']} clients {pace}): alone {sc['alone']['tps']} tps, p99 "
                  f"{sc['alone']['latency_p99_ms']} ms; during the purge ({sc['during_purge']['window_seconds']} s, "
                  f"{sc['purge'].get('customers_deleted')} stacks) {sc['during_purge']['tps']} tps, p99 "
                  f"{sc['during_purge']['latency_p99_ms']} ms; TPS drop {sc.get('tps_drop_pct')}%; failed "
                  f"transactions {sc['alone']['failed_whole_run']} / {sc['during_purge']['failed_whole_run']}")
            for key, what in (("floor", "the floor's DELETEs"), ("purge_sleep", f"a purge --sleep {r['app_sleep']}")):
                if key in sc:
                    o = sc[key]
                    print(f"  the same load during {what} ({o['during']['window_seconds']} s, "
                          f"{o['deleted'].get('customers_deleted')} stacks): {o['during']['tps']} tps, p99 "
                          f"{o['during']['latency_p99_ms']} ms; TPS drop {o['tps_drop_pct']}%; failed transactions "
                          f"{o['during']['failed_whole_run']}")

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--naive-sample", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each purge/floor measurement (best is kept)")
    parser.add_argument("--skip-purge", action="store_true", help="leave out purge and floor")
    parser.add_argument("--sweep", type=lambda t: [int(x) for x in t.split(",") if x], default=[],
                        metavar="B1,B2", help="also purge (archive on and off) and floor at these batch sizes, once each")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--app-load", action="store_true", help="also pgbench alone and during a purge")
    parser.add_argument("--app-seconds", type=int, default=30)
    parser.add_argument("--app-clients", type=int, default=2)
    parser.add_argument("--app-rate", type=float, default=0.25,
                        help="paced scenario: pgbench --rate at this fraction of the saturated rate (default 0.25)")
    parser.add_argument("--app-sleep", type=float, metavar="SECONDS",
                        help="saturated scenario: also a purge with --sleep SECONDS between batches")
    parser.add_argument("--unsafe-fast", action="store_true",
                        help="fsync, synchronous_commit and full_page_writes off, wal_level minimal (CPU and page "
                             "cache only; default: durable, as in production)")
    parser.add_argument("--output", type=Path, help="results file (default bench/results/<size>-<date>.json)")
    parser.add_argument("--product", type=Path, default=ROOT,
                        help="the adhoc-gc checkout to measure (default: this one); e.g. a `git archive HEAD` export "
                             "with a COMMIT file, to measure a commit while the work tree changes")
    args = parser.parse_args(argv)
    load_product(args.product)
    results = Bench(args).run()
    output = args.output or RESULTS / f"{results['label']}-{dt.date.today().isoformat()}.json"
    output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_table(results)
    print(f"\nresults: {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output} "
          f"(total {results['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
