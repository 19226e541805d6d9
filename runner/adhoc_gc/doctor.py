"""`adhoc-gc doctor`: checks a database for what makes purges slow, refused or unscheduled,
and prints each finding with the exact fix. Read only: it never runs a fix.

Severities: `problem` (exit code 4), `warning`, `info`, `ok`. The checks:

- `mapping`: the mapping against the catalog (the check `deploy` runs); while it fails, the
  index and statistics checks are skipped.
- `index`: an index starting with each column the purge looks rows up by (location ->
  customer, contact -> location, every blocker and owned column).
- `key`: a unique index on the customer, location and contact keys.
- `lookup`: the ad-hoc and activity columns need no index (the purge walks the customer key).
- `statistics`: every mapped table analyzed, and not changed by more than 10% since (a
  partitioned table: its estimate within 10% of its partitions' rows).
- `foreign-keys`: the foreign-key audit every purge runs.
- `deployment`: deployed, and from this mapping (warnings: `deploy` fixes them).
- `pg_cron`: loaded, its extension created, a job scheduled (never a problem: pg_cron is optional).
- `roles`: the [roles] exist, and the owner holds its privileges on the mapped tables.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
from typing import Iterable

import psycopg
from psycopg import sql

from . import __version__
from .catalog import mapping_problems, owner_privileges, role_problems
from .db import connect, one_line
from .errors import AdhocGcError
from .mapping import MAX_IDENTIFIER_BYTES, Mapping, TableName
from .purge import describe_unmapped_foreign_keys
from .render import quote_ident, quote_table
from .schedule import default_job_name, inspect_cron

SEVERITIES = ("problem", "warning", "info", "ok")  # the order findings are printed in
STALE_FRACTION = 0.10  # rows changed since the last ANALYZE, as a share of the row estimate


@dataclasses.dataclass(frozen=True)
class Finding:
    check: str
    severity: str  # one of SEVERITIES
    subject: str
    message: str
    fix: str | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def run_doctor(dsn: str, mapping: Mapping, queries: dict[str, str]) -> list[Finding]:
    """Every finding, problems first (then warnings, info, ok), each group in check order."""
    findings: list[Finding] = []
    with connect(dsn) as conn:
        conn.read_only = True
        with conn.transaction():
            mismatches = mapping_problems(conn, mapping, queries, include_roles=False)
        findings += _mapping_findings(mapping, mismatches)
        if not mismatches:
            with conn.transaction():
                findings += _index_findings(conn, mapping, queries)
                findings += _key_findings(conn, mapping, queries)
                findings += _lookup_findings(conn, mapping, queries)
                findings += _statistics_findings(conn, mapping, queries)
        with conn.transaction():
            findings += _foreign_key_findings(conn, mapping, queries)
            if not mismatches:
                findings += _blocker_key_findings(conn, mapping, queries)
            findings += _deployment_findings(conn, mapping, queries)
            findings += _role_findings(conn, mapping, queries)
        findings += _cron_findings(conn, dsn, mapping, queries)
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def problem_count(findings: Iterable[Finding]) -> int:
    return sum(1 for f in findings if f.severity == "problem")


def format_text(findings: list[Finding]) -> list[str]:
    """One line per finding, its fix at the end, then a summary line."""
    width = max((len(f.check) for f in findings), default=0)
    lines = []
    for f in findings:
        line = f"{f.severity:<7}  {f.check:<{width}}  {f.subject}: {f.message}"
        if f.fix:
            line += f"  fix: {f.fix}"
        lines.append(line)
    counts = {severity: sum(1 for f in findings if f.severity == severity) for severity in SEVERITIES}
    lines.append(f"doctor: {_plural(counts['problem'], 'problem')}, {_plural(counts['warning'], 'warning')}, "
                 f"{counts['info']} info, {counts['ok']} ok")
    return lines


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def index_name(table: TableName, column: str, suffix: str) -> str:
    """`<table>_<column>_<suffix>`, shortened with a hash to PostgreSQL's 63-byte limit
    (so the printed name is the one created, and two long ones cannot collide)."""
    name = f"{table.name}_{column}_{suffix}"
    if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
        return name
    tail = f"_{hashlib.sha256(f'{table}.{column}'.encode()).hexdigest()[:8]}_{suffix}"
    head = f"{table.name}_{column}".encode()[:MAX_IDENTIFIER_BYTES - len(tail.encode())]
    return head.decode(errors="ignore") + tail


def _deploy_command(mapping: Mapping) -> str:
    if mapping.source == "built-in defaults":
        return "adhoc-gc deploy"
    return f"adhoc-gc deploy --config {shlex.quote(mapping.source)}"


def _config_file(mapping: Mapping) -> str:
    return "adhoc-gc.toml" if mapping.source == "built-in defaults" else mapping.source


# --- mapping -------------------------------------------------------------------------------

def _mapping_findings(mapping: Mapping, mismatches: list[str]) -> list[Finding]:
    if not mismatches:
        return [Finding("mapping", "ok", mapping.source, "matches the database (tables, columns, types, keys)")]
    findings = []
    for mismatch in mismatches:
        where, _, what = mismatch.partition(": ")
        findings.append(Finding("mapping", "problem", where, what,
                                f"correct {where} in {_config_file(mapping)} (or the database) so that they agree"))
    findings.append(Finding("mapping", "info", mapping.source,
                            "index and statistics checks skipped until the mapping matches the database"))
    return findings


# --- indexes --------------------------------------------------------------------------------

def _lookup_columns(mapping: Mapping) -> dict[tuple[TableName, str], tuple[list[str], tuple[TableName, str]]]:
    """(table, column) -> the mapping entries the purge looks rows up by it for, and the
    (table, key) whose values it is compared with."""
    columns: dict[tuple[TableName, str], tuple[list[str], tuple[TableName, str]]] = {}

    def key_of(part: str) -> tuple[TableName, str]:
        section = getattr(mapping, part)
        return section.table, section.key

    entries = [
        (mapping.location.table, mapping.location.customer, "[location].customer", key_of("customer")),
        (mapping.contact.table, mapping.contact.location, "[contact].location", key_of("location")),
        *((b.table, b.column, f"[[blockers]] {b.name}", key_of(b.references)) for b in mapping.blockers),
        *((o.table, o.column, f"[[owned]] {o.name}", key_of(o.references)) for o in mapping.owned),
    ]
    for table, column, label, key in entries:
        columns.setdefault((table, column), ([], key))[0].append(label)
    return columns


def _indexes(conn: psycopg.Connection, queries: dict[str, str], table: TableName, column: str) -> list[tuple]:
    return conn.execute(queries["doctor_column_indexes"],
                        {"schema": table.schema, "table": table.name, "column": column}).fetchall()


def _lookup_served(conn: psycopg.Connection, queries: dict[str, str], table: TableName, column: str,
                   key: tuple[TableName, str]) -> tuple[bool | None, str | None]:
    """Whether the planner serves the lookup `column = key` on `table` from an index (on every
    partition of a partitioned table), and the condition it filters by where it does not:
    what the catalog cannot tell, as another collation, operator class or type than the
    comparison needs. (None, None) when the plan cannot be had (no SELECT privilege)."""
    statement = sql.SQL(queries["doctor_lookup_plan"]).format(
        table=sql.SQL(quote_table(table)), column=sql.Identifier(column),
        key_table=sql.SQL(quote_table(key[0])), key=sql.Identifier(key[1]))
    try:
        # Rolled back: SET LOCAL would otherwise last for the rest of the doctor's transaction.
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL enable_seqscan = off")
            plan = conn.execute(statement).fetchone()[0][0]["Plan"]
    except psycopg.Error:
        return None, None

    def unserved(node: dict, outer_filter: str | None = None) -> str | None:
        """The filter of the first scan in `node` that no index condition narrows (a bitmap
        scan's is on its heap scan, above it)."""
        if node.get("Parent Relationship") in ("InitPlan", "SubPlan"):
            return None
        found_filter = node.get("Filter") or outer_filter
        if node["Node Type"] == "Seq Scan" or (
                node["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Index Scan")
                and "Index Cond" not in node):
            return found_filter or node["Node Type"]
        for child in node.get("Plans", ()):
            found = unserved(child, found_filter)
            if found:
                return found
        return None

    condition = unserved(plan)
    return condition is None, condition


def _index_findings(conn: psycopg.Connection, mapping: Mapping, queries: dict[str, str]) -> list[Finding]:
    findings = []
    for (table, column), (labels, key) in _lookup_columns(mapping).items():
        subject = f"{table} ({column})"
        uses = ", ".join(labels)
        rows = _indexes(conn, queries, table, column)
        usable = [name for name, _, _, _, _, ok in rows if ok]
        partitioned = conn.execute(queries["table_kind"], {"schema": table.schema, "table": table.name}
                                   ).fetchone()[0] == "p"
        served_by = f'index "{usable[0]}"' if usable else None
        if not usable and partitioned:
            leaves = [TableName(schema, name) for schema, name in conn.execute(
                queries["doctor_leaf_partitions"], {"schema": table.schema, "table": table.name})]
            if leaves and all(any(row[-1] for row in _indexes(conn, queries, leaf, column)) for leaf in leaves):
                served_by = f"an index on each of its {_plural(len(leaves), 'partition')}"
        # The catalog finds the index; the planner says whether the purge's comparison can use it.
        served, condition = _lookup_served(conn, queries, table, column, key) if served_by else (None, None)
        if served_by and served is not False:
            findings.append(Finding("index", "ok", subject, f"{served_by} ({uses})"))
            continue
        create = (f"CREATE INDEX {'' if partitioned else 'CONCURRENTLY '}"
                  f"{quote_ident(index_name(table, column, 'adhoc_gc_idx'))} "
                  f"ON {quote_table(table)} ({quote_ident(column)});")
        invalid = [name for name, _, _, valid, _, _ in rows if not valid]
        if served_by:
            # An index the catalog finds fit, that the comparison cannot use.
            message = f"{served_by} cannot serve the purge's lookup {condition} ({uses}): each batch scans {table}"
            if "::" in condition.partition(" = ")[0]:
                message += f" (the column is cast: its type is not that of {key[0]}.{key[1]})"
                fix = f"give {table}.{column} the type of {key[0]}.{key[1]}"
            else:
                message += " (the index's collation or operator class is not the column's)"
                fix = create
        elif invalid:
            message = (f'index "{invalid[0]}" is INVALID (a CREATE INDEX CONCURRENTLY that failed) and never used: '
                       f"each batch scans {table} for {uses}")
            fix = f"DROP INDEX CONCURRENTLY {quote_ident(table.schema)}.{quote_ident(invalid[0])}; {create}"
        else:
            message = f"no index starts with this column: each batch scans {table} for {uses}"
            others = [f'"{name}" ({method}{f" WHERE {pred}" if pred else ""})' for name, _, method, _, pred, _ in rows]
            if others:
                message += f"; {', '.join(others)} cannot serve its lookups"
            fix = create
        if partitioned:
            message += " (a partitioned table: CREATE INDEX CONCURRENTLY is not supported on it, this one blocks " \
                       "writes while it builds)"
        findings.append(Finding("index", "problem", subject, message, fix))
    return findings


def _key_findings(conn: psycopg.Connection, mapping: Mapping, queries: dict[str, str]) -> list[Finding]:
    findings = []
    for section, part in (("customer", mapping.customer), ("location", mapping.location), ("contact", mapping.contact)):
        subject = f"{part.table} ({part.key})"
        unique = [name for name, alone, _, valid, _, _ in _indexes(conn, queries, part.table, part.key)
                  if alone and valid]
        if unique:
            findings.append(Finding("key", "ok", subject, f'unique index "{unique[0]}" ([{section}].key)'))
        else:
            findings.append(Finding(
                "key", "problem", subject, f"[{section}].key has no valid unique index on it alone",
                f"CREATE UNIQUE INDEX CONCURRENTLY {quote_ident(index_name(part.table, part.key, 'adhoc_gc_key'))} "
                f"ON {quote_table(part.table)} ({quote_ident(part.key)});"))
    return findings


def _lookup_findings(conn: psycopg.Connection, mapping: Mapping, queries: dict[str, str]) -> list[Finding]:
    customer = mapping.customer
    indexed = [name for name, *_, ok in _indexes(conn, queries, customer.table, customer.adhoc) if ok]
    message = ("no index needed: the purge walks [customer].key in order and reads the ad-hoc and activity "
               "columns from each row")
    message += f' (index "{indexed[0]}" exists)' if indexed else ""
    return [Finding("lookup", "info", f"{customer.table} ({customer.adhoc})", message)]


# --- statistics -----------------------------------------------------------------------------

def _mapped_tables(mapping: Mapping) -> list[TableName]:
    tables = [mapping.customer.table, mapping.location.table, mapping.contact.table,
              *(b.table for b in mapping.blockers), *(o.table for o in mapping.owned)]
    return list(dict.fromkeys(tables))


def _statistics_findings(conn: psycopg.Connection, mapping: Mapping, queries: dict[str, str]) -> list[Finding]:
    findings = []
    for table in _mapped_tables(mapping):
        row = conn.execute(queries["doctor_table_statistics"], {"schema": table.schema, "table": table.name}
                           ).fetchone()
        if row is None:
            continue
        last_analyzed, changed, estimate, has_data, partitions_live_rows = row
        analyze = f"ANALYZE {quote_table(table)};"
        if last_analyzed is None:
            if has_data:
                findings.append(Finding("statistics", "warning", str(table),
                                        "never analyzed: the planner guesses its size and the purge's plans with it",
                                        analyze))
            else:
                findings.append(Finding("statistics", "ok", str(table), "empty, nothing to analyze yet"))
            continue
        rows = max(estimate, 0.0)
        when = last_analyzed.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
        if partitions_live_rows is not None:
            # Autovacuum analyzes the partitions, never the partitioned table: its estimate
            # drifts from what they hold until someone runs ANALYZE on it.
            drift = abs(partitions_live_rows - rows)
            if drift > STALE_FRACTION * max(rows, partitions_live_rows):
                findings.append(Finding(
                    "statistics", "warning", str(table),
                    f"stale: its partitions hold about {partitions_live_rows:.0f} rows, its statistics (analyzed "
                    f"{when}) say {rows:.0f}; autovacuum never analyzes a partitioned table itself", analyze))
            else:
                findings.append(Finding("statistics", "ok", str(table),
                                        f"analyzed {when}, its estimate matches its partitions' rows"))
        elif changed > STALE_FRACTION * rows:
            findings.append(Finding(
                "statistics", "warning", str(table),
                f"stale: {changed} rows changed since the last ANALYZE ({when}), more than "
                f"{STALE_FRACTION:.0%} of its {rows:.0f} estimated rows", analyze))
        else:
            findings.append(Finding("statistics", "ok", str(table),
                                    f"analyzed {when}, {changed} rows changed since"))
    return findings


# --- foreign keys, deployment, roles --------------------------------------------------------

def _foreign_key_findings(conn: psycopg.Connection, mapping: Mapping, queries: dict[str, str]) -> list[Finding]:
    rows = conn.execute(queries["unmapped_foreign_keys"]).fetchall()
    if not rows:
        return [Finding("foreign-keys", "ok", "audit",
                        "every foreign key onto the customer, location and contact tables is mapped")]
    findings = []
    for row in rows:
        _, schema, table, columns, references, *_ = row
        if len(columns) == 1:
            entry = f'table = "{schema}.{table}", column = "{columns[0]}", references = "{references}"'
            fix = (f"add to {_config_file(mapping)}: [[blockers]] {entry} (or [[owned]] with the same keys, to delete "
                   f"its rows with the stack), then run {_deploy_command(mapping)}")
        else:
            fix = "drop the foreign key or point it elsewhere: adhoc-gc cannot map a composite key"
        findings.append(Finding("foreign-keys", "problem", f"{schema}.{table} ({', '.join(columns)})",
                                describe_unmapped_foreign_keys([row]) + "; every purge refuses to run", fix))
    return findings


def _blocker_key_findings(conn: psycopg.Connection, mapping: Mapping, queries: dict[str, str]) -> list[Finding]:
    """A blocker column without a foreign key leaves a window (docs/safety.md): a blocker row
    committed while a batch deletes its stack is not seen, and ends up pointing nowhere."""
    targets = {"customer": (mapping.customer.table, mapping.customer.key),
               "location": (mapping.location.table, mapping.location.key),
               "contact": (mapping.contact.table, mapping.contact.key)}
    findings = []
    for blocker in mapping.blockers:
        target, key = targets[blocker.references]
        subject = f"{blocker.table} ({blocker.column})"
        has_key = conn.execute(queries["doctor_column_has_foreign_key"], {
            "schema": blocker.table.schema, "table": blocker.table.name, "column": blocker.column,
            "target_schema": target.schema, "target_table": target.name,
        }).fetchone()[0]
        if has_key:
            findings.append(Finding("blocker-keys", "ok", subject, f"foreign key onto {target} ([[blockers]] "
                                                                  f"{blocker.name})"))
            continue
        constraint = index_name(blocker.table, blocker.column, "fkey")
        table_sql = quote_table(blocker.table)
        fix = (f"ALTER TABLE {table_sql} ADD CONSTRAINT {quote_ident(constraint)} FOREIGN KEY "
               f"({quote_ident(blocker.column)}) REFERENCES {quote_table(target)} ({quote_ident(key)}) NOT VALID; "
               f"ALTER TABLE {table_sql} VALIDATE CONSTRAINT {quote_ident(constraint)};")
        findings.append(Finding(
            "blocker-keys", "warning", subject,
            f"no foreign key onto {target}: a {blocker.name} row committed while a batch deletes its stack is not "
            "seen and is left pointing nowhere (docs/safety.md)", fix))
    return findings


def _deployment_findings(conn: psycopg.Connection, mapping: Mapping, queries: dict[str, str]) -> list[Finding]:
    subject = f"schema {mapping.schema}"
    deploy = _deploy_command(mapping)
    try:
        with conn.transaction():
            row = conn.execute(queries["deployed_mapping"]).fetchone()
    except (psycopg.errors.UndefinedFunction, psycopg.errors.InvalidSchemaName):
        row = None
    except psycopg.errors.InsufficientPrivilege as exc:
        return [Finding("deployment", "warning", subject, f"cannot tell whether it is deployed: {one_line(exc)}")]
    # Warnings, not problems: `deploy` is their fix, and a pipeline gating its deploy on
    # doctor's exit code must get past them to run it.
    if row is None:
        return [Finding("deployment", "warning", subject, "adhoc-gc is not deployed here", deploy)]
    fingerprint, version = row
    if fingerprint != mapping.fingerprint():
        return [Finding("deployment", "warning", subject,
                        f"deployed from another mapping (fingerprint {fingerprint}, this mapping "
                        f"{mapping.fingerprint()}): purges with this mapping refuse to run until it is deployed",
                        deploy)]
    if version != __version__:
        return [Finding("deployment", "warning", subject,
                        f"deployed by adhoc-gc {version}, this is adhoc-gc {__version__}", deploy)]
    return [Finding("deployment", "ok", subject, f"deployed from this mapping (fingerprint {fingerprint}, "
                                                 f"adhoc-gc {version})")]


def _role_findings(conn: psycopg.Connection, mapping: Mapping, queries: dict[str, str]) -> list[Finding]:
    roles = mapping.roles
    configured = {key: getattr(roles, key) for key in ("owner", "operator", "analyst") if getattr(roles, key)}
    problems = role_problems(conn, mapping, queries)
    findings = [Finding("roles", "problem", p.subject, p.what, p.fix) for p in problems]
    if not configured:
        return findings + [Finding("roles", "info", "[roles]", "none set: deploy grants nothing, the package's "
                                                               "objects belong to the user who deploys")]
    if any(p.key == "owner" and p.role_missing for p in problems):
        return findings  # the owner is missing: nothing else was checked
    troubled = {p.key for p in problems}
    for key, role in configured.items():
        if key in troubled:
            continue
        message = f"role {role!r} exists"
        if key == "owner":
            message += f" and holds its privileges on {len(owner_privileges(mapping))} mapped tables"
        findings.append(Finding("roles", "ok", f"[roles].{key}", message))
    return findings


# --- pg_cron --------------------------------------------------------------------------------

def _cron_findings(conn: psycopg.Connection, dsn: str, mapping: Mapping, queries: dict[str, str]) -> list[Finding]:
    subject = "pg_cron"
    try:
        state = inspect_cron(conn, dsn, queries)
    except (AdhocGcError, psycopg.Error) as exc:
        return [Finding("pg_cron", "warning", subject, f"cannot read pg_cron's state: {one_line(exc)}")]
    if not state.preloaded:
        return [Finding("pg_cron", "info", subject, "not scheduled: pg_cron is not loaded (purges run only when "
                                                    "something runs `adhoc-gc purge`)")]
    if not state.installed:
        return [Finding("pg_cron", "warning", subject,
                        f"loaded, but its extension is missing in database {state.database!r} (cron.database_name)",
                        f"CREATE EXTENSION pg_cron;  -- as a superuser, in database {state.database!r}")]
    name = default_job_name(state.target_database, mapping)
    try:
        with connect(state.dsn) as cron_conn:
            cron_conn.read_only = True
            job = cron_conn.execute(queries["cron_job"], {"job_name": name}).fetchone()
            last = None
            if job:
                last = cron_conn.execute(queries["cron_job_runs"], {"jobid": job[0], "limit": 1}).fetchone()
    except (AdhocGcError, psycopg.Error) as exc:
        return [Finding("pg_cron", "warning", subject,
                        f"cannot read pg_cron's jobs in database {state.database!r}: {one_line(exc)}")]
    if job is None:
        return [Finding("pg_cron", "info", subject, f"not scheduled: no pg_cron job {name!r}")]
    jobid, _, schedule, _, _, _, active = job
    if not active:
        return [Finding("pg_cron", "warning", subject, f"job {name!r} (id {jobid}) is inactive: it never runs",
                        f"SELECT cron.alter_job({jobid}, active => true);  -- in database {state.database!r}")]
    if last is not None and last[1] == "failed":
        started = last[3].strftime("%Y-%m-%d %H:%M:%S") if last[3] else "time unknown"
        reason = " ".join((last[2] or "no message").split())
        return [Finding("pg_cron", "warning", subject,
                        f"job {name!r} (id {jobid}): its last run ({started}) failed: {reason}",
                        "see `adhoc-gc status` and `adhoc-gc runs`, fix the cause; the job runs again on schedule")]
    return [Finding("pg_cron", "ok", subject, f"job {name!r} (id {jobid}) scheduled {schedule!r} (UTC)")]
