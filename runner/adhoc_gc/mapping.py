"""The mapping file (`adhoc-gc.toml`): where the customer stack lives in the user's database.

Loading checks everything that can be checked without a database: known keys, value
types, identifier syntax, intervals. The catalog check (`catalog.py`) does the rest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError

CONFIG_ENV = "ADHOC_GC_CONFIG"
DSN_ENV = "ADHOC_GC_DSN"
DEFAULT_CONFIG_FILE = "adhoc-gc.toml"

# PostgreSQL truncates longer names silently; we refuse them instead.
MAX_IDENTIFIER_BYTES = 63
ENTITIES = ("customer", "location", "contact")
# Names the eligibility view uses for the two time rules; blockers may not take them.
# The time rules' names, and the row of blocked_summary that counts the eligible customers.
RESERVED_BLOCKER_NAMES = ("activity", "login", "eligible now")


@dataclasses.dataclass(frozen=True)
class TableName:
    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclasses.dataclass(frozen=True)
class Customer:
    table: TableName
    key: str
    adhoc: str
    adhoc_values: tuple[str, ...] | None
    activity: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Location:
    table: TableName
    key: str
    customer: str
    activity: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Contact:
    table: TableName
    key: str
    location: str
    last_login: str | None
    activity: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Blocker:
    table: TableName
    column: str
    references: str
    name: str


@dataclasses.dataclass(frozen=True)
class Owned:
    """Rows that belong to the stack: deleted and archived with it."""

    table: TableName
    column: str
    references: str
    name: str


@dataclasses.dataclass(frozen=True)
class Guard:
    max_customers_per_run: int | None  # refuse a run with more candidates than this
    max_fraction_of_adhoc: float | None  # ... or more than this share of all ad-hoc customers
    lock_timeout: str  # per batch
    statement_timeout: str  # per batch (runner and procedure)


@dataclasses.dataclass(frozen=True)
class Throttle:
    max_replica_lag: str | None  # pause between batches while a standby's replay lag exceeds this


@dataclasses.dataclass(frozen=True)
class Roles:
    owner: str | None
    operator: str | None
    analyst: str | None


@dataclasses.dataclass(frozen=True)
class Policy:
    inactivity: str
    login_window: str
    login_rule: bool


@dataclasses.dataclass(frozen=True)
class Retention:
    runs: str  # how long rows of the runs table are kept
    purged: str  # how long archived stacks are kept


@dataclasses.dataclass(frozen=True)
class Mapping:
    dsn: str | None
    schema: str
    customer: Customer
    location: Location
    contact: Contact
    blockers: tuple[Blocker, ...]
    owned: tuple[Owned, ...]
    policy: Policy
    retention: Retention
    guard: Guard
    throttle: Throttle
    roles: Roles
    source: str  # the file it came from, or "built-in defaults"

    def fingerprint(self) -> str:
        """A hash of everything that shapes the deployed SQL (not the DSN)."""
        shape = dataclasses.asdict(self)
        shape.pop("dsn")
        shape.pop("source")
        canonical = json.dumps(shape, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# The built-in defaults match the reference application schema (sql/reference/).
DEFAULTS: dict[str, Any] = {
    "database": {"schema": "adhoc_gc"},
    "customer": {
        "table": "public.customers",
        "key": "id",
        "adhoc": "is_adhoc",
        "activity": ["created_at", "updated_at"],
    },
    "location": {
        "table": "public.locations",
        "key": "id",
        "customer": "customer_id",
        "activity": ["created_at", "updated_at"],
    },
    "contact": {
        "table": "public.contacts",
        "key": "id",
        "location": "location_id",
        "last_login": "last_login_at",
        "activity": ["created_at", "updated_at"],
    },
    "blockers": [
        {"table": "public.cases", "column": "location_id", "references": "location", "name": "location_case"},
        {"table": "public.cases", "column": "contact_id", "references": "contact", "name": "contact_case"},
        {"table": "public.devices", "column": "location_id", "references": "location", "name": "location_device"},
    ],
    "policy": {"inactivity": "14 days", "login_window": "6 months", "login_rule": True},
    "owned": [],
    "retention": {"runs": "1 year", "purged": "90 days"},
    "guard": {"lock_timeout": "5 seconds", "statement_timeout": "5 minutes"},
    "throttle": {},
    "roles": {},
}

# key -> (expected kind, required); kinds: str, strlist, bool
_SECTION_KEYS: dict[str, dict[str, str]] = {
    "database": {"dsn": "str", "schema": "str"},
    "customer": {"table": "str", "key": "str", "adhoc": "str", "adhoc_values": "strlist", "activity": "strlist"},
    "location": {"table": "str", "key": "str", "customer": "str", "activity": "strlist"},
    "contact": {"table": "str", "key": "str", "location": "str", "last_login": "str", "activity": "strlist"},
    "policy": {"inactivity": "str", "login_window": "str", "login_rule": "bool"},
    "retention": {"runs": "str", "purged": "str"},
    "guard": {"max_customers_per_run": "posint", "max_fraction_of_adhoc": "fraction",
              "lock_timeout": "str", "statement_timeout": "str"},
    "throttle": {"max_replica_lag": "str"},
    "roles": {"owner": "str", "operator": "str", "analyst": "str"},
}
# [[blockers]] and [[owned]] entries: a column of some table that points at a stack part.
_REFERENCE_KEYS = {"table": "str", "column": "str", "references": "str", "name": "str"}
_ARRAY_SECTIONS = ("blockers", "owned")

_INTERVAL_UNITS = (
    "microsecond|microseconds|us|usec|usecs|millisecond|milliseconds|ms|msec|msecs|"
    "second|seconds|s|sec|secs|minute|minutes|m|min|mins|hour|hours|h|hr|hrs|"
    "day|days|d|week|weeks|w|month|months|mon|mons|year|years|y|yr|yrs"
)
_INTERVAL_PART = rf"\d+(\.\d+)?\s*({_INTERVAL_UNITS})"
_INTERVAL_RE = re.compile(rf"^\s*{_INTERVAL_PART}(\s+{_INTERVAL_PART})*\s*$", re.IGNORECASE)


def find_config_path(explicit: str | None) -> Path | None:
    """--config, else $ADHOC_GC_CONFIG, else ./adhoc-gc.toml, else None (built-in defaults)."""
    if explicit is not None:
        if not explicit.strip():
            raise ConfigError("--config needs a file name")
        return _config_file(Path(explicit), explicit)
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return _config_file(Path(from_env), f"{from_env} (from ${CONFIG_ENV})")
    local = Path(DEFAULT_CONFIG_FILE)
    if local.exists() or local.is_symlink():
        # Found but not readable as a file: silently taking the built-in defaults instead
        # would point the purge at tables the user did not name.
        return _config_file(local, f"./{DEFAULT_CONFIG_FILE}")
    return None


def _config_file(path: Path, shown: str) -> Path:
    if path.is_dir():
        raise ConfigError(f"config file is a directory: {shown}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {shown}")
    return path


def load_mapping(explicit_path: str | None = None) -> Mapping:
    path = find_config_path(explicit_path)
    if path is None:
        return parse_mapping({}, source="built-in defaults")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    return parse_mapping_text(text, source=str(path))


def parse_mapping_text(text: str, source: str) -> Mapping:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    return parse_mapping(raw, source=source)


def parse_mapping(raw: dict[str, Any], source: str) -> Mapping:
    """Validate a parsed TOML document; keys it leaves out take the reference defaults."""

    def fail(where: str, message: str) -> ConfigError:
        return ConfigError(f"{source}: {where}: {message}")

    for section in raw:
        if section not in _SECTION_KEYS and section not in _ARRAY_SECTIONS:
            known = ", ".join(sorted([*_SECTION_KEYS, *_ARRAY_SECTIONS]))
            raise fail(f"[{section}]", f"unknown section (known: {known})")

    sections: dict[str, dict[str, Any]] = {}
    for section, keys in _SECTION_KEYS.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise fail(section, "must be a table ([" + section + "])")
        merged = dict(DEFAULTS.get(section, {}))
        for key, value in given.items():
            if key not in keys:
                raise fail(f"[{section}].{key}", f"unknown key (known: {', '.join(keys)})")
            merged[key] = _check_kind(value, keys[key], lambda m, k=key: fail(f"[{section}].{k}", m))
        sections[section] = merged


    def ident(section: str, key: str) -> str:
        value = sections[section].get(key)
        if value is None:
            raise fail(f"[{section}].{key}", "is required")
        return _check_identifier(value, lambda m: fail(f"[{section}].{key}", m))

    def idents(section: str, key: str) -> tuple[str, ...]:
        values = sections[section].get(key, [])
        checked = tuple(
            _check_identifier(v, lambda m, i=i: fail(f"[{section}].{key}[{i}]", m)) for i, v in enumerate(values)
        )
        if len(set(checked)) != len(checked):
            raise fail(f"[{section}].{key}", "lists a column twice")
        return checked

    def table(section: str) -> TableName:
        return _parse_table(sections[section].get("table"), lambda m: fail(f"[{section}].table", m))

    database = sections["database"]
    dsn = database.get("dsn")
    schema = ident("database", "schema")

    adhoc_values = sections["customer"].get("adhoc_values")
    if adhoc_values is not None:
        if not adhoc_values:
            raise fail("[customer].adhoc_values", "must list at least one value (or be left out for a boolean column)")
        for i, value in enumerate(adhoc_values):
            if value == "" or "\x00" in value:
                raise fail(f"[customer].adhoc_values[{i}]", "must be a non-empty string without NUL")
        adhoc_values = tuple(adhoc_values)
    customer = Customer(
        table=table("customer"),
        key=ident("customer", "key"),
        adhoc=ident("customer", "adhoc"),
        adhoc_values=adhoc_values,
        activity=idents("customer", "activity"),
    )
    if not customer.activity:
        raise fail("[customer].activity", "must name at least one column: it tells how old a stack is")
    location = Location(
        table=table("location"),
        key=ident("location", "key"),
        customer=ident("location", "customer"),
        activity=idents("location", "activity"),
    )

    policy_raw = sections["policy"]
    policy = Policy(
        inactivity=_check_interval(policy_raw["inactivity"], lambda m: fail("[policy].inactivity", m)),
        login_window=_check_interval(policy_raw["login_window"], lambda m: fail("[policy].login_window", m)),
        login_rule=policy_raw["login_rule"],
    )
    retention = Retention(
        runs=_check_interval(sections["retention"]["runs"], lambda m: fail("[retention].runs", m)),
        purged=_check_interval(sections["retention"]["purged"], lambda m: fail("[retention].purged", m)),
    )
    last_login = sections["contact"].get("last_login")
    if last_login == "" or ("last_login" not in raw.get("contact", {}) and not policy.login_rule):
        # No last-login column: `last_login = ""` (TOML has no null), or the key left out
        # while the login rule is off (the default column is only assumed for the rule).
        last_login = None
    if last_login is not None:
        last_login = ident("contact", "last_login")
    elif policy.login_rule:
        raise fail("[contact].last_login", "is required while [policy].login_rule is true "
                   "(set login_rule = false for a contacts table without a last-login column)")
    contact = Contact(
        table=table("contact"),
        key=ident("contact", "key"),
        location=ident("contact", "location"),
        last_login=last_login,
        activity=idents("contact", "activity"),
    )

    blockers = [Blocker(*fields) for fields in _reference_entries(raw, "blockers", fail, RESERVED_BLOCKER_NAMES)]
    owned = [Owned(*fields) for fields in _reference_entries(raw, "owned", fail)]
    both = {(b.table, b.column) for b in blockers} & {(o.table, o.column) for o in owned}
    if both:
        table_name, column = sorted(both, key=str)[0]
        raise fail("[[owned]]", f"{table_name}.{column} is listed as a blocker and as owned; it can only be one")

    guard_raw = sections["guard"]
    guard = Guard(
        max_customers_per_run=guard_raw.get("max_customers_per_run"),
        max_fraction_of_adhoc=guard_raw.get("max_fraction_of_adhoc"),
        lock_timeout=_check_interval(guard_raw["lock_timeout"], lambda m: fail("[guard].lock_timeout", m)),
        statement_timeout=_check_interval(guard_raw["statement_timeout"],
                                          lambda m: fail("[guard].statement_timeout", m)),
    )
    max_lag = sections["throttle"].get("max_replica_lag")
    throttle = Throttle(max_replica_lag=None if max_lag is None else _check_interval(
        max_lag, lambda m: fail("[throttle].max_replica_lag", m)))
    roles = Roles(**{
        key: (ident("roles", key) if sections["roles"].get(key) is not None else None)
        for key in ("owner", "operator", "analyst")
    })

    return Mapping(
        dsn=dsn,
        schema=schema,
        customer=customer,
        location=location,
        contact=contact,
        blockers=tuple(blockers),
        owned=tuple(owned),
        policy=policy,
        retention=retention,
        guard=guard,
        throttle=throttle,
        roles=roles,
        source=source,
    )


def _reference_entries(raw: dict[str, Any], section: str, fail,
                       reserved: tuple[str, ...] = ()) -> list[tuple[TableName, str, str, str]]:
    """[[blockers]] or [[owned]]: (table, column, references, name) for each entry."""
    entries = raw.get(section, DEFAULTS[section])
    if not isinstance(entries, list):
        raise fail(section, f"must be an array of tables ([[{section}]])")
    result = []
    for i, entry in enumerate(entries):
        where = f"[[{section}]] #{i + 1}"
        if not isinstance(entry, dict):
            raise fail(where, "must be a table with table, column and references")
        checked: dict[str, Any] = {}
        for key, value in entry.items():
            if key not in _REFERENCE_KEYS:
                raise fail(f"{where}.{key}", f"unknown key (known: {', '.join(_REFERENCE_KEYS)})")
            checked[key] = _check_kind(value, _REFERENCE_KEYS[key], lambda m, k=key: fail(f"{where}.{k}", m))
        for required in ("table", "column", "references"):
            if required not in checked:
                raise fail(f"{where}.{required}", "is required")
        entry_table = _parse_table(checked["table"], lambda m: fail(f"{where}.table", m))
        column = _check_identifier(checked["column"], lambda m: fail(f"{where}.column", m))
        if checked["references"] not in ENTITIES:
            raise fail(f"{where}.references", f"must be one of {', '.join(ENTITIES)}, not {checked['references']!r}")
        name = checked.get("name") or f"{entry_table.name}.{column}"
        if not name.strip() or any(ord(ch) < 32 for ch in name):
            raise fail(f"{where}.name", "must be printable text")
        if name in reserved:
            raise fail(f"{where}.name", f"{name!r} is reserved (activity and login name the time rules, "
                                        "'eligible now' the eligible customers in blocked_summary)")
        result.append((entry_table, column, checked["references"], name))
    names = [entry[3] for entry in result]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise fail(f"[[{section}]]", f"two entries share the name {duplicates[0]!r}; give one a distinct name")
    return result


def resolve_dsn(mapping: Mapping, explicit: str | None) -> str:
    """--dsn, else $ADHOC_GC_DSN, else [database].dsn, else '' (libpq's PG* variables)."""
    for candidate in (explicit, os.environ.get(DSN_ENV), mapping.dsn):
        if candidate:
            return candidate
    return ""


def _check_kind(value: Any, kind: str, fail) -> Any:
    if kind == "str" and not isinstance(value, str):
        raise fail(f"must be a string, not {_toml_type(value)}")
    if kind == "bool" and not isinstance(value, bool):
        raise fail(f"must be true or false, not {_toml_type(value)}")
    if kind == "posint" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise fail(f"must be a whole number of at least 1, not {value!r}")
    if kind == "fraction":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise fail(f"must be a number above 0 and at most 1, not {value!r}")
        value = float(value)
    if kind == "strlist":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail("must be an array of strings")
    return value


def _toml_type(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def _check_identifier(value: str, fail) -> str:
    if not isinstance(value, str):
        raise fail(f"must be a string, not {_toml_type(value)}")
    if value == "":
        raise fail("must not be empty")
    if "\x00" in value:
        raise fail("must not contain a NUL character")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise fail("must not contain control characters")
    # Quoting would make these safe, but no real schema needs them and they are the
    # signature of an injection attempt: refuse them outright.
    if '"' in value or ";" in value:
        raise fail(f"{value!r} contains a double quote or semicolon; adhoc-gc refuses such identifiers")
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        raise fail(f"{value!r} is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte identifier limit")
    return value


def _parse_table(value: Any, fail) -> TableName:
    if value is None:
        raise fail("is required")
    if not isinstance(value, str):
        raise fail(f"must be a string like \"schema.table\", not {_toml_type(value)}")
    schema, dot, name = value.partition(".")
    if not dot:
        schema, name = "public", value
    return TableName(_check_identifier(schema, fail), _check_identifier(name, fail))


def _check_interval(value: str, fail) -> str:
    if not _INTERVAL_RE.match(value):
        raise fail(f"{value!r} is not an interval like '14 days' or '6 months'")
    if all(float(n) == 0 for n in re.findall(r"\d+(?:\.\d+)?", value)):
        raise fail(f"{value!r} must be longer than zero")
    return value.strip()
