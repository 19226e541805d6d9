"""The purge end to end on the reference schema: what goes, what stays, what is recorded."""

from helpers import add_stack, purge, stack_exists


def test_purge_deletes_eligible_stacks_and_records_the_run(ref_conn, ref_db):
    gone = add_stack(ref_conn, locations=2, contacts_per_location=2)
    kept = add_stack(ref_conn, adhoc=False)

    progress = purge(ref_db, batch_size=10)

    assert not stack_exists(ref_conn, gone)
    assert stack_exists(ref_conn, kept)
    run = ref_conn.execute(
        "SELECT status, trigger, batches, customers_deleted, locations_deleted, contacts_deleted, finished_at IS NOT NULL "
        "FROM adhoc_gc.runs WHERE id = %s", (progress.run_id,)).fetchone()
    assert run == ("succeeded", "runner", 1, 1, 2, 4, True)
    archived = ref_conn.execute(
        "SELECT customer_id, customer->>'id', json_array_length(locations), json_array_length(contacts) "
        "FROM adhoc_gc.purged WHERE run_id = %s", (progress.run_id,)).fetchall()
    assert archived == [(str(gone.customer), str(gone.customer), 2, 4)]
