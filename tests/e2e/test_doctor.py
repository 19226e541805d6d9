"""`adhoc-gc doctor` end to end: the CLI in a subprocess against real databases.

Exit codes: 0 no problem (warnings and info allowed), 4 problems found (each printed with
its fix, and one `adhoc-gc: error:` line on stderr), 1 unreachable database, 2 bad config.
Every fix it prints is run here exactly as printed, and doctor is then satisfied.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import psycopg
import pytest

from helpers import add_stack, deploy_mapping, mapping_from_toml, run_cli

UNREACHABLE_DSN = "host=127.0.0.1 port=1 connect_timeout=2"
FIX = "  fix: "




def doctor(dsn: str, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    result = run_cli("doctor", "--dsn", dsn, *args)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == code, (
        f"doctor: exit {result.returncode}, expected {code}\nstdout: {result.stdout}\nstderr: {result.stderr}")
    if code == 0:
        assert result.stderr == ""
    else:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("adhoc-gc: error: "), result.stderr
    return result


def findings(dsn: str, *args: str, code: int = 0) -> list[dict]:
    return json.loads(doctor(dsn, *args, "--json", code=code).stdout)


def lines_with(output: str, severity: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(severity + " ")]


def fix_of(line: str) -> str:
    assert FIX in line, line
    return line.split(FIX, 1)[1]


def run_sql(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:  # CONCURRENTLY refuses a transaction block
        for statement in statements:
            conn.execute(statement)


def write_config(tmp_path, text: str) -> str:
    path = tmp_path / "adhoc-gc.toml"
    path.write_text(text)
    return str(path)


# --- healthy, and one index missing ---------------------------------------------------------

def test_the_reference_database_is_healthy(ref_db):
    result = doctor(ref_db)
    assert not lines_with(result.stdout, "problem")
    assert not lines_with(result.stdout, "warning")
    assert result.stdout.splitlines()[-1] == "doctor: 0 problems, 0 warnings, 3 info, 19 ok"
    by_check: dict[str, list[dict]] = {}
    for finding in findings(ref_db):
        by_check.setdefault(finding["check"], []).append(finding)
    assert {f["subject"]: f["message"] for f in by_check["index"]} == {
        "public.locations (customer_id)": 'index "locations_customer_id_idx" ([location].customer)',
        "public.contacts (location_id)": 'index "contacts_location_id_idx" ([contact].location)',
        "public.cases (location_id)": 'index "cases_location_id_idx" ([[blockers]] location_case)',
        "public.cases (contact_id)": 'index "cases_contact_id_idx" ([[blockers]] contact_case)',
        "public.devices (location_id)": 'index "devices_location_id_idx" ([[blockers]] location_device)',
    }
    assert [f["message"] for f in by_check["key"]] == [
        'unique index "customers_pkey" ([customer].key)', 'unique index "locations_pkey" ([location].key)',
        'unique index "contacts_pkey" ([contact].key)']
    assert [f["severity"] for f in by_check["lookup"]] == ["info"]
    assert len(by_check["statistics"]) == 5  # the five mapped tables, empty
    assert len(by_check["blocker-keys"]) == 3  # every blocker column has its foreign key
    assert by_check["deployment"][0]["message"].startswith("deployed from this mapping")
    assert by_check["pg_cron"][0]["message"].startswith("not scheduled: pg_cron is not loaded")
    assert all(f["fix"] is None for f in sum(by_check.values(), []))


def test_a_missing_index_is_a_problem_with_its_exact_fix(ref_db):
    run_sql(ref_db, "DROP INDEX cases_contact_id_idx")

    result = doctor(ref_db, code=4)

    problems = lines_with(result.stdout, "problem")
    assert len(problems) == 1
    (line,) = problems
    assert result.stdout.splitlines()[0] == line, "problems come first"
    assert "public.cases (contact_id)" in line and "[[blockers]] contact_case" in line
    fix = fix_of(line)
    assert fix == 'CREATE INDEX CONCURRENTLY "cases_contact_id_adhoc_gc_idx" ON "public"."cases" ("contact_id");'
    assert result.stderr == "adhoc-gc: error: doctor found 1 problem, each printed with its fix\n"

    run_sql(ref_db, fix)
    after = doctor(ref_db)
    assert 'public.cases (contact_id): index "cases_contact_id_adhoc_gc_idx"' in after.stdout


def test_a_blocker_without_a_foreign_key_is_a_warning_with_its_fix(ref_db):
    run_sql(ref_db, "ALTER TABLE cases DROP CONSTRAINT cases_contact_id_fkey")

    result = doctor(ref_db)  # a warning: exit 0

    (line,) = lines_with(result.stdout, "warning")
    assert "public.cases (contact_id)" in line and "no foreign key onto public.contacts" in line
    fix = fix_of(line)
    assert fix == ('ALTER TABLE "public"."cases" ADD CONSTRAINT "cases_contact_id_fkey" FOREIGN KEY ("contact_id") '
                   'REFERENCES "public"."contacts" ("id") NOT VALID; '
                   'ALTER TABLE "public"."cases" VALIDATE CONSTRAINT "cases_contact_id_fkey";')
    run_sql(ref_db, fix)
    assert not lines_with(doctor(ref_db).stdout, "warning")


def test_an_invalid_index_is_dropped_and_built_again(ref_db):
    # What a failed CREATE INDEX CONCURRENTLY leaves behind.
    run_sql(ref_db, "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'devices_location_id_idx'::regclass")

    (line,) = lines_with(doctor(ref_db, code=4).stdout, "problem")
    assert 'index "devices_location_id_idx" is INVALID' in line
    drop, create = [part.strip() + ";" for part in fix_of(line).split(";") if part.strip()]
    assert drop == 'DROP INDEX CONCURRENTLY "public"."devices_location_id_idx";'
    assert create == ('CREATE INDEX CONCURRENTLY "devices_location_id_adhoc_gc_idx" ON "public"."devices" '
                      '("location_id");')

    run_sql(ref_db, drop, create)
    doctor(ref_db)


def test_a_partial_index_on_not_null_serves_the_lookups_and_another_does_not(ref_db):
    run_sql(ref_db, "DROP INDEX cases_location_id_idx",
            "CREATE INDEX cases_open_idx ON cases (location_id) WHERE subject <> ''")
    (line,) = lines_with(doctor(ref_db, code=4).stdout, "problem")
    assert "public.cases (location_id)" in line
    assert "\"cases_open_idx\" (btree WHERE (subject <> ''::text)) cannot serve its lookups" in line

    run_sql(ref_db, "CREATE INDEX cases_location_nn_idx ON cases (location_id) WHERE location_id IS NOT NULL")
    assert 'public.cases (location_id): index "cases_location_nn_idx"' in doctor(ref_db).stdout


def test_a_partitioned_blocker_is_served_by_an_index_on_each_partition(ref_db, tmp_path):
    run_sql(ref_db, """
        CREATE TABLE notes (customer_id bigint NOT NULL REFERENCES customers, year int NOT NULL)
            PARTITION BY RANGE (year);
        CREATE TABLE notes_2025 PARTITION OF notes FOR VALUES FROM (2025) TO (2026);
        CREATE TABLE notes_2026 PARTITION OF notes FOR VALUES FROM (2026) TO (2027);
        CREATE INDEX ON notes_2025 (customer_id);
        CREATE INDEX ON notes_2026 (customer_id);
    """)
    config = write_config(tmp_path, _reference_blockers() + '[[blockers]]\ntable = "public.notes"\n'
                                    'column = "customer_id"\nreferences = "customer"\nname = "note"\n')
    assert run_cli("deploy", "--dsn", ref_db, "--config", config).returncode == 0
    assert 'public.notes (customer_id): an index on each of its 2 partitions' in doctor(
        ref_db, "--config", config).stdout

    run_sql(ref_db, "CREATE TABLE notes_2027 PARTITION OF notes FOR VALUES FROM (2027) TO (2028)")
    (line,) = lines_with(doctor(ref_db, "--config", config, code=4).stdout, "problem")
    assert "public.notes (customer_id): no index starts with this column" in line
    fix = fix_of(line)
    assert fix == 'CREATE INDEX "notes_customer_id_adhoc_gc_idx" ON "public"."notes" ("customer_id");'
    run_sql(ref_db, fix)  # indexes the new partition, takes the other two's as they are
    assert 'public.notes (customer_id): index "notes_customer_id_adhoc_gc_idx"' in doctor(
        ref_db, "--config", config).stdout


TEXT_KEYED_MAPPING = """
[customer]
table = "public.accounts"
key = "code"
adhoc = "is_adhoc"
activity = ["touched"]

