"""On a streaming standby the purge does nothing: the runner exits 3, CALL returns quietly."""

import psycopg

from helpers import run_cli


def test_purge_on_a_standby_does_nothing(primary_and_standby):
    primary_dsn, standby_dsn = primary_and_standby
    with psycopg.connect(standby_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        conn.execute("CALL adhoc_gc.purge(batch_size => 10)")  # returns quietly, writes nothing

    result = run_cli("purge", "--dsn", standby_dsn)
    assert result.returncode == 3, result.stderr
    assert "standby" in result.stderr and len(result.stderr.strip().splitlines()) == 1

    with psycopg.connect(primary_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM customers").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM adhoc_gc.runs").fetchone()[0] == 0
