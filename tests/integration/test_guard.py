"""Guard rails: a run with too many candidates deletes nothing unless forced; batches are
bounded by lock_timeout and statement_timeout."""

import psycopg
import pytest

from helpers import add_stack, deploy_mapping, mapping_from_toml, purge, run_cli, stack_exists


def _guarded(ref_db, guard_toml: str):
    mapping = mapping_from_toml(guard_toml)
    deploy_mapping(ref_db, mapping)
    return mapping


@pytest.mark.parametrize("guard, stacks, refused", [
    ("max_customers_per_run = 3", 3, False),  # at the cap: runs
    ("max_customers_per_run = 3", 4, True),  # over it: refused
    ("max_fraction_of_adhoc = 0.5", 2, False),  # 2 of 4 ad-hoc customers
    ("max_fraction_of_adhoc = 0.5", 3, True),  # 3 of 4
])
def test_caps_refuse_the_whole_run(ref_db, ref_conn, tmp_path, guard, stacks, refused):
    config = tmp_path / "adhoc-gc.toml"
    config.write_text(f"[guard]\n{guard}\n")
    _guarded(ref_db, config.read_text())
    eligible = [add_stack(ref_conn) for _ in range(stacks)]
    for _ in range(4 - stacks):
        add_stack(ref_conn, age="1 day")  # ad hoc, not yet eligible
    result = run_cli("purge", "--dsn", ref_db, "--config", str(config))
    if not refused:
        assert result.returncode == 0, result.stderr
        assert not any(stack_exists(ref_conn, s) for s in eligible)
        return
    assert result.returncode == 3, result.stderr
    assert "refused" in result.stderr and "--force" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert all(stack_exists(ref_conn, s) for s in eligible)
    status, error = ref_conn.execute("SELECT status, error FROM adhoc_gc.runs").fetchone()
    assert status == "refused" and "[guard]" in error
    # The procedure is held by the same cap ...
    with pytest.raises(psycopg.errors.CheckViolation, match="guard"):
        ref_conn.execute("CALL adhoc_gc.purge()")
    assert all(stack_exists(ref_conn, s) for s in eligible)
    # ... and --force is the only way past.
    forced = run_cli("purge", "--dsn", ref_db, "--config", str(config), "--force")
    assert forced.returncode == 0, forced.stderr
    assert not any(stack_exists(ref_conn, s) for s in eligible)


def test_call_purge_with_force(ref_db, ref_conn):
    _guarded(ref_db, "[guard]\nmax_customers_per_run = 1\n")
    stacks = [add_stack(ref_conn) for _ in range(2)]
    ref_conn.execute("CALL adhoc_gc.purge(force => true)")
    assert not any(stack_exists(ref_conn, s) for s in stacks)


def test_lock_timeout_bounds_a_wait_in_an_unmapped_cascade(ref_db, ref_conn):
    """The purge skips rows it cannot lock, but a delete that cascades elsewhere may wait:
    lock_timeout turns a long wait into a failed batch instead of a stalled application."""
    mapping = _guarded(ref_db, "[guard]\nlock_timeout = '300 milliseconds'\n")
    stack = add_stack(ref_conn)
    # A trigger the mapping knows nothing about touches a row the application holds.
    ref_conn.execute("""
        CREATE TABLE audit_log (id int PRIMARY KEY, n int);
        INSERT INTO audit_log VALUES (1, 0);
        CREATE FUNCTION log_delete() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN UPDATE public.audit_log SET n = n + 1 WHERE id = 1; RETURN OLD; END $$;
        CREATE TRIGGER log_customer_delete BEFORE DELETE ON customers FOR EACH ROW EXECUTE FUNCTION log_delete();
    """)
    with psycopg.connect(ref_db) as app:
        app.execute("UPDATE audit_log SET n = n WHERE id = 1")  # holds the row
        with pytest.raises(Exception, match="lock timeout"):
            purge(ref_db, mapping, batch_size=5)
        app.rollback()
    assert stack_exists(ref_conn, stack)
    assert ref_conn.execute("SELECT status FROM adhoc_gc.runs").fetchone() == ("failed",)


def test_statement_timeout_bounds_one_batch(ref_db, ref_conn):
    mapping = _guarded(ref_db, "[guard]\nstatement_timeout = '200 milliseconds'\n")
    stack = add_stack(ref_conn)
    ref_conn.execute("""
        CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_sleep(2); RETURN OLD; END $$;
        CREATE TRIGGER slow BEFORE DELETE ON contacts FOR EACH ROW EXECUTE FUNCTION slow_delete();
    """)
    with pytest.raises(Exception, match="statement timeout"):
        purge(ref_db, mapping, batch_size=5)
    assert stack_exists(ref_conn, stack)


@pytest.mark.parametrize("timeout, fails", [("300 milliseconds", True), ("20 seconds", False)])
def test_statement_timeout_bounds_one_batch_of_the_procedure(ref_db, ref_conn, timeout, fails):
    """CALL purge(...) holds [guard] statement_timeout per batch too. PostgreSQL cannot time
    out one statement inside a CALL, so a batch that ran longer is undone when it ends: the
    run is recorded failed with the reason, nothing of the batch stays, and the lock is let
    go while the caller's session stays open. A batch within the limit commits."""
    _guarded(ref_db, f"[guard]\nstatement_timeout = '{timeout}'\n")
    stack = add_stack(ref_conn)  # one contact: its batch lasts the trigger's second
    ref_conn.execute("""
        CREATE FUNCTION public.slow_delete() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_sleep(1); RETURN OLD; END $$;
        CREATE TRIGGER slow BEFORE DELETE ON public.contacts FOR EACH ROW EXECUTE FUNCTION public.slow_delete();
    """)
    with psycopg.connect(ref_db, autocommit=True) as session:
        if fails:
            with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
                session.execute("CALL adhoc_gc.purge(batch_size => 5)")
        else:
            session.execute("CALL adhoc_gc.purge(batch_size => 5)")
        # The caller's session is still open (psql, a pool): the lock must be free all the same.
        assert ref_conn.execute("SELECT adhoc_gc._try_purge_lock() AND adhoc_gc._release_purge_lock()").fetchone()[0]
    status, error, batches, customers = ref_conn.execute(
        "SELECT status, error, batches, customers_deleted FROM adhoc_gc.runs").fetchone()
    archived = ref_conn.execute("SELECT count(*) FROM adhoc_gc.purged").fetchone()[0]
    if fails:
        assert status == "failed" and "[guard] statement_timeout" in error and "undone" in error, (status, error)
        assert (batches, customers, archived) == (0, 0, 0)
        assert stack_exists(ref_conn, stack)
    else:
        assert (status, error, batches, customers, archived) == ("succeeded", None, 1, 1, 1)
        assert not stack_exists(ref_conn, stack)