[location]
table = "public.sites"
key = "id"
customer = "account_code"
activity = []

[contact]
table = "public.people"
key = "id"
location = "site_id"
last_login = ""
activity = []

[[blockers]]
table = "public.memos"
column = "account_code"
references = "customer"
name = "memo"

[policy]
login_rule = false
"""


def test_an_index_the_lookup_cannot_use_is_a_problem(fresh_db, tmp_path):
    dsn = fresh_db()
    run_sql(dsn, """
        CREATE TABLE accounts (code text PRIMARY KEY, is_adhoc boolean, touched timestamptz);
        CREATE TABLE sites (id bigint PRIMARY KEY, account_code text NOT NULL REFERENCES accounts);
        CREATE INDEX ON sites (account_code);
        CREATE TABLE people (id bigint PRIMARY KEY, site_id bigint NOT NULL REFERENCES sites);
        CREATE INDEX ON people (site_id);
        -- char(8) against a text key: the lookup compares account_code::text, which its index cannot serve
        CREATE TABLE memos (id int PRIMARY KEY, account_code char(8));
        CREATE INDEX memos_account_code_idx ON memos (account_code);
    """)
    config = write_config(tmp_path, TEXT_KEYED_MAPPING)  # not deployed: the columns' types stay alterable

    (line,) = lines_with(doctor(dsn, "--config", config, code=4).stdout, "problem")
    assert 'public.memos (account_code): index "memos_account_code_idx" cannot serve the purge\'s lookup' in line
    assert "the column is cast: its type is not that of public.accounts.code" in line
    assert fix_of(line) == "give public.memos.account_code the type of public.accounts.code"

    # text, but its index in another collation than the column's: the same
    run_sql(dsn, "DROP INDEX memos_account_code_idx",
            'ALTER TABLE memos ALTER COLUMN account_code TYPE text COLLATE "POSIX"',
            'CREATE INDEX memos_account_code_c_idx ON memos (account_code COLLATE "C")')
    (line,) = lines_with(doctor(dsn, "--config", config, code=4).stdout, "problem")
    assert 'index "memos_account_code_c_idx" cannot serve' in line
    assert "the index's collation or operator class is not the column's" in line
    fix = fix_of(line)
    assert fix == 'CREATE INDEX CONCURRENTLY "memos_account_code_adhoc_gc_idx" ON "public"."memos" ("account_code");'
    run_sql(dsn, fix)
    assert 'public.memos (account_code): index "memos_account_code_' in doctor(dsn, "--config", config).stdout


# --- statistics -----------------------------------------------------------------------------

def _flush_statistics(conn: psycopg.Connection) -> None:
    """A session's table counters reach the statistics system when it is next idle, or up to
    10 s later; from PostgreSQL 15 on this makes it at once."""
    if conn.info.server_version >= 150000:
        conn.execute("SELECT pg_stat_force_next_flush()")


def _wait_for_changes(dsn: str, table: str, at_least: int) -> None:
    deadline = time.monotonic() + 15
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            changed = conn.execute("SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = %s",
                                   (table,)).fetchone()[0]
            if changed >= at_least:
                return
            time.sleep(0.2)
    pytest.fail(f"pg_stat_user_tables never showed {at_least} changes on {table}")


def test_stale_statistics_are_a_warning_with_an_analyze_fix(ref_db, ref_conn):
    for _ in range(20):
        add_stack(ref_conn)
    _flush_statistics(ref_conn)
    for table in ("customers", "locations", "contacts"):  # counted before ANALYZE resets the counters
        _wait_for_changes(ref_db, table, 20)

    result = doctor(ref_db)  # warnings alone: exit 0
    warnings = {line.split()[2]: fix_of(line) for line in lines_with(result.stdout, "warning")}
    assert warnings == {
        "public.customers:": 'ANALYZE "public"."customers";',
        "public.locations:": 'ANALYZE "public"."locations";',
        "public.contacts:": 'ANALYZE "public"."contacts";',
    }
    assert all("never analyzed" in line for line in lines_with(result.stdout, "warning"))

    run_sql(ref_db, *warnings.values())
    assert not lines_with(doctor(ref_db).stdout, "warning")

    # 20 analyzed rows, 3 more since: over 10%.
    for _ in range(3):
        add_stack(ref_conn, locations=0)
    _flush_statistics(ref_conn)
    _wait_for_changes(ref_db, "customers", 3)
    stale = findings(ref_db)
    (warning,) = [f for f in stale if f["severity"] == "warning"]
    assert warning["check"] == "statistics" and warning["subject"] == "public.customers"
    assert "3 rows changed since the last ANALYZE" in warning["message"]
    assert warning["fix"] == 'ANALYZE "public"."customers";'


def _wait_for_live_rows(conn: psycopg.Connection, table: str, rows: int) -> None:
    _flush_statistics(conn)
    deadline = time.monotonic() + 15
    while conn.execute("SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = %s", (table,)
                       ).fetchone()[0] < rows:
        if time.monotonic() > deadline:
            pytest.fail(f"pg_stat_user_tables never counted {rows} live rows in {table}")
        time.sleep(0.2)


def test_a_partitioned_table_whose_estimate_drifted_from_its_partitions_is_stale(ref_db, ref_conn, tmp_path):
    ref_conn.execute("""
        CREATE TABLE notes (customer_id bigint NOT NULL REFERENCES customers, year int NOT NULL)
            PARTITION BY RANGE (year);
        CREATE TABLE notes_2025 PARTITION OF notes FOR VALUES FROM (2025) TO (2026);
        CREATE INDEX ON notes (customer_id);
    """)
    customer = add_stack(ref_conn, adhoc=False).customer
    ref_conn.execute("INSERT INTO notes SELECT %s, 2025 FROM generate_series(1, 100)", (customer,))
    _wait_for_live_rows(ref_conn, "notes_2025", 100)  # counted before ANALYZE sets the count
    ref_conn.execute("ANALYZE notes")
    config = write_config(tmp_path, _reference_blockers() + '[[blockers]]\ntable = "public.notes"\n'
                                    'column = "customer_id"\nreferences = "customer"\nname = "note"\n')
    assert 'public.notes: analyzed' in doctor(ref_db, "--config", config).stdout

    # Three times the rows: autovacuum would analyze the partition, never the partitioned table.
    ref_conn.execute("INSERT INTO notes SELECT %s, 2025 FROM generate_series(1, 200)", (customer,))
    _wait_for_live_rows(ref_conn, "notes_2025", 300)
    (warning,) = [f for f in findings(ref_db, "--config", config) if f["subject"] == "public.notes"]
    assert warning["severity"] == "warning"
    assert "its partitions hold about 300 rows, its statistics" in warning["message"] and "say 100" in warning["message"]
    assert warning["fix"] == 'ANALYZE "public"."notes";'
    run_sql(ref_db, warning["fix"])
    (ok,) = [f for f in findings(ref_db, "--config", config) if f["subject"] == "public.notes"]
    assert ok["severity"] == "ok"


# --- foreign keys, deployment, roles, pg_cron -----------------------------------------------

def test_an_unmapped_foreign_key_is_a_problem_naming_it(ref_db, tmp_path):
    run_sql(ref_db, "CREATE TABLE notes (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers (id))")

    result = doctor(ref_db, code=4)
    (line,) = lines_with(result.stdout, "problem")
    assert "foreign-keys" in line and "public.notes (customer_id)" in line
    assert 'foreign key "notes_customer_id_fkey"' in line
    fix = fix_of(line)
    assert fix.startswith('add to adhoc-gc.toml: [[blockers]] table = "public.notes", column = "customer_id", '
                          'references = "customer"')

    # The fix as printed (an index for the new lookup comes with it, which doctor asks for next).
    config = write_config(tmp_path, '[[blockers]]\ntable = "public.notes"\ncolumn = "customer_id"\n'
                                    'references = "customer"\n' + _reference_blockers())
    deploy = run_cli("deploy", "--dsn", ref_db, "--config", config)
    assert deploy.returncode == 0, deploy.stderr
    (index_line,) = lines_with(doctor(ref_db, "--config", config, code=4).stdout, "problem")
    assert "public.notes (customer_id)" in index_line and "[[blockers]] notes.customer_id" in index_line
    run_sql(ref_db, fix_of(index_line))
    doctor(ref_db, "--config", config)


def _reference_blockers() -> str:
    return "".join(
        f'[[blockers]]\ntable = "public.{table}"\ncolumn = "{column}"\nreferences = "{ref}"\nname = "{name}"\n'
        for table, column, ref, name in [("cases", "location_id", "location", "location_case"),
                                         ("cases", "contact_id", "contact", "contact_case"),
                                         ("devices", "location_id", "location", "location_device")])


def test_not_deployed_is_a_warning_fixed_by_deploy(app_db):
    # Not a problem: a pipeline that runs doctor before its first deploy gets past it.
    warnings = [f for f in findings(app_db) if f["check"] == "deployment"]
    assert warnings == [{"check": "deployment", "severity": "warning", "subject": "schema adhoc_gc",
                         "message": "adhoc-gc is not deployed here", "fix": "adhoc-gc deploy"}]
    assert run_cli("deploy", "--dsn", app_db).returncode == 0
    assert [f["severity"] for f in findings(app_db) if f["check"] == "deployment"] == ["ok"]


def test_another_mapping_deployed_is_a_warning_fixed_by_deploy(ref_db, tmp_path):
    config = write_config(tmp_path, '[policy]\ninactivity = "30 days"\n')
    (warning,) = [f for f in findings(ref_db, "--config", config) if f["check"] == "deployment"]
    assert warning["severity"] == "warning" and "deployed from another mapping" in warning["message"]
    assert "purges with this mapping refuse to run until it is deployed" in warning["message"]
    assert warning["fix"] == f"adhoc-gc deploy --config {config}"
    assert run_cli("deploy", "--dsn", ref_db, "--config", config).returncode == 0
    assert [f["severity"] for f in findings(ref_db, "--config", config) if f["check"] == "deployment"] == ["ok"]


def test_roles_must_exist_and_the_owner_needs_its_privileges(ref_db, tmp_path):
    owner = f"gc_doc_owner_{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path, f'[roles]\nowner = "{owner}"\n')
    missing = [f for f in findings(ref_db, "--config", config, code=4) if f["check"] == "roles"]
    assert missing == [{"check": "roles", "severity": "problem", "subject": "[roles].owner",
                        "message": f"role {owner!r} does not exist", "fix": f'CREATE ROLE "{owner}" NOLOGIN;'}]
    run_sql(ref_db, missing[0]["fix"])
    try:
        lacking = [f for f in findings(ref_db, "--config", config, code=4) if f["check"] == "roles"]
        assert [f["fix"] for f in lacking] == [
            f'GRANT SELECT, UPDATE, DELETE, INSERT ON "public"."{table}" TO "{owner}";'
            for table in ("customers", "locations", "contacts")
        ] + [f'GRANT SELECT ON "public"."{table}" TO "{owner}";' for table in ("cases", "devices")]
        run_sql(ref_db, *(f["fix"] for f in lacking))
        (ok,) = [f for f in findings(ref_db, "--config", config) if f["check"] == "roles"]  # no problem left
        assert ok["severity"] == "ok" and "holds its privileges on 5 mapped tables" in ok["message"]
    finally:
        run_sql(ref_db, f'DROP OWNED BY "{owner}"', f'DROP ROLE "{owner}"')


def test_pg_cron_not_scheduled_is_info_and_a_job_is_ok(cron_db):
    before = findings(cron_db)
    (cron,) = [f for f in before if f["check"] == "pg_cron"]
    assert cron["severity"] == "info" and cron["message"].startswith("not scheduled: no pg_cron job 'adhoc-gc:")
    assert run_cli("schedule", "--dsn", cron_db, "--cron", "30 3 * * *").returncode == 0
    (cron,) = [f for f in findings(cron_db) if f["check"] == "pg_cron"]
    assert cron["severity"] == "ok" and "scheduled '30 3 * * *' (UTC)" in cron["message"]


# --- names from another mapping are quoted --------------------------------------------------

ODD_MAPPING = """
[database]
schema = "GC Doc"

