"""Crash safety: the purge killed at any moment leaves whole stacks, honest run records, and
a next run that notices the dead one (`abandoned`) and finishes the work.

Real processes: the CLI (`python -m adhoc_gc purge`) or a client running
`CALL adhoc_gc.purge(...)` in a subprocess, killed with SIGKILL, or its server backend
ended with `pg_terminate_backend`.

After every crash:
- no stack is half deleted (`helpers.stack_exists` asserts it);
- the runs' totals (customers, locations, contacts) equal what is gone, and the archive
  holds one row per stack gone: a batch is all or nothing, counters included;
- the dead run is still `running` (nobody could close it), and the next run marks it
  `abandoned` (with `finished_at`) before finishing the work itself (`succeeded`, no
  eligible stack left, the others untouched).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psycopg
import pytest

from helpers import assert_one_error_line, Stack, add_stack, stack_exists

CLI_APPLICATION_NAME = "adhoc-gc"  # what the runner's connections call themselves (adhoc_gc.db)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    """The CLI must not pick up the caller's config or DSN: an empty folder, no ADHOC_GC_*."""
    for name in list(os.environ):
        if name.startswith("ADHOC_GC_") and name != "ADHOC_GC_TEST_DSN":
            monkeypatch.delenv(name)
    empty = tmp_path / "cwd"
    empty.mkdir()
    monkeypatch.chdir(empty)


def _seed(conn: psycopg.Connection, eligible: int, seed: int) -> tuple[list[Stack], list[Stack]]:
    rng = random.Random(seed)
    stacks = [add_stack(conn, locations=rng.choice([1, 1, 2, 3]), contacts_per_location=rng.choice([0, 1, 2]))
              for _ in range(eligible)]
    kept = [add_stack(conn, adhoc=False, locations=2), add_stack(conn, age="1 day")]
    return stacks, kept


def _start_cli(dsn: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "adhoc_gc", "purge", "--dsn", dsn, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )


