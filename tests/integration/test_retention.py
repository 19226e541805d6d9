"""[retention]: every purge that takes the purge lock prunes the `runs` rows and archived
stacks older than its settings, whatever it then ends in (succeeded, failed, refused), through
the runner and through `CALL adhoc_gc.purge(...)` alike. A purge that is skipped (another
one holds the lock) touches nothing.

The retention here is not the default (1 year / 90 days): every row it should prune would
outlive the defaults, so a purge that ignored the mapping's values would prune nothing.
"""

from __future__ import annotations

import psycopg
import pytest

from adhoc_gc.errors import PurgeRefused, PurgeSkipped, RunFailed
from helpers import add_stack, deploy_mapping, mapping_from_toml, purge, stack_exists

MAPPING = """
[retention]
runs = "30 days"
purged = "7 days"

[guard]
max_customers_per_run = 1
"""


@pytest.fixture
def mapping(ref_db):
    mapping = mapping_from_toml(MAPPING)
    deploy_mapping(ref_db, mapping)
    return mapping


def _seed_history(conn: psycopg.Connection) -> dict[str, int]:
    """Two old runs: one past [retention] runs (40 days), one within it (20 days); archived
    stacks past [retention] purged (10 days) and within it (3 days)."""
    old_run, kept_run = [r[0] for r in conn.execute("""
        INSERT INTO adhoc_gc.runs (started_at, finished_at, status, trigger, batch_size)
        VALUES (now() - interval '40 days', now() - interval '40 days', 'succeeded', 'runner', 10),
               (now() - interval '20 days', now() - interval '20 days', 'failed', 'pg_cron', 10)
        RETURNING id""").fetchall()]
    conn.execute("""
        INSERT INTO adhoc_gc.purged (run_id, customer_id, purged_at, customer, locations, contacts)
        VALUES (%(old)s, 'old-run', now() - interval '40 days', '{}', '[]', '[]'),
               (%(kept)s, 'too-old', now() - interval '10 days', '{}', '[]', '[]'),
               (%(kept)s, 'recent', now() - interval '3 days', '{}', '[]', '[]')""",
                 {"old": old_run, "kept": kept_run})
    return {"old": old_run, "kept": kept_run}


def _history(conn: psycopg.Connection, seeded: dict[str, int]) -> tuple[list[int], list[str]]:
    runs = [r[0] for r in conn.execute("SELECT id FROM adhoc_gc.runs WHERE id = ANY (%s) ORDER BY id",
                                       (list(seeded.values()),)).fetchall()]
    purged = [r[0] for r in conn.execute("SELECT customer_id FROM adhoc_gc.purged WHERE customer_id IN "
                                         "('old-run', 'too-old', 'recent') ORDER BY customer_id").fetchall()]
    return runs, purged


def _refuse_contact_deletes(conn: psycopg.Connection) -> None:
    conn.execute("""
        CREATE FUNCTION public.refuse_delete() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'contacts are kept by policy' USING ERRCODE = 'raise_exception'; END $$;
        CREATE TRIGGER keep_contacts BEFORE DELETE ON public.contacts
            FOR EACH ROW EXECUTE FUNCTION public.refuse_delete();
    """)


def _via_runner(dsn, mapping, expected_error):
    if expected_error is None:
        purge(dsn, mapping, batch_size=10)
    else:
        with pytest.raises(expected_error):
            purge(dsn, mapping, batch_size=10)


def _via_call(dsn, mapping, expected_error):
    with psycopg.connect(dsn, autocommit=True) as conn:
        if expected_error is None:
            conn.execute("CALL adhoc_gc.purge(batch_size => 10)")
        else:
            with pytest.raises(expected_error):
                conn.execute("CALL adhoc_gc.purge(batch_size => 10)")


# outcome -> (eligible stacks, make the batch fail, runner's error, CALL's error)
OUTCOMES = {
    "succeeded": (1, False, None, None),
    "failed": (1, True, RunFailed, psycopg.errors.RaiseException),
    "refused": (2, False, PurgeRefused, psycopg.errors.CheckViolation),  # over max_customers_per_run
}


@pytest.mark.parametrize("via", ["runner", "call"])
@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_every_purge_that_takes_the_lock_applies_retention(ref_db, ref_conn, mapping, via, outcome):
    stacks_count, fail_batch, runner_error, call_error = OUTCOMES[outcome]
    seeded = _seed_history(ref_conn)
    stacks = [add_stack(ref_conn) for _ in range(stacks_count)]
    if fail_batch:
        _refuse_contact_deletes(ref_conn)
    newest_before = ref_conn.execute("SELECT max(id) FROM adhoc_gc.runs").fetchone()[0]

    if via == "runner":
        _via_runner(ref_db, mapping, runner_error)
    else:
        _via_call(ref_db, mapping, call_error)

    status = ref_conn.execute("SELECT status FROM adhoc_gc.runs WHERE id > %s ORDER BY id DESC LIMIT 1",
                              (newest_before,)).fetchone()
    assert status == (outcome,)
    assert all(stack_exists(ref_conn, s) for s in stacks) == (outcome != "succeeded")
    runs, purged = _history(ref_conn, seeded)
    assert runs == [seeded["kept"]], f"[retention] runs = '30 days' not applied by a {outcome} purge via {via}"
    # 'old-run' went with its run (ON DELETE CASCADE), 'too-old' by [retention] purged = '7 days'.
    assert purged == ["recent"], f"[retention] purged = '7 days' not applied by a {outcome} purge via {via}"
    assert ref_conn.execute("SELECT adhoc_gc._try_purge_lock() AND adhoc_gc._release_purge_lock()").fetchone()[0], \
        "the purge kept its lock"


@pytest.mark.parametrize("via", ["runner", "call"])
def test_a_skipped_purge_touches_nothing(ref_db, ref_conn, mapping, via):
    seeded = _seed_history(ref_conn)
    stack = add_stack(ref_conn)
    before = _history(ref_conn, seeded)
    with psycopg.connect(ref_db, autocommit=True) as holder:
        assert holder.execute("SELECT adhoc_gc._try_purge_lock()").fetchone()[0]  # another purge, meanwhile
        if via == "runner":
            _via_runner(ref_db, mapping, PurgeSkipped)
        else:
            _via_call(ref_db, mapping, None)  # the procedure returns, with a notice
    assert ref_conn.execute("SELECT status FROM adhoc_gc.runs ORDER BY id DESC LIMIT 1").fetchone() == ("skipped",)
    assert _history(ref_conn, seeded) == before
    assert before == ([seeded["old"], seeded["kept"]], ["old-run", "recent", "too-old"])
    assert stack_exists(ref_conn, stack)
