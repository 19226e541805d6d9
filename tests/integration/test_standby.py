"""On a streaming standby the purge does nothing: the runner exits 3, CALL returns quietly."""

import os
import pwd
import shutil
import time

import psycopg
import pytest

from adhoc_gc.throwaway import ThrowawayPostgres, _free_port

from helpers import add_stack, deploy_mapping, load_reference_schema, run_cli


@pytest.fixture
def primary_and_standby():
    primary = ThrowawayPostgres().start()
    standby_dir = primary.root / "standby"
    try:
        with psycopg.connect(primary.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
        dsn = primary.dsn("app")
        load_reference_schema(dsn)
        deploy_mapping(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            add_stack(conn)
        backup = primary._run([primary.bindir / "pg_basebackup", "-D", standby_dir, "-R", "-X", "stream", "-c", "fast",
                               "-h", primary.host, "-p", primary.port, "-U", primary.superuser])
        assert backup.returncode == 0, backup.stderr
        port = _free_port()
        with open(standby_dir / "postgresql.auto.conf", "a") as conf:
            conf.write(f"port = '{port}'\nunix_socket_directories = '{primary.root}'\n")
        if primary.run_as:
            entry = pwd.getpwnam(primary.run_as)
            for path in [standby_dir, *standby_dir.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid)
        started = primary._run([primary.bindir / "pg_ctl", "-D", standby_dir, "-l", primary.root / "standby.log",
                                "-w", "start"])
        assert started.returncode == 0, (primary.root / "standby.log").read_text()
        standby_dsn = f"host={primary.host} port={port} user={primary.superuser} dbname=app"
        for _ in range(50):
            with psycopg.connect(standby_dsn, autocommit=True) as conn:
                if conn.execute("SELECT count(*) FROM customers").fetchone()[0] == 1:
                    break
            time.sleep(0.1)
        yield dsn, standby_dsn
    finally:
        if standby_dir.exists():
            primary._run([primary.bindir / "pg_ctl", "-D", standby_dir, "-m", "immediate", "-w", "stop"])
            shutil.rmtree(standby_dir, ignore_errors=True)
        primary.stop()


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
