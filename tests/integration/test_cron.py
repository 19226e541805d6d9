"""Purges run from pg_cron and from CALL: same batches, same lock, same run records."""

import threading
import time

import psycopg
import pytest

from helpers import add_stack, purge, run_cli, stack_exists


def _runs(conn):
    return conn.execute(
        "SELECT id, status, trigger, batches, customers_deleted, error FROM adhoc_gc.runs ORDER BY id").fetchall()


def test_call_purge_commits_each_batch_and_records_the_run(ref_db, ref_conn):
    stacks = [add_stack(ref_conn) for _ in range(9)]
    seen_midway: list[int] = []

    def watch():
        time.sleep(1.2)  # batch 1 committed, pausing before batch 2
        with psycopg.connect(ref_db) as other:
            seen_midway.append(other.execute("SELECT count(*) FROM customers").fetchone()[0])

    watcher = threading.Thread(target=watch)
    watcher.start()
    with psycopg.connect(ref_db, autocommit=True) as conn:
        conn.execute("CALL adhoc_gc.purge(batch_size => 4, pause => interval '2 seconds')")
    watcher.join()
    assert seen_midway == [5], "the first batch was not committed before the second began"
    assert not any(stack_exists(ref_conn, s) for s in stacks)
    assert _runs(ref_conn) == [(1, "succeeded", "sql", 3, 9, None)]


def test_call_purge_pauses_only_between_batches_and_never_past_max_runtime(ref_conn):
    for _ in range(3):
        add_stack(ref_conn)
    started = time.monotonic()
    ref_conn.execute("CALL adhoc_gc.purge(batch_size => 1, pause => interval '30 seconds', "
                     "max_runtime => interval '2 seconds')")
    assert time.monotonic() - started < 15
    assert _runs(ref_conn)[-1][1:5] == ("succeeded", "sql", 1, 1)
    # The last two in one batch short of its size: no pause after it.
    started = time.monotonic()
    ref_conn.execute("CALL adhoc_gc.purge(batch_size => 5, pause => interval '30 seconds')")
    assert time.monotonic() - started < 15
    assert _runs(ref_conn)[-1][1:5] == ("succeeded", "sql", 1, 2)


def test_call_purge_stops_at_max_batches(ref_conn):
    for _ in range(5):
        add_stack(ref_conn)
    ref_conn.execute("CALL adhoc_gc.purge(batch_size => 2, max_batches => 1)")
    assert _runs(ref_conn)[-1][1:5] == ("succeeded", "sql", 1, 2)
    assert ref_conn.execute("SELECT count(*) FROM customers").fetchone()[0] == 3


def test_a_failing_batch_fails_the_run_and_releases_the_lock(ref_db, ref_conn):
    add_stack(ref_conn)
    # The application refuses the delete (a trigger): the batch fails.
    ref_conn.execute("""
        CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'contacts are kept by policy' USING ERRCODE = 'raise_exception'; END $$;
        CREATE TRIGGER keep_contacts BEFORE DELETE ON contacts FOR EACH ROW EXECUTE FUNCTION refuse_delete();
    """)
    with pytest.raises(psycopg.errors.RaiseException):
        ref_conn.execute("CALL adhoc_gc.purge(batch_size => 10)")
    status, error = ref_conn.execute("SELECT status, error FROM adhoc_gc.runs").fetchone()
    assert status == "failed" and "contacts are kept by policy" in error
    assert ref_conn.execute("SELECT adhoc_gc._try_purge_lock()").fetchone()[0], "lock still held"


def test_two_purges_at_once_one_runs_one_is_skipped(ref_db, ref_conn):
    stacks = [add_stack(ref_conn) for _ in range(6)]
    started = threading.Event()
    result = {}

    def slow_runner():
        # The runner holds the lock while it sleeps between its batches.
        result["progress"] = purge(ref_db, batch_size=2, sleep=1.0)

    with psycopg.connect(ref_db, autocommit=True) as probe:
        thread = threading.Thread(target=slow_runner)
        thread.start()
        for _ in range(100):
            if probe.execute("SELECT count(*) FROM adhoc_gc.runs WHERE status = 'running'").fetchone()[0]:
                break
            time.sleep(0.05)
        started.set()
        probe.execute("CALL adhoc_gc.purge(batch_size => 2)")  # pg_cron or a person, meanwhile
        cli = run_cli("purge", "--dsn", ref_db, "--batch-size", "2")
        thread.join(timeout=60)
    assert cli.returncode == 3, cli.stderr
    assert "another purge is running" in cli.stderr and len(cli.stderr.strip().splitlines()) == 1
    runs = _runs(ref_conn)
    assert [r[1] for r in runs].count("succeeded") == 1
    assert [r[1] for r in runs].count("skipped") == 2
    assert sum(r[4] for r in runs) == 6
    assert not any(stack_exists(ref_conn, s) for s in stacks)
    dupes = ref_conn.execute(
        "SELECT count(*) - count(DISTINCT customer_id) FROM adhoc_gc.purged").fetchone()[0]
    assert dupes == 0


