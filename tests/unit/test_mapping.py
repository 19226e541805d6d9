"""The mapping file: defaults, a full file, every way it can be wrong, and where it is found.

No database: everything here is parse_mapping / load_mapping / resolve_dsn.
"""

from __future__ import annotations

import functools
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adhoc_gc.errors import ConfigError
from adhoc_gc.mapping import (
    CONFIG_ENV,
    DEFAULT_CONFIG_FILE,
    DSN_ENV,
    Blocker,
    Mapping,
    TableName,
    load_mapping,
    parse_mapping,
    parse_mapping_text,
    resolve_dsn,
)
from adhoc_gc import render
from adhoc_gc.render import render_grants, render_objects, render_queries


@pytest.fixture(autouse=True, scope="module")
def _one_jinja_environment():
    """The property tests render thousands of mappings: compile the templates once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(render, "_environment", functools.cache(render._environment))
        yield


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch, tmp_path):
    """No $ADHOC_GC_CONFIG / $ADHOC_GC_DSN and no ./adhoc-gc.toml from the caller's shell."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(DSN_ENV, raising=False)
    empty = tmp_path / "cwd"
    empty.mkdir()
    monkeypatch.chdir(empty)


def parse(text: str) -> Mapping:
    return parse_mapping_text(textwrap.dedent(text), source="test.toml")


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith("test.toml: "), message
    return message


# --- what loads -------------------------------------------------------------------------

def test_built_in_defaults_match_the_reference_schema():
    mapping = load_mapping(None)
    assert mapping.source == "built-in defaults"
    assert mapping.dsn is None
    assert mapping.schema == "adhoc_gc"
    assert mapping.customer.table == TableName("public", "customers")
    assert (mapping.customer.key, mapping.customer.adhoc) == ("id", "is_adhoc")
    assert mapping.customer.adhoc_values is None
    assert mapping.customer.activity == ("created_at", "updated_at")
    assert mapping.location.table == TableName("public", "locations")
    assert (mapping.location.key, mapping.location.customer) == ("id", "customer_id")
    assert mapping.contact.table == TableName("public", "contacts")
    assert (mapping.contact.key, mapping.contact.location, mapping.contact.last_login) == (
        "id", "location_id", "last_login_at")
    assert [b.name for b in mapping.blockers] == ["location_case", "contact_case", "location_device"]
    assert mapping.blockers[0] == Blocker(TableName("public", "cases"), "location_id", "location", "location_case")
    assert (mapping.policy.inactivity, mapping.policy.login_window, mapping.policy.login_rule) == (
        "14 days", "6 months", True)


def test_an_empty_file_is_the_defaults_from_that_file():
    mapping = parse("")
    defaults = load_mapping(None)
    assert mapping.source == "test.toml"
    assert mapping.fingerprint() == defaults.fingerprint()


def test_a_full_mapping_parses():
    mapping = parse("""
        [database]
        dsn = "host=db.internal dbname=crm"
        schema = "gc"

        [customer]
        table = "crm.accounts"
        key = "account_uuid"
        adhoc = "origin"
        adhoc_values = ["email", "chat"]
        activity = ["created", "touched"]

        [location]
        table = "sites"
        key = "site_id"
        customer = "account_uuid"
        activity = []

        [contact]
        table = "crm.people"
        key = "person_id"
        location = "site_id"
        last_login = "seen_at"
        activity = ["created"]

        [[blockers]]
        table = "crm.tickets"
        column = "account_uuid"
        references = "customer"
        name = "open ticket"

        [[blockers]]
        table = "crm.badges"
        column = "person_id"
        references = "contact"

        [policy]
        inactivity = "30 days"
        login_window = "1 year 6 months"
        login_rule = false
    """)
    assert mapping.dsn == "host=db.internal dbname=crm"
    assert mapping.schema == "gc"
    assert mapping.customer.table == TableName("crm", "accounts")
    assert mapping.customer.key == "account_uuid"
    assert mapping.customer.adhoc_values == ("email", "chat")
    assert mapping.customer.activity == ("created", "touched")
    assert mapping.location.table == TableName("public", "sites")  # no schema: public
    assert mapping.location.activity == ()
    assert mapping.contact.table == TableName("crm", "people")
    assert mapping.contact.last_login == "seen_at"
    assert mapping.contact.activity == ("created",)
    assert mapping.blockers == (
        Blocker(TableName("crm", "tickets"), "account_uuid", "customer", "open ticket"),
        Blocker(TableName("crm", "badges"), "person_id", "contact", "badges.person_id"),  # default name
    )
    assert mapping.policy.inactivity == "30 days"
    assert mapping.policy.login_window == "1 year 6 months"
    assert mapping.policy.login_rule is False
    assert mapping.fingerprint() != load_mapping(None).fingerprint()


