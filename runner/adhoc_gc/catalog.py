"""Checks a mapping against the database catalog before any SQL is deployed or run.

Every problem names the mapping key and the database object, e.g.
`[contact].last_login: column "last_login_at" not found in public.contacts`.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from .errors import ConfigError
from .mapping import Mapping, TableName
from .render import quote_ident, quote_table

KEY_TYPE_GROUPS = {
    "int2": "integer", "int4": "integer", "int8": "integer",
    "uuid": "uuid",
    "text": "text", "varchar": "text", "bpchar": "text",
}
TIME_TYPES = {"timestamptz", "timestamp", "date"}
MAX_TIMEOUT_MS = 2_147_483_647  # PostgreSQL's lock_timeout and statement_timeout: an int of milliseconds


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as format_type() prints it
    type_name: str
    category: str
    unique: bool


def check_mapping(conn: psycopg.Connection, mapping: Mapping, queries: dict[str, str]) -> None:
    """Raise ConfigError listing every way the mapping disagrees with the catalog."""
    problems = mapping_problems(conn, mapping, queries)
    if problems:
        raise ConfigError(f"mapping {mapping.source} does not match the database: " + "; ".join(problems))


def mapping_problems(conn: psycopg.Connection, mapping: Mapping, queries: dict[str, str], *,
                     include_roles: bool = True) -> list[str]:
    """Every way the mapping disagrees with the catalog, each as `where: what`; the [roles]
    problems (role_problems) among them unless include_roles is false."""
    problems: list[str] = []
    tables: dict[TableName, dict[str, Column] | None] = {}

    def columns_of(table: TableName, where: str) -> dict[str, Column] | None:
        if table not in tables:
            rows = conn.execute(queries["table_columns"], {"schema": table.schema, "table": table.name}).fetchall()
            if rows:
                tables[table] = {row[0]: Column(*row) for row in rows}
            else:
                kind = conn.execute(queries["table_kind"], {"schema": table.schema, "table": table.name}).fetchone()
                what = "is not a table (it is a view or another kind of relation)" if kind else "not found"
                problems.append(f"{where}: table {table} {what}")
                tables[table] = None
        return tables[table]

    def column(table: TableName, name: str, where: str) -> Column | None:
        # "[customer].key" -> "[customer].table"; a blocker's own label names its table.
        table_where = where.split("]", 1)[0] + "].table" if where.startswith("[customer]") or where.startswith(
            "[location]") or where.startswith("[contact]") else where
        cols = columns_of(table, table_where)
        if cols is None:
            return None
        if name not in cols:
            problems.append(f"{where}: column \"{name}\" not found in {table}")
            return None
        return cols[name]

    def key_column(table: TableName, name: str, where: str) -> Column | None:
        col = column(table, name, where)
        if col is None:
            return None
        if col.type_name not in KEY_TYPE_GROUPS:
            problems.append(f"{where}: column \"{name}\" of {table} has type {col.type}; "
                            "keys must be smallint, integer, bigint, uuid or text")
            return None
        if not col.unique:
            problems.append(f"{where}: column \"{name}\" of {table} is not unique "
                            "(needs a primary key or unique index on it alone)")
        return col

    def reference_column(table: TableName, name: str, target: Column | None, target_desc: str, where: str) -> None:
        col = column(table, name, where)
        if col is None or target is None:
            return
        if KEY_TYPE_GROUPS.get(col.type_name) != KEY_TYPE_GROUPS.get(target.type_name):
            problems.append(f"{where}: column \"{name}\" of {table} has type {col.type}, "
                            f"which cannot hold {target_desc} ({target.type})")

    def time_columns(table: TableName, names: tuple[str, ...], where: str) -> None:
        for name in names:
            col = column(table, name, where)
            if col is not None and col.type_name not in TIME_TYPES:
                problems.append(f"{where}: column \"{name}\" of {table} has type {col.type}; "
                                "expected timestamptz, timestamp or date")

    customer, location, contact = mapping.customer, mapping.location, mapping.contact
    customer_key = key_column(customer.table, customer.key, "[customer].key")
    location_key = key_column(location.table, location.key, "[location].key")
    contact_key = key_column(contact.table, contact.key, "[contact].key")
    reference_column(location.table, location.customer, customer_key, "a customer key", "[location].customer")
    reference_column(contact.table, contact.location, location_key, "a location key", "[contact].location")

    adhoc = column(customer.table, customer.adhoc, "[customer].adhoc")
    if adhoc is not None:
        if customer.adhoc_values is None:
            if adhoc.type_name != "bool":
                problems.append(f"[customer].adhoc: column \"{customer.adhoc}\" of {customer.table} has type "
                                f"{adhoc.type}; a non-boolean column needs [customer].adhoc_values")
        elif adhoc.category == "E":
            labels = {row[0] for row in conn.execute(
                queries["enum_labels"],
                {"schema": customer.table.schema, "table": customer.table.name, "column": customer.adhoc},
            )}
            unknown = [v for v in customer.adhoc_values if v not in labels]
            if unknown:
                problems.append(f"[customer].adhoc_values: {unknown[0]!r} is not a value of enum type {adhoc.type} "
                                f"(values: {', '.join(sorted(labels))})")
        elif adhoc.category != "S":
            problems.append(f"[customer].adhoc: column \"{customer.adhoc}\" of {customer.table} has type "
                            f"{adhoc.type}; with adhoc_values it must be text or an enum")

    time_columns(customer.table, customer.activity, "[customer].activity")
    time_columns(location.table, location.activity, "[location].activity")
    time_columns(contact.table, contact.activity, "[contact].activity")
    if contact.last_login:
        time_columns(contact.table, (contact.last_login,), "[contact].last_login")

    targets = {
        "customer": (customer_key, "a customer key"),
        "location": (location_key, "a location key"),
        "contact": (contact_key, "a contact key"),
    }
    for section, entries in (("blockers", mapping.blockers), ("owned", mapping.owned)):
        for entry in entries:
            target, desc = targets[entry.references]
            reference_column(entry.table, entry.column, target, desc, f"[[{section}]] {entry.name}")

    if include_roles:
        problems.extend(str(problem) for problem in role_problems(conn, mapping, queries))

    intervals = (
        ("[policy].inactivity", mapping.policy.inactivity),
        ("[policy].login_window", mapping.policy.login_window),
        ("[retention].runs", mapping.retention.runs),
        ("[retention].purged", mapping.retention.purged),
    )
    for key, value in intervals:
        try:
            with conn.transaction():
                positive = conn.execute(queries["interval_is_positive"], {"value": value}).fetchone()[0]
        except psycopg.errors.DataError as exc:
            problems.append(f"{key}: {value!r} is not a PostgreSQL interval ({exc.diag.message_primary})")
            continue
        if not positive:
            problems.append(f"{key}: {value!r} must be longer than zero")
            continue
        try:
            with conn.transaction():
                conn.execute(queries["interval_fits_timestamps"], {"value": value})
        except psycopg.errors.DataError:
            problems.append(f"{key}: {value!r} is too long: now() minus it is outside PostgreSQL's timestamps")

    # The batches set these as lock_timeout and statement_timeout, in whole milliseconds:
    # 0 would turn the guard off, and PostgreSQL takes at most MAX_TIMEOUT_MS.
    for key, value in (("[guard].lock_timeout", mapping.guard.lock_timeout),
                       ("[guard].statement_timeout", mapping.guard.statement_timeout)):
        try:
            with conn.transaction():
                milliseconds = conn.execute(queries["interval_milliseconds"], {"value": value}).fetchone()[0]
        except psycopg.errors.DataError as exc:
            problems.append(f"{key}: {value!r} is not a PostgreSQL interval ({exc.diag.message_primary})")
            continue
        if not 1 <= milliseconds <= MAX_TIMEOUT_MS:
            problems.append(f"{key}: {value!r} must be from 1 millisecond to {MAX_TIMEOUT_MS} milliseconds "
                            "(about 24 days): it is set as a PostgreSQL timeout")
    return problems


@dataclass(frozen=True)
class RoleProblem:
    """A [roles] entry naming a role that does not exist, or the owner lacking USAGE on a
    mapped table's schema (`schema`) or privileges on a mapped table (`table`)."""

    key: str  # owner, operator or analyst
    role: str
    table: TableName | None = None
    missing: tuple[str, ...] = ()
    schema: str | None = None
    member_of: str | None = None  # a role it must be a member of (pg_monitor, for [throttle])

    @property
    def role_missing(self) -> bool:
        return self.table is None and self.schema is None and self.member_of is None

    @property
    def subject(self) -> str:
        return "[throttle].max_replica_lag" if self.key == "throttle" else f"[roles].{self.key}"

    @property
    def what(self) -> str:
        if self.member_of is not None:
            return (f"role {self.role!r}, which owns the functions, cannot see standby replay lag "
                    f"(needs {self.member_of}), so every purge would stop")
        if self.schema is not None:
            return f"role {self.role!r} lacks USAGE on schema {self.schema!r}"
        if self.table is None:
            return f"role {self.role!r} does not exist"
        return f"role {self.role!r} lacks {', '.join(self.missing)} on {self.table}"

    @property
    def fix(self) -> str:
        role = quote_ident(self.role)
        if self.member_of is not None:
            return f"GRANT {self.member_of} TO {role};"
        if self.schema is not None:
            return f"GRANT USAGE ON SCHEMA {quote_ident(self.schema)} TO {role};"
        if self.table is None:
            return f"CREATE ROLE {role} NOLOGIN;"
        return f"GRANT {', '.join(self.missing)} ON {quote_table(self.table)} TO {role};"

    def __str__(self) -> str:
        return f"{self.subject}: {self.what} ({self.fix.rstrip(';')})"


