"""`adhoc-gc metrics`: the package's state in Prometheus' text exposition format, for
node_exporter's textfile collector (write it atomically, see docs/operators.md):

    adhoc-gc metrics > /var/lib/node_exporter/adhoc_gc.prom.tmp \
        && mv /var/lib/node_exporter/adhoc_gc.prom.tmp /var/lib/node_exporter/adhoc_gc.prom

Read only: one READ ONLY, REPEATABLE READ transaction, so every number is from the same
snapshot. Every sample carries the labels `schema` (the package schema) and `database`.

The `_total` families count what is in the runs table, which every purge prunes to
[retention] runs: they can go down, so they are typed gauge, not counter.
"""

from __future__ import annotations

import dataclasses
import math

import psycopg

from .db import connect
from .mapping import Mapping

# Every status a run can have (the CHECK constraint of runs.status, migrations/).
RUN_STATUSES = ("running", "succeeded", "failed", "skipped", "refused", "abandoned")
DELETED_PARTS = ("customers", "locations", "contacts")


@dataclasses.dataclass
class Family:
    name: str
    type: str  # "gauge" (nothing here is a true counter, see above)
    help: str
    samples: list[tuple[dict[str, str], float]] = dataclasses.field(default_factory=list)


def collect(dsn: str, mapping: Mapping, queries: dict[str, str], candidates: bool = True) -> list[Family]:
    """The metric families, in the order they are printed. `candidates=False` leaves out the
    count of the candidates view, the one query that may take long on a big table."""
    from .purge import check_deployed

    with connect(dsn) as conn:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        check_deployed(conn, mapping, queries)
        with conn.transaction():
            database, adhoc_customers = conn.execute(queries["metrics_summary"]).fetchone()
            candidate_count = conn.execute(queries["count_candidates"]).fetchone()[0] if candidates else None
            last_run = conn.execute(queries["metrics_last_run"]).fetchone()
            last_success = conn.execute(queries["metrics_last_success"]).fetchone()[0]
            by_status = conn.execute(queries["metrics_runs_by_status"]).fetchall()

    base = {"schema": mapping.schema, "database": database}

    def family(name: str, help: str, *samples: tuple[dict[str, str], float]) -> Family:
        return Family(name, "gauge", help, [({**base, **labels}, value) for labels, value in samples])

    families = []
    if candidates:
        families.append(family(
            "adhoc_gc_candidates", "Ad-hoc customers whose whole stack may be deleted now (the candidates view).",
            ({}, candidate_count)))
    families.append(family(
        "adhoc_gc_adhoc_customers", "Customers created ad hoc, eligible or not.", ({}, adhoc_customers)))
    last_status = last_run[0] if last_run else None
    families.append(family(
        "adhoc_gc_last_run_status",
        "1 for the status of the newest purge run, 0 for the others (all 0 before the first run).",
        *(({"status": status}, int(status == last_status)) for status in _statuses(last_status))))
    if last_run:
        _, started, duration, *deleted = last_run
        families.append(family(
            "adhoc_gc_last_run_timestamp_seconds", "When the newest purge run started, in seconds since the epoch.",
            ({}, started)))
        families.append(family(
            "adhoc_gc_last_run_duration_seconds",
            "How long the newest purge run took (while it runs: so far), in seconds.", ({}, duration)))
        families.append(family(
            "adhoc_gc_last_run_deleted", "Rows the newest purge run deleted, by part of the stack.",
            *(({"part": part}, count) for part, count in zip(DELETED_PARTS, deleted))))
    families.append(family(
        "adhoc_gc_last_success_timestamp_seconds",
        "When the newest succeeded purge run finished, in seconds since the epoch "
        "(0 when the runs table holds none).", ({}, last_success or 0)))
    runs = {status: (count, customers) for status, count, customers in by_status}
    families.append(family(
        "adhoc_gc_runs_total",
        "Purge runs in the runs table, by status. The table keeps [retention] runs, so this can go down.",
        *(({"status": status}, runs.get(status, (0, 0))[0]) for status in _statuses(*runs))))
    families.append(family(
        "adhoc_gc_customers_deleted_total",
        "Customers deleted by the purge runs in the runs table. The table keeps [retention] runs, so this can "
        "go down.", ({}, sum(customers for _, customers in runs.values()))))
    return families


def _statuses(*seen: str | None) -> list[str]:
    """Every known status, then any other one found in the table (a newer package's)."""
    return list(RUN_STATUSES) + sorted({s for s in seen if s and s not in RUN_STATUSES})


def exposition(families: list[Family]) -> str:
    """Prometheus' text format (version 0.0.4): HELP, TYPE, then the samples of each family."""
    lines = []
    for f in families:
        lines.append(f"# HELP {f.name} {_escape_help(f.help)}")
        lines.append(f"# TYPE {f.name} {f.type}")
        for labels, value in f.samples:
            rendered = ",".join(f'{key}="{escape_label_value(str(val))}"' for key, val in labels.items())
            lines.append(f"{f.name}{{{rendered}}} {format_value(value)}")
    return "\n".join(lines) + "\n"


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float | None) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