def test_an_empty_blocker_list_is_allowed():
    assert parse("blockers = []\n").blockers == ()


def test_keys_left_out_take_the_defaults():
    mapping = parse("""
        [customer]
        table = "crm.accounts"
    """)
    assert mapping.customer.table == TableName("crm", "accounts")
    assert mapping.customer.key == "id"
    assert mapping.customer.activity == ("created_at", "updated_at")


def test_the_fingerprint_ignores_dsn_and_source():
    a = parse('[database]\ndsn = "host=a"\n')
    b = parse_mapping_text('[database]\ndsn = "host=b"\n', source="other.toml")
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != parse('[policy]\ninactivity = "15 days"\n').fingerprint()


def test_no_last_login_column_with_the_login_rule_off():
    mapping = parse("""
        [contact]
        last_login = ""
        [policy]
        login_rule = false
    """)
    assert mapping.contact.last_login is None
    assert mapping.policy.login_rule is False


def test_last_login_may_be_left_out_with_the_login_rule_off():
    # README: "may be left out when login_rule = false" -- then there is no such column.
    assert parse("[policy]\nlogin_rule = false\n").contact.last_login is None
    assert parse('[contact]\ntable = "people"\n[policy]\nlogin_rule = false\n').contact.last_login is None
    # Named explicitly, it is still used (explain and eligibility show it).
    named = parse('[contact]\nlast_login = "seen_at"\n[policy]\nlogin_rule = false\n')
    assert named.contact.last_login == "seen_at"
    # With the rule on, leaving it out takes the default column.
    assert parse("[policy]\nlogin_rule = true\n").contact.last_login == "last_login_at"


@pytest.mark.parametrize("value", ["a" * 63, "é" * 31, "Mixed Case", "with space", "ünïcödé", "a.b"])
def test_unusual_but_valid_identifiers_load(value):
    assert parse_mapping({"customer": {"key": value}}, source="t").customer.key == value


# --- what does not load: each error names the key --------------------------------------

def test_malformed_toml():
    message = config_error("""
        [customer
        key = "id"
    """)
    assert "invalid TOML" in message


def test_malformed_toml_value():
    assert "invalid TOML" in config_error('[customer]\nkey = id\n')


@pytest.mark.parametrize("section", ["customers", "policies", "foo"])
def test_unknown_section(section):
    message = config_error(f"[{section}]\nx = 1\n")
    assert f"[{section}]" in message and "unknown section" in message


@pytest.mark.parametrize("section, key", [
    ("customer", "tabel"), ("database", "host"), ("policy", "inactive"), ("contact", "last_logged_in"),
])
def test_unknown_key(section, key):
    message = config_error(f'[{section}]\n{key} = "x"\n')
    assert f"[{section}].{key}" in message and "unknown key" in message


def test_unknown_blocker_key():
    message = config_error("""
        [[blockers]]
        table = "cases"
        column = "location_id"
        references = "location"
        colour = "red"
    """)
    assert "[[blockers]] #1.colour" in message and "unknown key" in message


