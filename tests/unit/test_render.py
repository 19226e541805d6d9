"""The rendered SQL: golden snapshots, quoting of everything a mapping names, no template
left over, and every query the runner asks for.

No database. Regenerate the snapshots after an intended change with
    ADHOC_GC_UPDATE_SNAPSHOTS=1 python -m pytest tests/unit/test_render.py
and review the diff.
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

import adhoc_gc
from adhoc_gc.deploy import render_deploy_sql
from adhoc_gc.mapping import Mapping, parse_mapping, parse_mapping_text
from adhoc_gc.render import quote_ident, quote_literal, render_objects, render_queries, render_template

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE_ENV = "ADHOC_GC_UPDATE_SNAPSHOTS"

DEFAULT = parse_mapping({}, source="built-in defaults")

# Everything a mapping can vary at once: quoted names with spaces, capitals and non-ASCII
# letters, tables in several schemas, a text ad-hoc column with values that need escaping,
# no location activity, no last-login column, blockers on each entity, a compound interval.
# Every identifier carries "zq" (or is a schema with a space) so that it cannot turn up in
# the SQL by accident, only through the mapping.
UNUSUAL_TOML = textwrap.dedent("""
    [database]
    schema = "GC Ops"

    [customer]
    table = "Crm Zone.Kunden Zq"
    key = "kunde_nr_zq"
    adhoc = "Herkunft_Zq"
    adhoc_values = ["e-mail", "it's chat"]
    activity = ["Angelegt_Zq"]

    [location]
    table = "Außen Zone.Standort Zq"
    key = "standort_nr_zq"
    customer = "kunde_ref_zq"
    activity = []

    [contact]
    table = "Crm Zone.kontakte_zq"
    key = "kontakt_id_zq"
    location = "standort_ref_zq"
    last_login = ""
    activity = ["geändert_zq", "erstellt_zq"]

    [[blockers]]
    table = "Crm Zone.Vertrag Zq"
    column = "kunde_fk_zq"
    references = "customer"
    name = "Vertrag (offen)"

    [[blockers]]
    table = "Außen Zone.Zugang Zq"
    column = "standort_fk_zq"
    references = "location"
    name = "Zugang"

    [[blockers]]
    table = "geraete_zq"
    column = "kontakt_fk_zq"
    references = "contact"
    name = "l'appareil"

    [policy]
    inactivity = "90 days 12 hours"
    login_window = "7 months 3 days"
    login_rule = false
