"""The package on a second PostgreSQL major version: pgserver's (16, from PyPI), beside the
machine's (15) that the rest of the suite uses."""

import psycopg

from adhoc_gc.throwaway import PgserverPostgres
from helpers import add_stack, deploy_mapping, load_reference_schema, purge, stack_exists


def test_deploy_and_purge_on_pgserver_postgres():
    server = PgserverPostgres().start()
    try:
        dsn = server.dsn("postgres")
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = conn.info.server_version
            conn.execute("CREATE DATABASE other_version")
        dsn = server.dsn("other_version")
        load_reference_schema(dsn)
        deploy_mapping(dsn)
        deploy_mapping(dsn)  # idempotent there too
        with psycopg.connect(dsn, autocommit=True) as conn:
            gone = add_stack(conn, locations=2)
            kept = add_stack(conn, age="3 days")
            progress = purge(dsn, batch_size=1)
            assert (progress.customers, progress.locations, progress.contacts) == (1, 2, 2)
            assert not stack_exists(conn, gone) and stack_exists(conn, kept)
            conn.execute("CALL adhoc_gc.purge(batch_size => 5)")
            assert conn.execute("SELECT trigger FROM adhoc_gc.runs ORDER BY id DESC LIMIT 1").fetchone() == ("sql",)
    finally:
        server.stop()
    assert version // 10000 != 15 or version >= 160000, version