@pytest.mark.parametrize("toml, where, expected", [
    ("[customer]\nkey = 1\n", "[customer].key", "must be a string, not an integer"),
    ("[customer]\ntable = 42\n", "[customer].table", "must be a string, not an integer"),
    ("[database]\nschema = 1.5\n", "[database].schema", "must be a string, not a float"),
    ("[database]\ndsn = true\n", "[database].dsn", "must be a string, not a boolean"),
    ("[contact]\nlast_login = [\"a\"]\n", "[contact].last_login", "must be a string, not an array"),
    ('[policy]\nlogin_rule = "yes"\n', "[policy].login_rule", "must be true or false, not a string"),
    ("[policy]\nlogin_rule = 1\n", "[policy].login_rule", "must be true or false, not an integer"),
    ('[customer]\nactivity = "created_at"\n', "[customer].activity", "must be an array of strings"),
    ('[location]\nactivity = ["created_at", 1]\n', "[location].activity", "must be an array of strings"),
    ('[customer]\nadhoc_values = "email"\n', "[customer].adhoc_values", "must be an array of strings"),
    ("[policy]\ninactivity = 14\n", "[policy].inactivity", "must be a string, not an integer"),
    ('customer = "public.customers"\n', "customer", "must be a table"),
    ('blockers = "cases"\n', "blockers", "must be an array of tables"),
    ("blockers = [1]\n", "[[blockers]] #1", "must be a table"),
    ('[[blockers]]\ntable = 1\ncolumn = "c"\nreferences = "location"\n', "[[blockers]] #1.table",
     "must be a string"),
])
def test_wrong_types(toml, where, expected):
    message = config_error(toml)
    assert where in message and expected in message


@pytest.mark.parametrize("key", ["inactivity", "login_window"])
@pytest.mark.parametrize("value, expected", [
    ("14 dayz", "is not an interval"),
    ("0 days", "must be longer than zero"),
    ("0 days 0 hours", "must be longer than zero"),
    ("", "is not an interval"),
    ("   ", "is not an interval"),
    ("days", "is not an interval"),
    ("-3 days", "is not an interval"),
    ("14 days; DROP TABLE customers", "is not an interval"),
])
def test_invalid_intervals(key, value, expected):
    message = config_error(f"[policy]\n{key} = '{value}'\n")
    assert f"[policy].{key}" in message and expected in message


@pytest.mark.parametrize("value", ["14 days", "6 months", "1 year 2 mons", "36h", "1.5 days", " 2 weeks "])
def test_valid_intervals(value):
    assert parse_mapping({"policy": {"inactivity": value}}, source="t").policy.inactivity == value.strip()


BAD_IDENTIFIERS = [
    pytest.param('cust"omers', "double quote or semicolon", id="double-quote"),
    pytest.param("customers; DROP TABLE x", "double quote or semicolon", id="semicolon"),
    pytest.param("cust\x00omers", "NUL", id="nul"),
    pytest.param("cust\nomers", "control characters", id="newline"),
    pytest.param("cust\tomers", "control characters", id="tab"),
    pytest.param("cust\x1bomers", "control characters", id="escape"),
    pytest.param("cust\x7fomers", "control characters", id="delete"),
    pytest.param("a" * 64, "63-byte", id="64-bytes"),
    pytest.param("é" * 32, "63-byte", id="64-bytes-multibyte"),
    pytest.param("", "must not be empty", id="empty"),
]

# Every place a mapping names an identifier, as (raw mapping builder, key the error names).
IDENTIFIER_PLACES = [
    (lambda v: {"database": {"schema": v}}, "[database].schema"),
    (lambda v: {"customer": {"key": v}}, "[customer].key"),
    (lambda v: {"customer": {"adhoc": v}}, "[customer].adhoc"),
    (lambda v: {"customer": {"activity": ["created_at", v]}}, "[customer].activity[1]"),
    (lambda v: {"location": {"key": v}}, "[location].key"),
    (lambda v: {"location": {"customer": v}}, "[location].customer"),
    (lambda v: {"location": {"activity": [v]}}, "[location].activity[0]"),
    (lambda v: {"contact": {"key": v}}, "[contact].key"),
    (lambda v: {"contact": {"location": v}}, "[contact].location"),
    (lambda v: {"contact": {"last_login": v}}, "[contact].last_login"),
    (lambda v: {"contact": {"activity": [v]}}, "[contact].activity[0]"),
    (lambda v: {"customer": {"table": v}}, "[customer].table"),
    (lambda v: {"location": {"table": f"app.{v}"}}, "[location].table"),
    (lambda v: {"contact": {"table": f"{v}.contacts"}}, "[contact].table"),
    (lambda v: {"blockers": [{"table": v, "column": "c", "references": "location"}]}, "[[blockers]] #1.table"),
    (lambda v: {"blockers": [{"table": "t", "column": v, "references": "location"}]}, "[[blockers]] #1.column"),
]