""")
UNUSUAL = parse_mapping_text(UNUSUAL_TOML, source="unusual.toml")


def mapping_identifiers(mapping: Mapping) -> set[str]:
    names = {mapping.schema}
    for entity in (mapping.customer, mapping.location, mapping.contact):
        names |= {entity.table.schema, entity.table.name, entity.key, *entity.activity}
    names |= {mapping.customer.adhoc, mapping.location.customer, mapping.contact.location}
    if mapping.contact.last_login:
        names.add(mapping.contact.last_login)
    for blocker in mapping.blockers:
        names |= {blocker.table.schema, blocker.table.name, blocker.column}
    return names


def rendered_queries_text(mapping: Mapping) -> str:
    return "".join(f"-- name: {name}\n{sql}\n\n" for name, sql in sorted(render_queries(mapping).items()))


def check_snapshot(name: str, actual: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    assert path.is_file(), f"no snapshot {path}: generate it with {UPDATE_ENV}=1"
    expected = path.read_text(encoding="utf-8")
    # Plain == so that pytest shows the diff; the message says how to accept a change.
    assert actual == expected, f"{name} differs from its snapshot; if intended, regenerate with {UPDATE_ENV}=1"


# --- snapshots ---------------------------------------------------------------------------

@pytest.mark.parametrize("mapping, name", [(DEFAULT, "default"), (UNUSUAL, "unusual")])
def test_deploy_sql_snapshot(mapping, name):
    check_snapshot(f"{name}.sql", render_deploy_sql(mapping))


@pytest.mark.parametrize("mapping, name", [(DEFAULT, "default"), (UNUSUAL, "unusual")])
def test_queries_snapshot(mapping, name):
    check_snapshot(f"{name}_queries.sql", rendered_queries_text(mapping))


def test_rendering_is_deterministic():
    assert render_deploy_sql(UNUSUAL) == render_deploy_sql(parse_mapping_text(UNUSUAL_TOML, source="unusual.toml"))


def test_objects_only_is_the_tail_of_the_full_render():
    full = render_deploy_sql(DEFAULT)
    objects = render_deploy_sql(DEFAULT, objects_only=True)
    assert "CREATE TABLE" not in objects and "CREATE SCHEMA" not in objects
    assert full.endswith(objects.split("\n", 1)[1])  # same after the header line


# --- what the rendered SQL may contain ---------------------------------------------------

ALL_RENDERINGS = [
    pytest.param(lambda m: render_deploy_sql(m), id="deploy-sql"),
    pytest.param(lambda m: "\n".join(o.sql for o in render_objects(m)), id="objects"),
    pytest.param(rendered_queries_text, id="queries"),
]


@pytest.mark.parametrize("render", ALL_RENDERINGS)
@pytest.mark.parametrize("mapping", [DEFAULT, UNUSUAL], ids=["default", "unusual"])
def test_no_template_syntax_left(render, mapping):
    sql = render(mapping)
    for marker in ("{{", "}}", "{%", "%}", "{#", "#}"):
        assert marker not in sql, f"{marker!r} left in the rendered SQL"


# One left-to-right pass over SQL: comments, string literals, quoted identifiers.
_SQL_TOKEN = re.compile(r"""(?P<comment>--[^\n]*)|(?P<literal>'(?:[^']|'')*')|(?P<ident>"(?:[^"]|"")*")""")


def split_sql(sql: str) -> tuple[set[str], set[str], str]:
    """(quoted identifiers, literal values, the rest with comments and both removed)."""
    identifiers: set[str] = set()
    literals: set[str] = set()

    def strip(match: re.Match) -> str:
        if match["ident"]:
            identifiers.add(match["ident"][1:-1].replace('""', '"'))
            return '""'
        if match["literal"]:
            literals.add(match["literal"][1:-1].replace("''", "'"))
            return "''"
        return ""

    return identifiers, literals, _SQL_TOKEN.sub(strip, sql)


# A quoted, schema-qualified table name as a text literal: '"schema"."table"'::regclass.
_REGCLASS_LITERAL = re.compile(r'"(?:[^"]|"")*"\."(?:[^"]|"")*"')


@pytest.mark.parametrize("render", ALL_RENDERINGS)
def test_mapping_identifiers_appear_only_quoted(render):
    sql = render(UNUSUAL)
    identifiers, literals, bare = split_sql(sql)
    names = mapping_identifiers(UNUSUAL)
    for name in sorted(names):
        assert name not in bare, f"{name!r} appears unquoted in the rendered SQL"
        # Every occurrence is a whole quoted identifier (or a whole literal value, as in
        # hashtext('schema')), never pasted into a longer one.
        longer = {q for q in identifiers | literals
                  if name in q and q not in names and not _REGCLASS_LITERAL.fullmatch(q)}
        assert not longer, f"{name!r} appears inside quoted identifiers or literals {longer}"
    if render is not rendered_queries_text:
        # Tables, views and functions use every name the mapping gives, as identifiers.
        unused = names - identifiers
        assert not unused, f"names never rendered as identifiers: {unused}"


def test_values_appear_only_as_literals():
    identifiers, literals, bare = split_sql(render_deploy_sql(UNUSUAL))
    for value in [*UNUSUAL.customer.adhoc_values, *(b.name for b in UNUSUAL.blockers), UNUSUAL.policy.inactivity]:
        assert value in literals, f"{value!r} is not rendered as a literal"
        assert value not in bare and value not in identifiers