def _run_cli(dsn: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adhoc_gc", "purge", "--dsn", dsn, *args],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)


def _wait_for(what: str, condition, timeout: float = 20.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def _running_run(conn: psycopg.Connection, newer_than: int = 0):
    """(id, batches, backend_pid) of the run in progress, if any."""
    return conn.execute("SELECT id, batches, backend_pid FROM adhoc_gc.runs "
                        "WHERE status = 'running' AND id > %s ORDER BY id DESC LIMIT 1", (newer_than,)).fetchone()


def _max_run_id(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT coalesce(max(id), 0) FROM adhoc_gc.runs").fetchone()[0]


def _wait_backend_gone(conn: psycopg.Connection, pid: int) -> None:
    _wait_for(f"backend {pid} to end", lambda: not conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)", (pid,)).fetchone()[0], timeout=20)


def _check_consistent(conn: psycopg.Connection, stacks: list[Stack], kept: list[Stack]) -> int:
    """No half-deleted stack; run totals and archive match what is gone. Returns stacks gone."""
    gone = [s for s in stacks if not stack_exists(conn, s)]  # stack_exists asserts "never half"
    assert all(stack_exists(conn, s) for s in kept), "a stack that is not eligible was deleted"
    totals = conn.execute("SELECT coalesce(sum(customers_deleted), 0), coalesce(sum(locations_deleted), 0), "
                          "coalesce(sum(contacts_deleted), 0) FROM adhoc_gc.runs").fetchone()
    assert tuple(totals) == (len(gone), sum(len(s.locations) for s in gone), sum(len(s.contacts) for s in gone)), \
        f"run totals {totals} do not match what is gone"
    archived = sorted(int(r[0]) for r in conn.execute("SELECT customer_id FROM adhoc_gc.purged").fetchall())
    assert archived == sorted(s.customer for s in gone), "the archive does not match what is gone"
    return len(gone)


def _assert_dead_run_left_running(conn: psycopg.Connection, run_id: int) -> None:
    status, finished_at = conn.execute("SELECT status, finished_at FROM adhoc_gc.runs WHERE id = %s",
                                       (run_id,)).fetchone()
    assert (status, finished_at) == ("running", None), \
        f"run {run_id} of a killed purge is {status!r} (finished_at {finished_at}); nobody could have closed it"


def _assert_finished_the_work(conn: psycopg.Connection, stacks: list[Stack], kept: list[Stack],
                              dead_runs: list[int], new_run: int) -> None:
    rows = conn.execute("SELECT id, status, finished_at IS NOT NULL, error FROM adhoc_gc.runs "
                        "WHERE id = ANY (%s) ORDER BY id", (dead_runs,)).fetchall()
    for run_id, status, finished, error in rows:
        assert status == "abandoned" and finished and error, \
            f"dead run {run_id} should be abandoned with finished_at and a reason: {status}, {finished}, {error}"
    assert len(rows) == len(dead_runs)
    status, finished = conn.execute("SELECT status, finished_at IS NOT NULL FROM adhoc_gc.runs WHERE id = %s",
                                    (new_run,)).fetchone()
    assert (status, finished) == ("succeeded", True)
    assert _check_consistent(conn, stacks, kept) == len(stacks), "eligible stacks left after a complete run"
    assert conn.execute("SELECT count(*) FROM adhoc_gc.candidates").fetchone()[0] == 0


GATE_LOCK = 4242  # an advisory lock key; while the test holds it, a batch cannot finish


def _gate_contact_deletes(conn: psycopg.Connection) -> None:
    """Deleting a contact takes a shared advisory lock on GATE_LOCK until its transaction
    ends: free, it costs nothing; while the test holds the lock exclusively, the batch waits
    inside its DELETE (well within the default 5 s lock_timeout) until the test lets go."""
    conn.execute(f"""
        CREATE FUNCTION public.gated_contact_delete() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_catalog.pg_advisory_xact_lock_shared({GATE_LOCK}); RETURN OLD; END $$;
        CREATE TRIGGER gated_contact_delete BEFORE DELETE ON public.contacts
            FOR EACH ROW EXECUTE FUNCTION public.gated_contact_delete();
    """)


def _backend(conn: psycopg.Connection, pid: int):
    """(state, wait_event, query) of a backend, or None once it is gone."""
    return conn.execute("SELECT state, wait_event, query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()


def _waiting_inside_a_batch(backend) -> bool:
    """Executing purge_batch and stopped at the gate, inside its DELETE."""
    return bool(backend) and backend[0] == "active" and "purge_batch" in backend[2] and backend[1] == "advisory"


def _batches(conn: psycopg.Connection, run_id: int) -> int:
    return conn.execute("SELECT batches FROM adhoc_gc.runs WHERE id = %s", (run_id,)).fetchone()[0]


@pytest.mark.parametrize("where", ["inside a batch", "between batches"])
def test_sigkill_of_the_runner(ref_db, ref_conn, where):
    """SIGKILL the CLI after it committed two batches, at a moment pg_stat_activity proves:
    - inside a batch: its backend is executing purge_batch, held inside the DELETE (a trigger
      waits for an advisory lock the test holds, so the batch cannot end before the kill);
    - between batches: its backend is idle, no transaction open (the runner's --sleep).
    The batch in flight is never committed (its backend finishes the statement, finds its
    client gone and rolls back): no half-deleted stack, the committed batches whole and
    counted, the run left `running`; the next purge marks it `abandoned` and finishes."""
    rng = random.Random(1)
    stacks = [add_stack(ref_conn, locations=rng.choice([1, 2]), contacts_per_location=rng.choice([1, 2]))
              for _ in range(30)]  # every stack has a contact, so every batch passes the gate
    kept = [add_stack(ref_conn, adhoc=False, locations=2), add_stack(ref_conn, age="1 day")]
    _gate_contact_deletes(ref_conn)
    with psycopg.connect(ref_db, autocommit=True) as gate:
        runner = _start_cli(ref_db, "--batch-size", "2", "--sleep", "0.5" if where == "inside a batch" else "1.5")
        try:
            run_id, _, pid = _wait_for("two committed batches",
                                       lambda: (r := _running_run(ref_conn)) and r[1] >= 2 and r)
            if where == "inside a batch":
                gate.execute("SELECT pg_advisory_lock(%s)", (GATE_LOCK,))  # the next batch stops at the gate
                _wait_for("the runner's backend inside a batch",
                          lambda: _waiting_inside_a_batch(_backend(ref_conn, pid)), interval=0.005)
            else:
                _wait_for("the runner's backend between batches", lambda: (
                    (b := _backend(ref_conn, pid)) and b[0] == "idle" and _batches(ref_conn, run_id) >= 2))
            committed = _batches(ref_conn, run_id)
            runner.kill()
            runner.wait(timeout=10)
            if where == "inside a batch":
                # Still held at the gate after the runner died: the kill landed inside the batch.
                assert _waiting_inside_a_batch(_backend(ref_conn, pid)), _backend(ref_conn, pid)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait(timeout=10)
            gate.execute("SELECT pg_advisory_unlock_all()")
    assert runner.returncode == -signal.SIGKILL
    _wait_backend_gone(ref_conn, pid)  # the server notices the client is gone; its locks go with it

    _assert_dead_run_left_running(ref_conn, run_id)
    assert _batches(ref_conn, run_id) == committed, "the batch in flight at the kill was committed"
    gone = _check_consistent(ref_conn, stacks, kept)
    assert gone == 2 * committed  # every batch of two deleted two stacks; nothing of the one in flight

    ref_conn.execute("DROP TRIGGER gated_contact_delete ON public.contacts")
    result = _run_cli(ref_db, "--batch-size", "5")
    assert result.returncode == 0, result.stderr
    new_run = _max_run_id(ref_conn)
    _assert_finished_the_work(ref_conn, stacks, kept, [run_id], new_run)


def _terminate_inside_a_batch(conn: psycopg.Connection, pid: int) -> bool:
    """pg_terminate_backend(pid), but only at a moment it is executing purge_batch."""
    row = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE pid = %s AND state = 'active' AND query LIKE '%%purge_batch%%'", (pid,)).fetchone()
    return bool(row and row[0])


def test_backend_terminated_at_random_moments(ref_db, ref_conn):
    """pg_terminate_backend on the runner's backend, five times: three times while it is
    inside a batch (a row trigger makes deleting a contact take 40 ms, so a batch lasts a
    while and the termination lands in its DELETE), twice at a random moment. Each time the
    CLI exits 1 with one line on stderr and no traceback, everything is consistent, and the
    next run marks the dead one abandoned; a last run finishes the work."""
    stacks, kept = _seed(ref_conn, 80, seed=2)
    ref_conn.execute("""
        CREATE FUNCTION public.slow_contact_delete() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_sleep(0.04); RETURN OLD; END $$;
        CREATE TRIGGER slow_contact_delete BEFORE DELETE ON public.contacts
            FOR EACH ROW EXECUTE FUNCTION public.slow_contact_delete();
    """)
    rng = random.Random(2)
    dead_runs: list[int] = []
    for attempt in range(5):
        before = _max_run_id(ref_conn)
        runner = _start_cli(ref_db, "--batch-size", "2", "--sleep", "0.05")
        try:
            if attempt % 2 == 0:
                # Inside a batch, after one to three committed batches.
                wanted = rng.randint(1, 3)
                run_id, _, pid = _wait_for(f"{wanted} committed batches",
                                           lambda: (r := _running_run(ref_conn, before)) and r[1] >= wanted and r)
                _wait_for("the runner inside a batch", lambda: _terminate_inside_a_batch(ref_conn, pid),
                          interval=0.002)
            else:
                # Any moment: connecting, checking, starting the run, in a batch, sleeping.
                pid = _wait_for("the runner's backend", lambda: (r := ref_conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
                    (CLI_APPLICATION_NAME,)).fetchone()) and r[0], interval=0.005)
                time.sleep(rng.uniform(0.0, 1.0))
                ref_conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            _, stderr = runner.communicate(timeout=30)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
        _wait_backend_gone(ref_conn, pid)
        assert runner.returncode == 1, f"attempt {attempt}: exit {runner.returncode}, stderr {stderr!r}"
        assert "Traceback" not in stderr, stderr
        assert_one_error_line(stderr)

        # The runs a dead session left: still running (whatever it had committed stays counted).
        started = [r[0] for r in ref_conn.execute(
            "SELECT id FROM adhoc_gc.runs WHERE id > %s AND status <> 'skipped' ORDER BY id", (before,)).fetchall()]
        assert len(started) <= 1, started
        for run_id in started:
            _assert_dead_run_left_running(ref_conn, run_id)
        # Earlier dead runs were marked abandoned by this attempt's run, if it got to start one.
        if started:
            for old in dead_runs:
                assert ref_conn.execute("SELECT status FROM adhoc_gc.runs WHERE id = %s", (old,)).fetchone()[0] \
                    == "abandoned", f"run {old} was not marked abandoned by run {started[0]}"
        dead_runs += started
        gone = _check_consistent(ref_conn, stacks, kept)
        assert gone < len(stacks), "the runner finished before it could be terminated: seed more stacks"
    assert dead_runs, "no run ever started"

    ref_conn.execute("DROP TRIGGER slow_contact_delete ON public.contacts")
    result = _run_cli(ref_db, "--batch-size", "10")
    assert result.returncode == 0, result.stderr
    _assert_finished_the_work(ref_conn, stacks, kept, dead_runs, _max_run_id(ref_conn))


CALL_CLIENT = textwrap.dedent("""
    import sys, psycopg
    with psycopg.connect(sys.argv[1], autocommit=True, application_name="adhoc-gc-call-test") as conn:
        conn.execute("CALL adhoc_gc.purge(batch_size => 2, pause => interval '300 milliseconds')")
""")


def test_sigkill_of_a_client_inside_call_purge_then_terminate(ref_db, ref_conn):
    """A client running CALL adhoc_gc.purge(...) is SIGKILLed: the server-side loop does not
    notice (nothing is sent to the client between batches) and keeps purging; then its
    backend is terminated. Same invariants, and the next purge abandons the dead run."""
    stacks, kept = _seed(ref_conn, 40, seed=3)
    client = subprocess.Popen([sys.executable, "-c", CALL_CLIENT, ref_db],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        run_id, _, pid = _wait_for("two committed batches",
                                   lambda: (r := _running_run(ref_conn)) and r[1] >= 2 and r)
    finally:
        client.kill()
        client.wait(timeout=10)
    assert client.returncode == -signal.SIGKILL

    # The procedure goes on without its client: one more batch commits after the kill.
    batches_at_kill = ref_conn.execute("SELECT batches FROM adhoc_gc.runs WHERE id = %s", (run_id,)).fetchone()[0]
    _wait_for("a batch after the client died", lambda: ref_conn.execute(
        "SELECT batches FROM adhoc_gc.runs WHERE id = %s", (run_id,)).fetchone()[0] > batches_at_kill)
    time.sleep(random.Random(3).uniform(0.0, 0.3))
    ref_conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    _wait_backend_gone(ref_conn, pid)

    _assert_dead_run_left_running(ref_conn, run_id)
    gone = _check_consistent(ref_conn, stacks, kept)
    assert 6 <= gone < len(stacks)

    # The next purge (here the procedure again) takes the freed lock, abandons the dead run, finishes.
    with psycopg.connect(ref_db, autocommit=True) as conn:
        conn.execute("CALL adhoc_gc.purge(batch_size => 5)")
    _assert_finished_the_work(ref_conn, stacks, kept, [run_id], _max_run_id(ref_conn))


@pytest.mark.parametrize("how", ["pg_cancel_backend", "statement_timeout"])
def test_cancelled_call_purge_does_not_keep_the_purge_lock(ref_db, ref_conn, how):
    """A `CALL adhoc_gc.purge(...)` cancelled in a session that stays open (Ctrl-C in psql is
    pg_cancel_backend; or the session's statement_timeout; or a pooled connection) must not
    keep the one-purge-at-a-time lock: the next purge runs (it does not report "another
    purge is running" when none is), and the cancelled run does not stay `running`.

    Fails today: PL/pgSQL's `WHEN OTHERS` does not catch query_canceled, so the procedure's
    error path (mark the run failed, release the lock) never runs, and the session-level
    advisory lock outlives the CALL for as long as the session lives."""
    stacks, kept = _seed(ref_conn, 30, seed=4)
    with psycopg.connect(ref_db, autocommit=True) as session:
        if how == "statement_timeout":
            session.execute("SET statement_timeout = '1s'")
        outcome: dict = {}

        def call():
            try:
                session.execute("CALL adhoc_gc.purge(batch_size => 2, pause => interval '300 milliseconds')")
                outcome["result"] = "finished"
            except psycopg.Error as exc:
                outcome["result"] = type(exc).__name__

        thread = threading.Thread(target=call)
        thread.start()
        run_id, _, pid = _wait_for("two committed batches", lambda: (r := _running_run(ref_conn)) and r[1] >= 2 and r)
        if how == "pg_cancel_backend":
            ref_conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
        thread.join(timeout=20)
        assert outcome.get("result") == "QueryCanceled", outcome

        # The session is still open (as a psql prompt or a pooled connection would be).
        _check_consistent(ref_conn, stacks, kept)
        result = _run_cli(ref_db, "--batch-size", "5")
        status = ref_conn.execute("SELECT status FROM adhoc_gc.runs WHERE id = %s", (run_id,)).fetchone()[0]
        assert result.returncode == 0, (
            f"the next purge exited {result.returncode} ({result.stderr.strip()}) while the cancelled CALL's "
            f"session is idle; the cancelled run {run_id} is {status!r}")
        assert status in ("failed", "abandoned"), status
        _check_consistent(ref_conn, stacks, kept)