@pytest.mark.parametrize("build, where, value, expected", [
    pytest.param(build, where, *bad.values, id=f"{where}-{bad.id}")
    for build, where in IDENTIFIER_PLACES
    for bad in BAD_IDENTIFIERS
    # last_login = "" means "no last-login column": see the login_rule tests
    if not (where == "[contact].last_login" and bad.values[0] == "")
])
def test_bad_identifiers(build, where, value, expected):
    with pytest.raises(ConfigError) as info:
        parse_mapping(build(value), source="test.toml")
    message = str(info.value)
    assert where in message, message
    assert expected in message, message
    assert "\n" not in message and "\x00" not in message


def test_bad_identifier_from_toml_text():
    message = config_error('[customer]\nkey = "id\\"; DROP TABLE customers; --"\n')
    assert "[customer].key" in message and "double quote or semicolon" in message


def test_a_column_listed_twice():
    message = config_error('[customer]\nactivity = ["created_at", "created_at"]\n')
    assert "[customer].activity" in message and "twice" in message


def test_customer_activity_must_name_a_column():
    message = config_error("[customer]\nactivity = []\n")
    assert "[customer].activity" in message and "at least one" in message


@pytest.mark.parametrize("references", ["account", "Location", "", "locations"])
def test_bad_references(references):
    message = config_error(f"""
        [[blockers]]
        table = "cases"
        column = "location_id"
        references = "{references}"
    """)
    assert "[[blockers]] #1.references" in message and "must be one of customer, location, contact" in message


@pytest.mark.parametrize("missing", ["table", "column", "references"])
def test_blocker_keys_are_required(missing):
    entry = {"table": "cases", "column": "location_id", "references": "location"}
    del entry[missing]
    with pytest.raises(ConfigError, match=rf"\[\[blockers\]\] #1\.{missing}: is required"):
        parse_mapping({"blockers": [entry]}, source="test.toml")


def test_duplicate_blocker_names():
    message = config_error("""
        [[blockers]]
        table = "cases"
        column = "location_id"
        references = "location"
        name = "case"

        [[blockers]]
        table = "cases"
        column = "contact_id"
        references = "contact"
        name = "case"
    """)
    assert "[[blockers]]" in message and "'case'" in message


def test_duplicate_default_blocker_names():
    message = config_error("""
        [[blockers]]
        table = "cases"
        column = "location_id"
        references = "location"

        [[blockers]]
        table = "cases"
        column = "location_id"
        references = "contact"
    """)
    assert "'cases.location_id'" in message


@pytest.mark.parametrize("name", ["activity", "login", "eligible now"])
def test_reserved_blocker_names(name):
    message = config_error(f"""
        [[blockers]]
        table = "cases"
        column = "location_id"
        references = "location"
        name = "{name}"
    """)
    assert "[[blockers]] #1.name" in message and "reserved" in message


@pytest.mark.parametrize("name", ["   ", "two\nlines", "tab\there"])
def test_blocker_names_must_be_printable(name):
    with pytest.raises(ConfigError, match=r"\[\[blockers\]\] #1\.name"):
        parse_mapping({"blockers": [{"table": "t", "column": "c", "references": "location", "name": name}]},
                      source="test.toml")


def test_login_rule_without_last_login():
    message = config_error("""
        [contact]
        last_login = ""
        [policy]
        login_rule = true
    """)
    assert "[contact].last_login" in message and "login_rule" in message


def test_login_rule_defaults_to_true_and_needs_last_login():
    message = config_error('[contact]\nlast_login = ""\n')
    assert "[contact].last_login" in message and "login_rule" in message


def test_empty_adhoc_values():
    message = config_error("[customer]\nadhoc_values = []\n")
    assert "[customer].adhoc_values" in message and "at least one value" in message


@pytest.mark.parametrize("value", ["", "a\x00b"])
def test_bad_adhoc_value(value):
    with pytest.raises(ConfigError, match=r"\[customer\]\.adhoc_values\[1\]"):
        parse_mapping({"customer": {"adhoc_values": ["email", value]}}, source="test.toml")


def test_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[customer]\nkey = "\xe9"\n')
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_mapping(str(path))


# --- [retention], [guard], [throttle], [roles], [[owned]] ----------------------------------

def test_retention_defaults_and_values():
    assert (load_mapping(None).retention.runs, load_mapping(None).retention.purged) == ("1 year", "90 days")
    mapping = parse("""
        [retention]
        runs = "30 days"
        purged = " 1 week 12 h "
    """)
    assert (mapping.retention.runs, mapping.retention.purged) == ("30 days", "1 week 12 h")
    assert parse('[retention]\nruns = "2 years"\n').retention.purged == "90 days"  # the other one defaults
    assert mapping.fingerprint() != load_mapping(None).fingerprint()  # it shapes the deployed SQL


