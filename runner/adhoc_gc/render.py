"""Renders the Jinja-templated SQL in sql/ for one mapping.

Jinja shapes structure only: identifiers pass through |ident or |table (quoted), values
through |literal (a quoted string literal). Nothing else from the mapping reaches SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jinja2

from . import __version__
from .mapping import Mapping, TableName
from .purge import MAX_RACE_RETRIES
from .resources import sql_dir

# Deployed in this order: functions and procedures first (plpgsql bodies are checked at
# call time, views at creation), then views. Each file holds one object.
OBJECT_KINDS = ("functions", "procedures", "views")
QUERIES_FILE = "queries.sql"
GRANTS_FILE = "grants.sql"
_QUERY_HEADER = re.compile(r"^-- name: (?P<name>[a-z_]+)\s*$", re.MULTILINE)


def quote_ident(name: str) -> str:
    if "\x00" in name:
        raise ValueError("identifier contains NUL")
    return '"' + name.replace('"', '""') + '"'


def quote_table(table: TableName) -> str:
    return f"{quote_ident(table.schema)}.{quote_ident(table.name)}"


def quote_literal(value: object) -> str:
    # standard_conforming_strings is on (the default since PostgreSQL 9.1): only quotes escape.
    text = str(value)
    if "\x00" in text:
        raise ValueError("literal contains NUL")
    return "'" + text.replace("'", "''") + "'"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(sql_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        extensions=["jinja2.ext.do"],
    )
    env.filters["ident"] = quote_ident
    env.filters["table"] = quote_table
    env.filters["literal"] = quote_literal
    return env


def _context(mapping: Mapping) -> dict:
    return {
        "schema": mapping.schema,
        "customer": mapping.customer,
        "location": mapping.location,
        "contact": mapping.contact,
        "blockers": mapping.blockers,
        "owned": mapping.owned,
        "guard": mapping.guard,
        "throttle": mapping.throttle,
        "roles": mapping.roles,
        "policy": mapping.policy,
        "retention": mapping.retention,
        "fingerprint": mapping.fingerprint(),
        # The procedure takes an undone batch again as often as the runner does.
        "max_race_retries": MAX_RACE_RETRIES,
        "version": __version__,
    }


@dataclass(frozen=True)
class RenderedObject:
    path: str  # e.g. "views/candidates.sql"
    sql: str


_DEPENDS_ON = re.compile(r"\{#\s*depends on:\s*(?P<paths>[^#]+?)\s*#\}")


def object_paths() -> list[str]:
    """Every object file, kinds in OBJECT_KINDS order, by name within a kind, except that a
    file declaring `{# depends on: views/eligibility.sql #}` comes after what it names."""
    root = sql_dir()
    paths = [f"{kind}/{path.name}" for kind in OBJECT_KINDS for path in sorted((root / kind).glob("*.sql"))]
    depends = {
        path: [d.strip() for m in _DEPENDS_ON.finditer((root / path).read_text()) for d in m["paths"].split(",")]
        for path in paths
    }
    ordered: list[str] = []

    def place(path: str, seen: tuple[str, ...] = ()) -> None:
        if path in ordered:
            return
        if path in seen:
            raise ValueError(f"sql/{path}: circular 'depends on'")
        for dependency in depends[path]:
            if dependency not in depends:
                raise ValueError(f"sql/{path}: depends on unknown sql/{dependency}")
            place(dependency, (*seen, path))
        ordered.append(path)

    for path in paths:
        place(path)
    return ordered


def render_template(path: str, mapping: Mapping, **extra) -> str:
    return _environment().get_template(path).render({**_context(mapping), **extra})


def render_objects(mapping: Mapping) -> list[RenderedObject]:
    env = _environment()
    context = _context(mapping)
    return [RenderedObject(path, env.get_template(path).render(context)) for path in object_paths()]


def render_grants(mapping: Mapping) -> str:
    """Ownership and privileges for the [roles], run after the objects."""
    return render_template(GRANTS_FILE, mapping)


def render_queries(mapping: Mapping) -> dict[str, str]:
    """The runner's named queries from sql/queries.sql, rendered for this mapping."""
    text = render_template(QUERIES_FILE, mapping)
    queries: dict[str, str] = {}
    matches = list(_QUERY_HEADER.finditer(text))
    for match, following in zip(matches, matches[1:] + [None]):
        end = following.start() if following else len(text)
        queries[match["name"]] = text[match.end():end].strip()
    return queries
