"""The purge never waits for the application and never deletes what it could not lock.

Real concurrent sessions: one connection plays the application, another the purge.
"""

import threading
import time

import psycopg
import pytest

from helpers import add_stack, purge, stack_exists


def _purge_in_thread(dsn: str, **options):
    result: dict = {}

    def target():
        try:
            result["progress"] = purge(dsn, **options)
        except Exception as exc:  # noqa: BLE001 - reported to the test below
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, result


@pytest.mark.parametrize("lock_sql, table_of", [
    ("SELECT 1 FROM customers WHERE id = %s FOR UPDATE", "customer"),
    ("SELECT 1 FROM locations WHERE id = %s FOR NO KEY UPDATE", "location"),
    ("SELECT 1 FROM contacts WHERE id = %s FOR SHARE", "contact"),
])
def test_rows_an_application_holds_are_skipped_not_waited_for(ref_db, ref_conn, lock_sql, table_of):
    held = add_stack(ref_conn, locations=2)
    free = add_stack(ref_conn)
    key = {"customer": held.customer, "location": held.locations[1], "contact": held.contacts[1]}[table_of]
    with psycopg.connect(ref_db) as app:
        app.execute(lock_sql, (key,))  # the application's open transaction holds the row
        thread, result = _purge_in_thread(ref_db, batch_size=10)
        thread.join(timeout=20)
        assert not thread.is_alive(), "the purge waited for the application's lock"
        assert "error" not in result, result.get("error")
        app.rollback()
    assert stack_exists(ref_conn, held), "a stack with a row held by the application was deleted"
    assert not stack_exists(ref_conn, free)
    # Once the application lets go, the next run takes it.
    purge(ref_db, batch_size=10)
    assert not stack_exists(ref_conn, held)


def test_case_inserted_by_an_open_transaction_keeps_the_stack(ref_db, ref_conn):
    """The application is attaching a case (holding a key-share lock on the location)
    while the purge runs: the stack is skipped, and after the case commits it stays."""
    stack = add_stack(ref_conn)
    with psycopg.connect(ref_db) as app:
        app.execute("INSERT INTO cases (location_id, subject) VALUES (%s, 'new')", (stack.locations[0],))
        progress = purge(ref_db, batch_size=10)
        assert progress.customers == 0
        app.commit()
    purge(ref_db, batch_size=10)
    assert stack_exists(ref_conn, stack)
    assert ref_conn.execute("SELECT count(*) FROM cases WHERE location_id = %s", (stack.locations[0],)).fetchone()[0] == 1


def test_case_attached_after_the_batch_locked_its_stack_fails_cleanly(ref_db, ref_conn):
    """A case inserted once the batch holds its locks waits, then gets a foreign-key error
    after the batch commits: it is never silently lost."""
    stack = add_stack(ref_conn)
    run_id = ref_conn.execute("SELECT adhoc_gc._start_run('test', 10, NULL, NULL, true)").fetchone()[0]
    with psycopg.connect(ref_db) as purger, psycopg.connect(ref_db) as app:
        purger.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        row = purger.execute("SELECT customers_deleted FROM adhoc_gc.purge_batch(%s, NULL, 10)", (run_id,)).fetchone()
        assert row == (1,)
        outcome: dict = {}

        def attach_case():
            try:
                app.execute("INSERT INTO cases (location_id, subject) VALUES (%s, 'late')", (stack.locations[0],))
                app.commit()
                outcome["result"] = "committed"
            except psycopg.errors.ForeignKeyViolation:
                app.rollback()
                outcome["result"] = "foreign key violation"

        thread = threading.Thread(target=attach_case)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive(), "the insert should wait for the batch's lock on the location"
        purger.commit()
        thread.join(timeout=10)
    assert outcome["result"] == "foreign key violation"
    assert not stack_exists(ref_conn, stack)
    assert ref_conn.execute("SELECT count(*) FROM cases").fetchone()[0] == 0


def test_case_committed_between_candidate_listing_and_purge_is_respected(ref_db, ref_conn):
    """A candidate list computed earlier is never trusted: the DELETE re-checks."""
    stack = add_stack(ref_conn)
    assert ref_conn.execute("SELECT count(*) FROM adhoc_gc.candidates").fetchone()[0] == 1
    ref_conn.execute("INSERT INTO devices (location_id) VALUES (%s)", (stack.locations[0],))
    purge(ref_db, batch_size=10)
    assert stack_exists(ref_conn, stack)