@pytest.mark.parametrize("key", ["runs", "purged"])
@pytest.mark.parametrize("value, expected", [
    ("90 dayz", "is not an interval"),
    ("0 days", "must be longer than zero"),
    ("", "is not an interval"),
    ("-1 year", "is not an interval"),
    ("90 days'; DELETE FROM adhoc_gc.runs; --", "is not an interval"),
])
def test_retention_invalid_intervals(key, value, expected):
    message = config_error(f'[retention]\n{key} = "{value}"\n')
    assert f"[retention].{key}: " in message and expected in message


@pytest.mark.parametrize("toml, where, expected", [
    ('[retention]\narchive = "1 year"\n', "[retention].archive", "unknown key (known: runs, purged)"),
    ("[retention]\nruns = 365\n", "[retention].runs", "must be a string, not an integer"),
    ('retention = "1 year"\n', "retention", "must be a table"),
])
def test_retention_unknown_key_and_wrong_types(toml, where, expected):
    message = config_error(toml)
    assert where in message and expected in message


def test_guard_throttle_and_roles_values():
    mapping = parse("""
        [guard]
        max_customers_per_run = 500
        max_fraction_of_adhoc = 1
        lock_timeout = "250 ms"
        statement_timeout = "2 min"
        [throttle]
        max_replica_lag = "30 seconds"
        [roles]
        owner = "gc owner"
        analyst = "reader"
    """)
    assert mapping.guard.max_customers_per_run == 500
    assert mapping.guard.max_fraction_of_adhoc == 1.0 and isinstance(mapping.guard.max_fraction_of_adhoc, float)
    assert (mapping.guard.lock_timeout, mapping.guard.statement_timeout) == ("250 ms", "2 min")
    assert mapping.throttle.max_replica_lag == "30 seconds"
    assert (mapping.roles.owner, mapping.roles.operator, mapping.roles.analyst) == ("gc owner", None, "reader")


@pytest.mark.parametrize("toml, where, expected", [
    ("[guard]\nmax_fraction_of_adhoc = 1.5\n", "[guard].max_fraction_of_adhoc",
     "must be a number above 0 and at most 1, not 1.5"),
    ("[guard]\nmax_fraction_of_adhoc = 0\n", "[guard].max_fraction_of_adhoc", "above 0"),
    ("[guard]\nmax_fraction_of_adhoc = nan\n", "[guard].max_fraction_of_adhoc", "above 0"),
    ('[guard]\nmax_fraction_of_adhoc = "50%"\n', "[guard].max_fraction_of_adhoc", "above 0"),
    ("[guard]\nmax_fraction_of_adhoc = true\n", "[guard].max_fraction_of_adhoc", "above 0"),
    ("[guard]\nmax_customers_per_run = 0\n", "[guard].max_customers_per_run", "whole number of at least 1"),
    ("[guard]\nmax_customers_per_run = 2.5\n", "[guard].max_customers_per_run", "whole number of at least 1"),
    ('[guard]\nlock_timeout = "5 secondz"\n', "[guard].lock_timeout", "is not an interval"),
    ('[guard]\nlock_timeout = "5s; SET lock_timeout = 0"\n', "[guard].lock_timeout", "is not an interval"),
    ('[guard]\nlock_timeout = "0 seconds"\n', "[guard].lock_timeout", "must be longer than zero"),
    ("[guard]\nlock_timeout = 5\n", "[guard].lock_timeout", "must be a string, not an integer"),
    ('[guard]\nstatement_timeout = "forever"\n', "[guard].statement_timeout", "is not an interval"),
    ('[guard]\nmax_runtime = "10 minutes"\n', "[guard].max_runtime", "unknown key"),
    ('[throttle]\nmax_replica_lag = "30 sec lag"\n', "[throttle].max_replica_lag", "is not an interval"),
    ('[roles]\nowner = "a;b"\n', "[roles].owner", "double quote or semicolon"),
    ('[roles]\noperator = "ops\\"x"\n', "[roles].operator", "double quote or semicolon"),
    ('[roles]\nanalyst = ""\n', "[roles].analyst", "must not be empty"),
    ("[roles]\nowner = 1\n", "[roles].owner", "must be a string, not an integer"),
    ('[roles]\nadmin = "root"\n', "[roles].admin", "unknown key (known: owner, operator, analyst)"),
])
def test_bad_guard_throttle_and_roles_values(toml, where, expected):
    message = config_error(toml)
    assert where in message and expected in message, message