def test_schema_qualified_tables_are_quoted_part_by_part():
    sql = render_deploy_sql(UNUSUAL)
    assert '"Crm Zone"."Kunden Zq"' in sql
    assert '"Außen Zone"."Standort Zq"' in sql
    assert '"public"."geraete_zq"' in sql  # no schema in the mapping: public
    assert '"GC Ops"."candidates"' in sql
    assert "Crm Zone.Kunden Zq" not in sql


def test_single_quotes_in_values_are_escaped_literals():
    sql = render_deploy_sql(UNUSUAL)
    assert "'it''s chat'" in sql
    assert "'l''appareil'" in sql
    assert "'it's chat'" not in sql
    assert "'l'appareil'" not in sql
    assert "'e-mail'" in sql


def test_an_adhoc_value_cannot_break_out_of_its_literal():
    evil = "x'); DROP TABLE customers; --"
    mapping = parse_mapping({"customer": {"adhoc_values": [evil]}}, source="t")
    sql = render_deploy_sql(mapping)
    assert quote_literal(evil) == "'x''); DROP TABLE customers; --'"
    assert quote_literal(evil) in sql
    assert sql.count("DROP TABLE customers") == sql.count(quote_literal(evil))


def test_policy_intervals_are_literals():
    sql = render_deploy_sql(UNUSUAL)
    assert "'90 days 12 hours'::interval" in sql
    # login_rule = false and no last-login column: the login window is never used.
    assert "7 months 3 days" not in sql
    default_sql = render_deploy_sql(DEFAULT)
    assert "'14 days'::interval" in default_sql and "'6 months'::interval" in default_sql


def test_the_fingerprint_is_rendered_into_the_deployed_function():
    sql = render_deploy_sql(UNUSUAL)
    assert f"SELECT {quote_literal(UNUSUAL.fingerprint())}::text" in sql
    assert f"(fingerprint {UNUSUAL.fingerprint()})" in sql.splitlines()[0]


def test_quote_helpers():
    assert quote_ident('a"b') == '"a""b"'
    assert quote_literal("it's") == "'it''s'"
    with pytest.raises(ValueError):
        quote_ident("a\x00b")
    with pytest.raises(ValueError):
        quote_literal("a\x00b")


# --- the runner's queries ----------------------------------------------------------------

def runner_query_names() -> set[str]:
    package = Path(adhoc_gc.__file__).parent
    names: set[str] = set()
    for path in package.glob("*.py"):
        names |= set(re.findall(r"""queries\[["']([A-Za-z_][A-Za-z0-9_]*)["']\]""", path.read_text()))
    return names


def test_the_runner_uses_queries():
    names = runner_query_names()
    # A sanity check on the grep itself: these are certainly used.
    assert {"purge_batch", "start_run", "finish_run", "deployed_mapping", "plan_summary"} <= names


@pytest.mark.parametrize("mapping", [DEFAULT, UNUSUAL], ids=["default", "unusual"])
def test_render_queries_has_every_query_the_runner_uses(mapping):
    queries = render_queries(mapping)
    missing = runner_query_names() - set(queries)
    assert not missing, f"queries the runner uses but queries.sql lacks: {sorted(missing)}"
    for name, sql in queries.items():
        assert sql.strip(), f"query {name} is empty"
        assert "-- name:" not in sql


def test_explain_customer_binds_the_key_and_states_the_adhoc_rule_once():
    # The key is a bind parameter; whether a customer is ad hoc is decided by the deployed
    # explain_customer function, with the same macro as the rules (values as literals).
    assert "%(customer_id)s" in render_queries(UNUSUAL)["explain_customer"]
    function = render_template("functions/explain_customer.sql", UNUSUAL)
    assert "IN ('e-mail', 'it''s chat')" in function
    assert '"c"."is_adhoc" IS TRUE' in render_template("functions/explain_customer.sql", DEFAULT)