[customer]
table = "CRM Zone.Kunden Zq"
key = "Kunde Nr"
adhoc = "Ad Hoc"
activity = ["Angelegt"]

[location]
table = "CRM Zone.Standort Zq"
key = "Standort Nr"
customer = "Kunde Ref"
activity = []

[contact]
table = "CRM Zone.Kontakt Zq"
key = "Kontakt Nr"
location = "Standort Ref"
last_login = ""
activity = ["Angelegt"]

[[blockers]]
table = "CRM Zone.Fall Zq"
column = "Standort Fk"
references = "location"
name = "Fall"

[policy]
login_rule = false
"""


def test_names_of_another_mapping_are_quoted_in_every_fix(fresh_db, tmp_path):
    dsn = fresh_db()
    run_sql(dsn, 'CREATE SCHEMA "CRM Zone"', """
        CREATE TABLE "CRM Zone"."Kunden Zq" ("Kunde Nr" bigint PRIMARY KEY, "Ad Hoc" boolean, "Angelegt" timestamptz);
        CREATE TABLE "CRM Zone"."Standort Zq" ("Standort Nr" bigint PRIMARY KEY,
            "Kunde Ref" bigint NOT NULL REFERENCES "CRM Zone"."Kunden Zq");
        CREATE TABLE "CRM Zone"."Kontakt Zq" ("Kontakt Nr" bigint PRIMARY KEY,
            "Standort Ref" bigint NOT NULL REFERENCES "CRM Zone"."Standort Zq", "Angelegt" timestamptz);
        CREATE TABLE "CRM Zone"."Fall Zq" ("Fall Nr" bigint PRIMARY KEY,
            "Standort Fk" bigint REFERENCES "CRM Zone"."Standort Zq");
        CREATE INDEX ON "CRM Zone"."Standort Zq" ("Kunde Ref");
    """)
    config = write_config(tmp_path, ODD_MAPPING)
    deploy_mapping(dsn, mapping_from_toml(ODD_MAPPING))

    result = doctor(dsn, "--config", config, code=4)
    fixes = sorted(fix_of(line) for line in lines_with(result.stdout, "problem"))
    assert fixes == [
        'CREATE INDEX CONCURRENTLY "Fall Zq_Standort Fk_adhoc_gc_idx" ON "CRM Zone"."Fall Zq" ("Standort Fk");',
        'CREATE INDEX CONCURRENTLY "Kontakt Zq_Standort Ref_adhoc_gc_idx" ON "CRM Zone"."Kontakt Zq" '
        '("Standort Ref");',
    ]
    assert "CRM Zone.Kontakt Zq (Standort Ref)" in result.stdout
    assert "deployed from this mapping" in result.stdout and "schema GC Doc" in result.stdout

    run_sql(dsn, *fixes)
    healthy = doctor(dsn, "--config", config)
    assert 'CRM Zone.Kunden Zq (Kunde Nr): unique index "Kunden Zq_pkey"' in healthy.stdout


def test_a_long_index_name_is_shortened_to_what_postgresql_keeps(fresh_db, tmp_path):
    from adhoc_gc.doctor import index_name
    from adhoc_gc.mapping import TableName

    name = index_name(TableName("public", "t" * 40), "c" * 40, "adhoc_gc_idx")
    assert len(name.encode()) == 63 and name.endswith("_adhoc_gc_idx")
    assert name != index_name(TableName("public", "t" * 40), "c" * 39 + "d", "adhoc_gc_idx")
    assert index_name(TableName("public", "cases"), "contact_id", "adhoc_gc_idx") == "cases_contact_id_adhoc_gc_idx"


# --- the CLI contract -----------------------------------------------------------------------

def test_json_is_a_list_of_findings(ref_db):
    run_sql(ref_db, "DROP INDEX cases_contact_id_idx")
    result = findings(ref_db, code=4)
    assert all(set(f) == {"check", "severity", "subject", "message", "fix"} for f in result)
    assert result[0] == {
        "check": "index", "severity": "problem", "subject": "public.cases (contact_id)",
        "message": "no index starts with this column: each batch scans public.cases for [[blockers]] contact_case",
        "fix": 'CREATE INDEX CONCURRENTLY "cases_contact_id_adhoc_gc_idx" ON "public"."cases" ("contact_id");',
    }
    severities = [f["severity"] for f in result]
    assert severities == sorted(severities, key=["problem", "warning", "info", "ok"].index)


def test_an_unreachable_database_is_exit_1_in_one_line():
    result = doctor(UNREACHABLE_DSN, code=1)
    assert "cannot connect to the database" in result.stderr
    assert result.stdout == ""


def test_a_bad_config_is_exit_2(tmp_path):
    config = write_config(tmp_path, "[customer]\nkey = 3\n")
    result = run_cli("doctor", "--dsn", UNREACHABLE_DSN, "--config", config)
    assert result.returncode == 2 and result.stderr.startswith("adhoc-gc: error: ")
    assert len(result.stderr.splitlines()) == 1


def test_a_mapping_that_does_not_match_the_database_is_a_problem(ref_db, tmp_path):
    config = write_config(tmp_path, '[contact]\nlast_login = "last_seen_at"\n')
    problems = [f for f in findings(ref_db, "--config", config, code=4) if f["check"] == "mapping"]
    assert problems[0]["severity"] == "problem" and problems[0]["subject"] == "[contact].last_login"
    assert problems[0]["message"] == 'column "last_seen_at" not found in public.contacts'
    assert problems[1]["severity"] == "info" and "skipped" in problems[1]["message"]