_OWNED = {"table": "public.notes", "column": "customer_id", "references": "customer"}


def test_owned_entries_load():
    mapping = parse("""
        [[owned]]
        table = "public.notes"
        column = "customer_id"
        references = "customer"
        name = "notes"

        [[owned]]
        table = "tags"
        column = "contact_id"
        references = "contact"
    """)
    assert [(str(o.table), o.column, o.references, o.name) for o in mapping.owned] == [
        ("public.notes", "customer_id", "customer", "notes"),
        ("public.tags", "contact_id", "contact", "tags.contact_id"),
    ]


@pytest.mark.parametrize("entries, where, expected", [
    ([{**_OWNED, "colour": "red"}], "[[owned]] #1.colour", "unknown key (known: table, column, references, name)"),
    ([_OWNED, {**_OWNED, "column": "author_id", "cascade": True}], "[[owned]] #2.cascade", "unknown key"),
    ([{"table": "public.notes", "column": "customer_id"}], "[[owned]] #1.references", "is required"),
    ([{"table": "public.notes", "references": "customer"}], "[[owned]] #1.column", "is required"),
    ([{"column": "customer_id", "references": "customer"}], "[[owned]] #1.table", "is required"),
    ([{**_OWNED, "references": "account"}], "[[owned]] #1.references", "must be one of customer, location, contact"),
    ([{**_OWNED, "column": "customer_id; DROP TABLE notes"}], "[[owned]] #1.column", "double quote or semicolon"),
    ([{**_OWNED, "table": 'public."notes'}], "[[owned]] #1.table", "double quote or semicolon"),
    ([{**_OWNED, "column": 7}], "[[owned]] #1.column", "must be a string, not an integer"),
    ([{**_OWNED, "name": "two\nlines"}], "[[owned]] #1.name", "must be printable text"),
    ([_OWNED, dict(_OWNED)], "[[owned]]", "two entries share the name 'notes.customer_id'"),
    ([{"table": "public.cases", "column": "location_id", "references": "location"}], "[[owned]]",
     "is listed as a blocker and as owned"),
    (["public.notes"], "[[owned]] #1", "must be a table"),
    ("public.notes", "owned", "must be an array of tables ([[owned]])"),
])
def test_bad_owned_entries(entries, where, expected):
    with pytest.raises(ConfigError) as info:
        parse_mapping({"owned": entries}, source="test.toml")
    message = str(info.value)
    assert message.startswith(f"test.toml: {where}"), message
    assert expected in message and "\n" not in message, message


# --- where the mapping comes from --------------------------------------------------------

def _write(path, schema: str) -> str:
    path.write_text(f'[database]\nschema = "{schema}"\n')
    return str(path)


def test_config_precedence(tmp_path, monkeypatch):
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    explicit = _write(tmp_path / "explicit.toml", "from_flag")
    from_env = _write(tmp_path / "env.toml", "from_env")
    _write(cwd / DEFAULT_CONFIG_FILE, "from_cwd")

    monkeypatch.setenv(CONFIG_ENV, from_env)
    assert load_mapping(explicit).schema == "from_flag"
    assert load_mapping(explicit).source == explicit
    assert load_mapping(None).schema == "from_env"
    assert load_mapping(None).source == from_env

    monkeypatch.delenv(CONFIG_ENV)
    assert load_mapping(None).schema == "from_cwd"
    assert load_mapping(None).source == DEFAULT_CONFIG_FILE

    (cwd / DEFAULT_CONFIG_FILE).unlink()
    assert load_mapping(None).source == "built-in defaults"
    assert load_mapping(None).schema == "adhoc_gc"


def test_empty_env_var_falls_through_to_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / DEFAULT_CONFIG_FILE, "from_cwd")
    monkeypatch.setenv(CONFIG_ENV, "")
    assert load_mapping(None).schema == "from_cwd"