def role_problems(conn: psycopg.Connection, mapping: Mapping, queries: dict[str, str]) -> list[RoleProblem]:
    """[roles] must exist; the owner, whose privileges the deleting functions use, must be
    able to reach every mapped table's schema and read every mapped table, and lock (UPDATE:
    SELECT ... FOR UPDATE needs it), delete from and restore into (INSERT) the stack's tables."""
    problems: list[RoleProblem] = []
    roles = mapping.roles
    for key in ("owner", "operator", "analyst"):
        role = getattr(roles, key)
        if role and not conn.execute(queries["role_exists"], {"role": role}).fetchone()[0]:
            problems.append(RoleProblem(key, role))
            if key == "owner":
                return problems
    if mapping.throttle.max_replica_lag is not None:
        # _replica_lag runs as the functions' owner: [roles].owner, else the deploying role.
        role = roles.owner or conn.execute(queries["current_role_name"]).fetchone()[0]
        if not conn.execute(queries["role_sees_replica_lag"], {"role": role}).fetchone()[0]:
            problems.append(RoleProblem("owner" if roles.owner else "throttle", role, member_of="pg_monitor"))
    if not roles.owner:
        return problems
    needs = owner_privileges(mapping)
    for schema in sorted({table.schema for table in needs}):
        try:
            with conn.transaction():
                usage = conn.execute(queries["role_schema_usage"], {"role": roles.owner, "schema": schema}).fetchone()[0]
        except psycopg.errors.InvalidSchemaName:
            continue  # reported above as a missing table
        if not usage:
            problems.append(RoleProblem("owner", roles.owner, schema=schema, missing=("USAGE",)))
    for table, privileges in needs.items():
        missing = []
        for privilege in privileges:
            try:
                with conn.transaction():
                    granted = conn.execute(queries["role_table_privilege"], {
                        "role": roles.owner, "schema": table.schema, "table": table.name, "privilege": privilege,
                    }).fetchone()[0]
            except psycopg.errors.UndefinedTable:
                break  # reported above as a missing table
            if not granted:
                missing.append(privilege)
        if missing:
            problems.append(RoleProblem("owner", roles.owner, table, tuple(missing)))
    return problems


def owner_privileges(mapping: Mapping) -> dict[TableName, list[str]]:
    """What the owner needs on each table: all four on the stack's tables, SELECT on blockers'."""
    stack_tables = [mapping.customer.table, mapping.location.table, mapping.contact.table,
                    *(o.table for o in mapping.owned)]
    needs = {table: ["SELECT", "UPDATE", "DELETE", "INSERT"] for table in stack_tables}
    for blocker in mapping.blockers:
        needs.setdefault(blocker.table, ["SELECT"])
    return needs
