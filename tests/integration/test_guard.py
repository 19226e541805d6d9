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