def test_missing_explicit_config(tmp_path, monkeypatch):
    _write(tmp_path / DEFAULT_CONFIG_FILE, "from_cwd")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="config file not found: .*nope.toml"):
        load_mapping(str(tmp_path / "nope.toml"))


def test_missing_config_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=rf"nope.toml \(from \${CONFIG_ENV}\)"):
        load_mapping(None)


def test_a_directory_is_not_a_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file is a directory"):
        load_mapping(str(tmp_path))


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[customer]\nkey = 1\n")
    with pytest.raises(ConfigError, match=rf"^{path}: \[customer\]\.key: must be a string"):
        load_mapping(str(path))


def test_dsn_precedence(monkeypatch):
    with_dsn = parse_mapping({"database": {"dsn": "host=from-file"}}, source="t")
    without = parse_mapping({}, source="t")

    monkeypatch.setenv(DSN_ENV, "host=from-env")
    assert resolve_dsn(with_dsn, "host=from-flag") == "host=from-flag"
    assert resolve_dsn(with_dsn, None) == "host=from-env"
    monkeypatch.delenv(DSN_ENV)
    assert resolve_dsn(with_dsn, None) == "host=from-file"
    assert resolve_dsn(without, None) == ""  # libpq's PG* variables
    monkeypatch.setenv(DSN_ENV, "")
    assert resolve_dsn(with_dsn, "") == "host=from-file"  # empty values do not count


# --- property: anything TOML can hold loads or is a ConfigError -------------------------

_toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.text(max_size=12),
    st.datetimes(),
    st.dates(),
    st.times(),
)
_toml_values = st.recursive(
    _toml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
# Values a mapping plausibly holds, mostly of the right type, so that the search reaches
# the deeper checks (identifiers, intervals, blockers, rendering) and not only the first.
_valid_names = st.sampled_from(["id", "created_at", "public.customers", "is_adhoc", "last_login_at", "a.b.c",
                                "Mixed Case", "ünï"])
_identifier_like = st.one_of(
    _valid_names, _valid_names, _valid_names, _valid_names,
    st.sampled_from(["", "x" * 64, 'a"b', "a;b", "a\x00b", "a\nb"]),
    st.text(max_size=70),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
)
_interval_like = st.one_of(
    st.sampled_from(["14 days", "0 days", "6 months", "1.5 h", "1 year 2 mons", "14 dayz", ""]),
    st.from_regex(r"\A\s?\d{1,4}(\.\d{1,2})?\s?(days|h|mon|weeks)\Z"),
    st.text(max_size=20),
)


def _typed(kind: str):
    right = {
        "str": _identifier_like,
        "strlist": st.lists(_identifier_like, max_size=3),
        "bool": st.booleans(),
        "interval": _interval_like,
        "references": st.sampled_from(["customer", "location", "contact", "account"]),
        "name": st.sampled_from(["case", "device", "activity", "login", "", " "]) | st.text(max_size=8),
        "posint": st.integers(min_value=-2, max_value=100_000) | st.sampled_from([0, 1, True]),
        "fraction": st.floats(min_value=-0.5, max_value=1.5) | st.sampled_from([0, 0.5, 1, 1.5, True, float("nan")]),
    }[kind]
    return st.one_of(*[right] * 7, _toml_values)  # a wrong type one time in eight


_SECTION_KINDS = {
    "database": {"dsn": "str", "schema": "str"},
    "customer": {"table": "str", "key": "str", "adhoc": "str", "adhoc_values": "strlist", "activity": "strlist"},
    "location": {"table": "str", "key": "str", "customer": "str", "activity": "strlist"},
    "contact": {"table": "str", "key": "str", "location": "str", "last_login": "str", "activity": "strlist"},
    "policy": {"inactivity": "interval", "login_window": "interval", "login_rule": "bool"},
    "retention": {"runs": "interval", "purged": "interval"},
    "guard": {"max_customers_per_run": "posint", "max_fraction_of_adhoc": "fraction",
              "lock_timeout": "interval", "statement_timeout": "interval"},
    "throttle": {"max_replica_lag": "interval"},
    "roles": {"owner": "str", "operator": "str", "analyst": "str"},
}
_BLOCKER_KINDS = {"table": "str", "column": "str", "references": "references", "name": "name"}
_REFERENCE_ARRAYS = ("blockers", "owned")  # [[blockers]] and [[owned]] take the same keys


def _table(kinds: dict[str, str]):
    known = st.fixed_dictionaries({}, optional={key: _typed(kind) for key, kind in kinds.items()})
    unknown = st.dictionaries(st.text(max_size=8), _toml_values, max_size=1)
    return st.one_of(known, known, known, st.builds(lambda a, b: {**b, **a}, known, unknown))


_documents = st.fixed_dictionaries({}, optional={
    **{name: st.one_of(_table(kinds), _table(kinds), _table(kinds), _toml_values)
       for name, kinds in _SECTION_KINDS.items()},
    **{name: st.one_of(st.lists(_table(_BLOCKER_KINDS), max_size=4), st.lists(_toml_values, max_size=2),
                       _toml_values)
       for name in _REFERENCE_ARRAYS},
})
_arbitrary_documents = st.dictionaries(
    st.sampled_from([*_SECTION_KINDS, *_REFERENCE_ARRAYS]) | st.text(max_size=10), _toml_values, max_size=4)


def _loads_or_config_error(raw) -> Mapping | None:
    try:
        mapping = parse_mapping(raw, source="hypothesis")
    except ConfigError as exc:
        assert str(exc).startswith("hypothesis: ")
        return None
    # What loads must also render: nothing from the mapping can break the templates.
    render_queries(mapping)
    render_objects(mapping)
    render_grants(mapping)
    mapping.fingerprint()
    return mapping


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents)
def test_any_mapping_shaped_document_loads_or_is_a_config_error(raw):
    _loads_or_config_error(raw)