def test_a_dead_runner_run_is_marked_abandoned_by_the_next(ref_db, ref_conn):
    add_stack(ref_conn)
    with psycopg.connect(ref_db, autocommit=True) as doomed:
        doomed.execute("SELECT adhoc_gc._try_purge_lock()")
        doomed.execute("SELECT adhoc_gc._start_run('runner', 10, NULL, NULL, true)")
    # The session ended without closing its run (and its lock went with it).
    purge(ref_db, batch_size=10)
    statuses = [r[1] for r in _runs(ref_conn)]
    assert statuses == ["abandoned", "succeeded"]


def test_every_purge_applies_retention(ref_db, ref_conn):
    ref_conn.execute("""
        INSERT INTO adhoc_gc.runs (started_at, finished_at, status, trigger, batch_size)
        VALUES (now() - interval '2 years', now() - interval '2 years', 'succeeded', 'runner', 10),
               (now() - interval '100 days', now() - interval '100 days', 'succeeded', 'runner', 10)""")
    old_run, recent_run = [r[0] for r in _runs(ref_conn)]
    ref_conn.execute("""
        INSERT INTO adhoc_gc.purged (run_id, customer_id, purged_at, customer, locations, contacts)
        VALUES (%s, '1', now() - interval '2 years', '{}', '[]', '[]'),
               (%s, '2', now() - interval '100 days', '{}', '[]', '[]'),
               (%s, '3', now() - interval '10 days', '{}', '[]', '[]')""", (old_run, recent_run, recent_run))
    purge(ref_db, batch_size=10)
    remaining_runs = [r[0] for r in _runs(ref_conn)]
    assert old_run not in remaining_runs and recent_run in remaining_runs
    assert ref_conn.execute("SELECT customer_id FROM adhoc_gc.purged").fetchall() == [("3",)]


def test_schedule_needs_pg_cron_loaded(ref_db):
    result = run_cli("schedule", "--dsn", ref_db, "--cron", "30 3 * * *")
    assert result.returncode == 2
    assert "shared_preload_libraries = 'pg_cron'" in result.stderr
    assert "cron.database_name" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_pg_cron_runs_the_scheduled_purge(cron_db, cron_server):
    with psycopg.connect(cron_db, autocommit=True) as conn:
        stacks = [add_stack(conn) for _ in range(12)]
        kept = add_stack(conn, adhoc=False)

    first = run_cli("schedule", "--dsn", cron_db, "--cron", "0 3 * * *", "--json")
    assert first.returncode == 0, first.stderr
    again = run_cli("schedule", "--dsn", cron_db, "--cron", "* * * * *", "--batch-size", "5",
                    "--max-runtime", "5m", "--prune-cron-history", "14 days")
    assert again.returncode == 0, again.stderr
    dbname = psycopg.conninfo.conninfo_to_dict(cron_db)["dbname"]
    with psycopg.connect(cron_server.dsn(), autocommit=True) as cron:
        jobs = cron.execute("SELECT jobname, schedule, command FROM cron.job WHERE database = %s",
                            (dbname,)).fetchall()
        assert len(jobs) == 1, "rescheduling must update the job, not add one"
        assert jobs[0][1] == "* * * * *" and "batch_size => 5" in jobs[0][2]
        assert set(_jobs(cron_server, dbname)) == set(_job_names(dbname))  # the purge job and its prune job

    with psycopg.connect(cron_db, autocommit=True) as conn:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            row = conn.execute("SELECT status FROM adhoc_gc.runs WHERE trigger = 'pg_cron' "
                               "AND status <> 'running' ORDER BY id LIMIT 1").fetchone()
            if row:
                break
            time.sleep(2)
        run = conn.execute("SELECT status, batches, customers_deleted FROM adhoc_gc.runs "
                           "WHERE trigger = 'pg_cron' ORDER BY id LIMIT 1").fetchone()
        assert run == ("succeeded", 3, 12), run
        assert not any(stack_exists(conn, s) for s in stacks)
        assert stack_exists(conn, kept)

    status = run_cli("status", "--dsn", cron_db, "--json")
    assert status.returncode == 0, status.stderr
    import json

    report = json.loads(status.stdout)
    assert report["scheduled"] and report["schedule"] == "* * * * *" and report["next_run_utc"]
    assert any(r["status"] == "succeeded" for r in report["cron_runs"])
    assert report["runs"][-1]["trigger"] == "pg_cron" or report["runs"][0]["trigger"] == "pg_cron"

    gone = run_cli("unschedule", "--dsn", cron_db)
    assert gone.returncode == 0 and "removed" in gone.stdout
    assert _jobs(cron_server, dbname) == {}  # the prune job too, which lives in pg_cron's database
    missing = run_cli("status", "--dsn", cron_db)
    assert missing.returncode == 0 and "no pg_cron job" in missing.stdout


