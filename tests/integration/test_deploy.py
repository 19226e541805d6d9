"""Deploy re-creates views and functions every time, even when a view's columns change."""

import pytest

from adhoc_gc.errors import RunFailed
from helpers import DEFAULT_MAPPING, add_stack, deploy_mapping


def test_a_view_whose_columns_changed_is_replaced_with_its_dependents(ref_db, ref_conn):
    # What an older version might have left: an eligibility view of another shape, and our
    # own views built on it.
    ref_conn.execute("DROP VIEW adhoc_gc.blocked_summary, adhoc_gc.forecast")
    ref_conn.execute("DROP VIEW adhoc_gc.eligibility")
    ref_conn.execute("CREATE VIEW adhoc_gc.eligibility AS SELECT 1::text AS customer_id, true AS eligible, "
                     "NULL::timestamptz AS eligible_at, '{}'::text[] AS blocked_by")
    ref_conn.execute("CREATE VIEW adhoc_gc.forecast AS SELECT count(*) AS n FROM adhoc_gc.eligibility")
    stack = add_stack(ref_conn)
    deploy_mapping(ref_db, DEFAULT_MAPPING)
    assert ref_conn.execute("SELECT customer_id FROM adhoc_gc.eligibility").fetchall() == [(stack.customer,)]
    assert ref_conn.execute("SELECT count(*) FROM adhoc_gc.forecast").fetchone() == (30,)


def test_an_analysts_view_on_ours_is_never_dropped(ref_db, ref_conn):
    ref_conn.execute("DROP VIEW adhoc_gc.blocked_summary, adhoc_gc.forecast")
    ref_conn.execute("DROP VIEW adhoc_gc.eligibility")
    ref_conn.execute("CREATE VIEW adhoc_gc.eligibility AS SELECT 1::text AS customer_id")
    ref_conn.execute("CREATE VIEW public.my_report AS SELECT * FROM adhoc_gc.eligibility")
    with pytest.raises(RunFailed, match="nothing changed.*depend"):
        deploy_mapping(ref_db, DEFAULT_MAPPING)
    assert ref_conn.execute("SELECT * FROM public.my_report").fetchall() == [("1",)]


def test_deploy_twice_replaces_rather_than_adds(ref_db, ref_conn):
    before = ref_conn.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'adhoc_gc'::regnamespace").fetchone()
    deploy_mapping(ref_db, DEFAULT_MAPPING)
    after = ref_conn.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'adhoc_gc'::regnamespace").fetchone()
    assert before == after, "a re-deploy must replace functions, not add overloads"