def test_purge_batch_refuses_read_committed(ref_db, ref_conn):
    """Its safety rests on one snapshot for the whole batch: READ COMMITTED is refused."""
    stack = add_stack(ref_conn)
    run_id = ref_conn.execute("SELECT adhoc_gc._start_run('test', 10, NULL, NULL, true)").fetchone()[0]
    with psycopg.connect(ref_db) as conn:
        with pytest.raises(psycopg.errors.InvalidTransactionState, match="must run at REPEATABLE READ"):
            conn.execute("SELECT * FROM adhoc_gc.purge_batch(%s, NULL, 10)", (run_id,))
    assert stack_exists(ref_conn, stack)


GATE_LOCK = 4343  # an advisory lock key; while the test holds it, a batch's customer deletes wait


def _gate_customer_deletes(conn: psycopg.Connection) -> None:
    """Deleting a customer polls (never waits on) GATE_LOCK until the test lets go of it. The
    batch's DELETE removes the customers first (the archive reads them first), so it can be
    held there: its snapshot taken, its customers locked, its locations not yet reached."""
    conn.execute(f"""
        CREATE FUNCTION public.gated_customer_delete() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN
            WHILE NOT pg_catalog.pg_try_advisory_xact_lock_shared({GATE_LOCK}) LOOP
                PERFORM pg_catalog.pg_sleep(0.01);
            END LOOP;
            RETURN OLD;
        END $$;
        CREATE TRIGGER gated_customer_delete BEFORE DELETE ON public.customers
            FOR EACH ROW EXECUTE FUNCTION public.gated_customer_delete()""")


def _wait_until_at_the_gate(conn: psycopg.Connection, pid_query: str) -> None:
    for _ in range(500):
        if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND " + pid_query
                        ).fetchone()[0]:
            return
        time.sleep(0.01)
    raise AssertionError("the batch never reached the gate")


@pytest.mark.parametrize("how", ["runner", "procedure"])
@pytest.mark.parametrize("on_delete", ["NO ACTION", "CASCADE", "SET NULL"])
def test_case_committed_inside_the_batch_undoes_it_and_the_batch_is_taken_again(ref_db, ref_conn, on_delete, how):
    """A case attached to a stack's location after the batch's snapshot was taken, and
    committed while the batch is inside its DELETE (before it reaches that location): the
    DELETE fails (a foreign-key violation, or with CASCADE and SET NULL a serialization
    failure instead of cascading into a row its snapshot does not see), the batch is undone
    and taken again in a new transaction, whose snapshot sees the case. The stack stays, the
    case keeps its location, the other stack of the batch is purged, the run succeeds."""
    ref_conn.execute("ALTER TABLE cases DROP CONSTRAINT cases_location_id_fkey, "
                     "ADD CONSTRAINT cases_location_id_fkey FOREIGN KEY (location_id) "
                     f"REFERENCES locations (id) ON DELETE {on_delete}")
    held, free = add_stack(ref_conn), add_stack(ref_conn)
    _gate_customer_deletes(ref_conn)
    with psycopg.connect(ref_db, autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE_LOCK,))
        if how == "runner":
            thread, result = _purge_in_thread(ref_db, batch_size=10)
            _wait_until_at_the_gate(gate, "backend_type = 'client backend' AND query LIKE '%%purge_batch%%'")
        else:
            result = {}

            def call():
                try:
                    with psycopg.connect(ref_db, autocommit=True) as conn:
                        conn.execute("CALL adhoc_gc.purge(batch_size => 10)")
                except Exception as exc:  # noqa: BLE001 - reported below
                    result["error"] = exc

            thread = threading.Thread(target=call)
            thread.start()
            _wait_until_at_the_gate(gate, "query LIKE 'CALL adhoc_gc.purge%%'")
        with psycopg.connect(ref_db) as app:
            app.execute("SET lock_timeout = '5s'")  # the location is not locked yet: no wait
            app.execute("INSERT INTO cases (location_id, subject) VALUES (%s, 'arrived mid-batch')", (held.locations[0],))
            app.commit()
        gate.execute("SELECT pg_advisory_unlock(%s)", (GATE_LOCK,))
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert "error" not in result, result.get("error")
    assert stack_exists(ref_conn, held)
    assert ref_conn.execute("SELECT location_id FROM cases WHERE subject = 'arrived mid-batch'").fetchall() == \
        [(held.locations[0],)]
    assert not stack_exists(ref_conn, free)
    status, retries, customers = ref_conn.execute(
        "SELECT status, batch_retries, customers_deleted FROM adhoc_gc.runs ORDER BY id DESC LIMIT 1").fetchone()
    assert (status, customers) == ("succeeded", 1)
    assert retries >= 1