def _job_names(dbname: str) -> tuple[str, str]:
    """The default purge job's name for the package in `dbname`, and its history-pruning job's."""
    name = f"adhoc-gc:{dbname}:adhoc_gc"
    return name, name + ":prune-history"


def _jobs(cron_server, dbname: str) -> dict[str, tuple[str, str]]:
    """Those two jobs as pg_cron holds them (in its own database): name -> (database, command)."""
    with psycopg.connect(cron_server.dsn(), autocommit=True) as cron:
        rows = cron.execute("SELECT jobname, database, command FROM cron.job WHERE jobname = ANY (%s)",
                            (list(_job_names(dbname)),)).fetchall()
    return {name: (database, command) for name, database, command in rows}


def test_unschedule_removes_the_job_and_its_history_pruning_job(cron_db, cron_server):
    """`schedule --prune-cron-history` adds a job that runs in pg_cron's own database
    (cron.database_name, here `postgres`), not in the package's: `unschedule` removes it
    together with the purge job."""
    dbname = psycopg.conninfo.conninfo_to_dict(cron_db)["dbname"]
    job, prune_job = _job_names(dbname)
    try:
        scheduled = run_cli("schedule", "--dsn", cron_db, "--cron", "0 3 * * *", "--prune-cron-history", "14 days")
        assert scheduled.returncode == 0, scheduled.stderr
        jobs = _jobs(cron_server, dbname)
        assert set(jobs) == {job, prune_job}, jobs
        assert jobs[job][0] == dbname and jobs[job][1].startswith('CALL adhoc_gc."purge"(')
        assert jobs[prune_job][0] == "postgres" != dbname
        assert jobs[prune_job][1] == "DELETE FROM cron.job_run_details WHERE end_time < now() - '14 days'::interval"

        gone = run_cli("unschedule", "--dsn", cron_db)
        assert gone.returncode == 0, gone.stderr
        assert gone.stdout == f"removed pg_cron job(s): {job}, {prune_job}\n"
        assert _jobs(cron_server, dbname) == {}
        again = run_cli("unschedule", "--dsn", cron_db)
        assert again.returncode == 0 and "nothing to remove" in again.stdout
    finally:
        # cron_db's clean-up removes the jobs running in its database, not the prune job.
        with psycopg.connect(cron_server.dsn(), autocommit=True) as cron:
            cron.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = ANY (%s)",
                         (list(_job_names(dbname)),))


@pytest.mark.parametrize("keep", ["-14 days", "0 days", "14 dayz"])
def test_a_history_age_that_is_not_longer_than_zero_schedules_nothing(cron_db, cron_server, keep):
    """'-14 days' would have the pruning job delete the whole history every day."""
    dbname = psycopg.conninfo.conninfo_to_dict(cron_db)["dbname"]
    result = run_cli("schedule", "--dsn", cron_db, "--cron", "0 3 * * *", "--prune-cron-history", keep)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("adhoc-gc: error: --prune-cron-history: ") and len(result.stderr.splitlines()) == 1
    assert _jobs(cron_server, dbname) == {}


def test_schedule_says_when_the_extension_is_missing(cron_server, fresh_db):
    with psycopg.connect(cron_server.dsn(), autocommit=True) as conn:
        conn.execute("DROP EXTENSION pg_cron")
    try:
        from helpers import deploy_mapping, load_reference_schema

        janitor = cron_server.janitor("cron_no_ext")
        janitor.init()
        dsn = cron_server.dsn("cron_no_ext")
        load_reference_schema(dsn)
        deploy_mapping(dsn)
        result = run_cli("schedule", "--dsn", dsn, "--cron", "30 3 * * *")
        janitor.drop()
    finally:
        with psycopg.connect(cron_server.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_cron")
    assert result.returncode == 2
    assert "CREATE EXTENSION pg_cron" in result.stderr and "'postgres'" in result.stderr


def test_schedule_rejects_a_bad_cron_expression(cron_db):
    result = run_cli("schedule", "--dsn", cron_db, "--cron", "every tuesday")
    assert result.returncode == 2, result.stderr
    assert "every tuesday" in result.stderr and len(result.stderr.strip().splitlines()) == 1