# One of the sections that shape the purge rather than the stack, alone, so that valid ones
# load often enough for their values to be checked.
_purge_sections = st.one_of(
    *[st.fixed_dictionaries({name: _table(_SECTION_KINDS[name])})
      for name in ("retention", "guard", "throttle", "roles")],
    st.fixed_dictionaries({"owned": st.lists(
        st.fixed_dictionaries({"table": _typed("str"), "column": _typed("str"), "references": _typed("references")},
                              optional={"name": _typed("name")}), max_size=3)}),
)


@settings(max_examples=400, deadline=None)
@given(_purge_sections)
def test_any_guard_retention_throttle_roles_or_owned_section_loads_or_is_a_config_error(raw):
    mapping = _loads_or_config_error(raw)
    if mapping is None:
        return
    guard = mapping.guard
    assert guard.max_customers_per_run is None or (type(guard.max_customers_per_run) is int
                                                   and guard.max_customers_per_run >= 1)
    assert guard.max_fraction_of_adhoc is None or 0 < guard.max_fraction_of_adhoc <= 1
    for role in (mapping.roles.owner, mapping.roles.operator, mapping.roles.analyst):
        assert role is None or (role and not {'"', ";", "\x00"} & set(role))
    for owned in mapping.owned:
        assert owned.references in ("customer", "location", "contact")
        assert not {'"', ";", "\x00"} & set(owned.table.schema + owned.table.name + owned.column)


def test_the_property_tests_generate_every_section_the_loader_knows():
    from adhoc_gc.mapping import _ARRAY_SECTIONS, _REFERENCE_KEYS, _SECTION_KEYS

    assert {name: set(keys) for name, keys in _SECTION_KINDS.items()} == \
        {name: set(keys) for name, keys in _SECTION_KEYS.items()}
    assert set(_REFERENCE_ARRAYS) == set(_ARRAY_SECTIONS)
    assert set(_BLOCKER_KINDS) == set(_REFERENCE_KEYS)


@settings(max_examples=200, deadline=None)
@given(_arbitrary_documents)
def test_any_toml_document_loads_or_is_a_config_error(raw):
    _loads_or_config_error(raw)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(IDENTIFIER_PLACES), st.text())
def test_any_identifier_loads_or_is_a_config_error(place, value):
    build, _ = place
    mapping = _loads_or_config_error(build(value))
    if mapping is not None:
        assert value and '"' not in value and ";" not in value and len(value.encode()) <= 63
        assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in value)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["inactivity", "login_window"]), _interval_like)
def test_any_interval_loads_or_is_a_config_error(key, value):
    _loads_or_config_error({"policy": {key: value}})


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_loads_or_is_a_config_error(text):
    try:
        parse_mapping_text(text, source="hypothesis")
    except ConfigError:
        pass
