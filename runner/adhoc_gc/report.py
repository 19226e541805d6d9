"""`adhoc-gc report`: where the ad-hoc customers stand and what the purges did, as terminal
text, JSON, one flat CSV, or one self-contained HTML page (inline CSS and SVG charts, no
JavaScript, no external resource: it renders offline).

Read only. Every number comes from the package's views and the runs table (queries named
report_* in sql/queries.sql), in one read-only REPEATABLE READ transaction, so all parts
describe the same moment:

- funnel: ad-hoc customers -> inactive (the activity rule passes) -> and free of blockers
  (no blocker name in blocked_by; the time rules activity and login are not blockers) ->
  eligible now (the login rule passes too). Each stage is a subset of the one before.
- purged in the last 7 and 30 days (today included) and per day, from daily_stats (the runs
  table: it counts also when the archive is off; restored stacks still count as purged).
- backlog trend, an ESTIMATE: no history of the backlog is kept. Now: the stacks eligible
  now. Behind (each of the last 29 days, at the end of the day): a range, at least the
  stacks eligible now that were already eligible that day (by eligible_at), at most that
  plus every customer purged after that day. Ahead (the next 30 days, forecast view): the
  backlog if no purge ran and nothing changed. Both sides assume the waiting stacks did not
  change (no new activity, blocker, or deletion by the application).
- what holds the rest: blocked_summary without its 'eligible now' row (a customer held for
  two reasons counts under both; percentages are of all ad-hoc customers).
- the last 5 runs.

CSV layout: one flat table with the header `section,key,metric,value`, one number (or
text) per line; `section` is meta, funnel, purged, purged_per_day, backlog, backlog_behind,
backlog_ahead, holds or runs; `key` is a stage, window (last_7_days), day (YYYY-MM-DD),
reason or run id; `metric` names the number. See README.md, "Report".
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import math
import textwrap
from typing import Any, Iterable, Sequence

import psycopg

from . import __version__
from .db import connect
from .mapping import Mapping
from .purge import check_deployed, fetch_runs

LAST_RUNS = 5
FUNNEL_STAGES = ("adhoc_customers", "inactive", "free_of_blockers", "eligible_now")
TIME_RULES = ("activity", "login")

BACKLOG_NOTE = (
    "An estimate: no history of the backlog is kept. Now: the stacks eligible now. Behind: for "
    "each past day, a range for the backlog at the end of that day: at least the stacks eligible "
    "now that were already eligible then (by eligible_at), at most that plus every customer "
    "purged after that day. Ahead: the backlog if no purge ran and nothing changed (the forecast "
    "view). Both assume the waiting stacks did not change (no new activity, blocker, or deletion "
    "by the application)."
)


# --- gathering ---------------------------------------------------------------------------

def build_report(dsn: str, mapping: Mapping, queries: dict[str, str]) -> dict[str, Any]:
    """Every number of the report, read in one read-only REPEATABLE READ transaction."""
    with connect(dsn) as conn:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        check_deployed(conn, mapping, queries)
        with conn.transaction():
            conn.execute(queries["report_no_jit"])
            as_of, time_zone, database = conn.execute(queries["report_context"]).fetchone()
            funnel_row = conn.execute(queries["report_funnel"]).fetchone()
            purged_rows = conn.execute(queries["report_purged"]).fetchall()
            per_day_rows = conn.execute(queries["report_purged_per_day"]).fetchall()
            behind_rows = conn.execute(queries["report_backlog_behind"]).fetchall()
            forecast_rows = conn.execute(queries["report_forecast"]).fetchall()
            hold_rows = conn.execute(queries["report_holds"]).fetchall()
            run_rows = fetch_runs(conn, queries, LAST_RUNS)
    return assemble(
        mapping=mapping, as_of=as_of, time_zone=time_zone, database=database, funnel_row=funnel_row,
        purged_rows=purged_rows, per_day_rows=per_day_rows, behind_rows=behind_rows,
        forecast_rows=forecast_rows, hold_rows=hold_rows, run_rows=run_rows,
    )


def assemble(*, mapping: Mapping, as_of, time_zone, database, funnel_row, purged_rows, per_day_rows,
             behind_rows, forecast_rows, hold_rows, run_rows) -> dict[str, Any]:
    """The report as plain data (dates stay date/datetime objects)."""
    funnel = {stage: int(n) for stage, n in zip(FUNNEL_STAGES, funnel_row)}
    now_backlog = funnel["eligible_now"]
    windows = {f"last_{days}_days": {"runs": runs, "failures": failures, "customers": customers,
                                     "locations": locations, "contacts": contacts}
               for days, runs, failures, customers, locations, contacts in purged_rows}
    per_day = [{"day": day, "runs": runs, "failures": failures, "customers": customers,
                "locations": locations, "contacts": contacts}
               for day, runs, failures, customers, locations, contacts in per_day_rows]
    behind = [{"day": day, "low": waiting, "high": waiting + purged_after, "waiting": waiting,
               "purged_after": purged_after}
              for day, waiting, purged_after in behind_rows]
    ahead = [{"day": day, "becoming_eligible": int(becoming), "backlog_if_no_purge": now_backlog + int(cumulative)}
             for day, becoming, cumulative in forecast_rows]
    purged_30 = windows.get("last_30_days", {}).get("customers", 0)
    becoming_30 = sum(row["becoming_eligible"] for row in ahead)
    backlog = {
        "now": now_backlog,
        "behind": behind,
        "ahead": ahead,
        "purged_per_day_last_30_days": round(purged_30 / 30, 2),
        "becoming_eligible_per_day_next_30_days": round(becoming_30 / 30, 2),
        "summary": _backlog_summary(now_backlog, behind, ahead),
        "note": BACKLOG_NOTE,
    }
    holds = [{"reason": reason, "kind": "time rule" if reason in TIME_RULES else "blocker",
              "customers": int(customers), "percent_of_adhoc": float(percent or 0)}
             for reason, customers, percent in hold_rows]
    runs = list(run_rows)
    policy = mapping.policy
    login_rule = bool(policy.login_rule and mapping.contact.last_login)
    return {
        "generated_at": as_of,
        "time_zone": time_zone,
        "database": database,
        "schema": mapping.schema,
        "version": __version__,
        "policy": {"inactivity": policy.inactivity,
                   "login_window": policy.login_window if login_rule else None,
                   "login_rule": login_rule},
        "funnel": funnel,
        "purged": windows,
        "purged_per_day": per_day,
        "backlog": backlog,
        "holds": holds,
        "last_runs": runs,
    }


def _backlog_summary(now: int, behind: list[dict], ahead: list[dict]) -> str:
    """One plain sentence or two on what the trend shows."""
    parts = []
    week_ago = behind[-7] if len(behind) >= 7 else None  # behind ends with yesterday
    if week_ago is not None:
        low, high = week_ago["low"], week_ago["high"]
        if high < now:
            parts.append(f"The backlog grew over the last 7 days (at most {high:,} then, {now:,} now).")
        elif low > now:
            parts.append(f"The backlog shrank over the last 7 days (at least {low:,} then, {now:,} now).")
        elif low == high == now:
            parts.append(f"7 days ago the backlog was {now:,}, as it is now.")
        else:
            parts.append(f"7 days ago the backlog was between {low:,} and {high:,}; it is {now:,} now.")
    if ahead:
        last = ahead[-1]
        added = last["backlog_if_no_purge"] - now
        if added:
            parts.append(f"{added:,} more become eligible in the next {len(ahead)} days: without purges the "
                         f"backlog would reach {last['backlog_if_no_purge']:,} by {last['day']:%Y-%m-%d}.")
        else:
            parts.append(f"No stack becomes eligible in the next {len(ahead)} days if nothing changes.")
    return " ".join(parts)


# --- text --------------------------------------------------------------------------------

def _stage_labels(report: dict) -> dict[str, str]:
    policy = report["policy"]
    return {
        "adhoc_customers": "ad-hoc customers",
        "inactive": f"inactive for {policy['inactivity']}",
        "free_of_blockers": "... and free of blockers",
        "eligible_now": "eligible now" + (f" (no login in {policy['login_window']})" if policy["login_rule"] else ""),
    }


def _drop_labels(report: dict) -> dict[str, str]:
    """What removes customers at each stage (the stage they are missing from)."""
    return {
        "inactive": "held by recent activity",
        "free_of_blockers": "held by a blocker",
        "eligible_now": "held by a recent login" if report["policy"]["login_rule"] else "",
    }


def _day(value: dt.date) -> str:
    return f"{value:%Y-%m-%d}"


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "-" if value is None else str(value)


def format_text(report: dict) -> str:
    out: list[str] = []
    add = out.append
    add(f"adhoc-gc report: database {report['database']}, schema {report['schema']}, "
        f"{report['generated_at']:%Y-%m-%d %H:%M} ({report['time_zone']})")
    add("")
    funnel = report["funnel"]
    labels, drops = _stage_labels(report), _drop_labels(report)
    add("Funnel (each stage is a subset of the one before)")
    previous = None
    for stage in FUNNEL_STAGES:
        n = funnel[stage]
        line = f"  {labels[stage]:<36} {n:>9,}"
        if previous is not None and previous - n:
            line += f"   -{previous - n:,} {drops[stage]}"
        add(line)
        previous = n
    add("")
    add(f"Purged (from the runs table)     {'customers':>9}  {'locations':>9}  {'contacts':>9}  {'runs':>5}")
    for window, label in (("last_7_days", "last 7 days"), ("last_30_days", "last 30 days")):
        w = report["purged"][window]
        add(f"  {label:<30} {w['customers']:>9,}  {w['locations']:>9,}  {w['contacts']:>9,}  {w['runs']:>5,}"
            + (f"  ({w['failures']} failed)" if w["failures"] else ""))
    add("")
    backlog = report["backlog"]
    add("Backlog trend (an ESTIMATE: no history of the backlog is kept)")
    add(f"  eligible now: {backlog['now']:,}")
    for days_ago in (29, 14, 7, 1):
        row = backlog["behind"][-days_ago] if len(backlog["behind"]) >= days_ago else None
        if row:
            span = f"{row['low']:,}" if row["low"] == row["high"] else f"between {row['low']:,} and {row['high']:,}"
            ago = "yesterday" if days_ago == 1 else f"{days_ago} days ago"
            add(f"  end of {_day(row['day'])} {'(' + ago + ')':<15} {span}")
    for days_ahead in (7, 14, 29):
        if len(backlog["ahead"]) > days_ahead:
            row = backlog["ahead"][days_ahead]
            add(f"  end of {_day(row['day'])} {'(in ' + str(days_ahead) + ' days)':<15} "
                f"{row['backlog_if_no_purge']:,} if no purge runs")
    add(f"  pace: {backlog['purged_per_day_last_30_days']:g} purged per day over the last 30 days; "
        f"{backlog['becoming_eligible_per_day_next_30_days']:g} per day become eligible over the next 30")
    add(textwrap.fill(backlog["summary"], width=100, initial_indent="  ", subsequent_indent="  "))
    add(textwrap.fill(f"({backlog['note']})", width=100, initial_indent="  ", subsequent_indent="   "))
    add("")
    add("What holds the rest (a customer held for two reasons counts under both)")
    if not report["holds"]:
        add("  nothing")
    for hold in report["holds"]:
        add(f"  {hold['reason']:<30} {hold['customers']:>9,}  {hold['percent_of_adhoc']:>5.1f}% of ad-hoc  "
            f"({hold['kind']})")
    add("")
    add(f"Last {LAST_RUNS} runs")
    if not report["last_runs"]:
        add("  no runs yet")
    else:
        add(f"  {'id':>5}  {'started':<19}  {'status':<9}  {'trigger':<8}  {'customers':>9}  {'locations':>9}  "
            f"{'contacts':>8}  error")
        for r in report["last_runs"]:
            add(f"  {r['id']:>5}  {_when(r['started_at']):<19}  {r['status']:<9}  {r['trigger']:<8}  "
                f"{r['customers_deleted']:>9,}  {r['locations_deleted']:>9,}  {r['contacts_deleted']:>8,}  "
                f"{r['error'] or ''}".rstrip())
    return "\n".join(out)


# --- CSV ---------------------------------------------------------------------------------

CSV_HEADER = ("section", "key", "metric", "value")


def csv_rows(report: dict) -> Iterable[tuple[str, str, str, Any]]:
    for name in ("generated_at", "time_zone", "database", "schema", "version"):
        yield "meta", name, "value", report[name]
    for stage in FUNNEL_STAGES:
        yield "funnel", stage, "customers", report["funnel"][stage]
    for window, numbers in report["purged"].items():
        for metric in ("customers", "locations", "contacts", "runs", "failures"):
            yield "purged", window, metric, numbers[metric]
    for row in report["purged_per_day"]:
        for metric in ("customers", "locations", "contacts", "runs", "failures"):
            yield "purged_per_day", _day(row["day"]), metric, row[metric]
    backlog = report["backlog"]
    yield "backlog", "now", "eligible", backlog["now"]
    yield "backlog", "last_30_days", "purged_per_day", backlog["purged_per_day_last_30_days"]
    yield "backlog", "next_30_days", "becoming_eligible_per_day", backlog["becoming_eligible_per_day_next_30_days"]
    for row in backlog["behind"]:
        yield "backlog_behind", _day(row["day"]), "low", row["low"]
        yield "backlog_behind", _day(row["day"]), "high", row["high"]
    for row in backlog["ahead"]:
        yield "backlog_ahead", _day(row["day"]), "becoming_eligible", row["becoming_eligible"]
        yield "backlog_ahead", _day(row["day"]), "backlog_if_no_purge", row["backlog_if_no_purge"]
    for hold in report["holds"]:
        yield "holds", hold["reason"], "customers", hold["customers"]
        yield "holds", hold["reason"], "percent_of_adhoc", hold["percent_of_adhoc"]
    for run in report["last_runs"]:
        for metric in ("started_at", "finished_at", "status", "trigger", "customers_deleted", "locations_deleted",
                       "contacts_deleted", "error"):
            yield "runs", str(run["id"]), metric, run[metric]


def format_csv(report: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for section, key, metric, value in csv_rows(report):
        if isinstance(value, (dt.datetime, dt.date)):
            value = value.isoformat()
        writer.writerow((section, key, metric, "" if value is None else value))
    return buffer.getvalue()


# --- HTML --------------------------------------------------------------------------------

COLORS = {
    "ink": "#1f2933", "muted": "#52606d", "grid": "#e4e7eb", "axis": "#9aa5b1",
    "bar": "#2f6fb3", "eligible": "#2f855a", "time": "#c27c0e", "blocker": "#b83280",
    "dropped": "#e4e7eb", "fail": "#c53030", "band": "#2f6fb3", "ahead": "#c27c0e",
}

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f5f8; color: #1f2933;
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", "DejaVu Sans", sans-serif; }
main { max-width: 1160px; margin: 0 auto; padding: 28px 28px 40px; }
header h1 { margin: 0 0 4px; font-size: 26px; letter-spacing: -0.01em; }
header p { margin: 0; color: #52606d; }
h2 { margin: 0 0 4px; font-size: 18px; }
.sub { margin: 0 0 14px; color: #52606d; font-size: 14px; }
.tiles { display: grid; grid-template-columns: repeat(4, 1fr); gap: 16px; margin-top: 22px; }
.tile { background: #fff; border-radius: 10px; padding: 14px 18px; border: 1px solid #e4e7eb; }
.tile .label { color: #52606d; font-size: 13px; text-transform: uppercase; letter-spacing: 0.04em; }
.tile .value { font-size: 30px; font-weight: 650; margin-top: 2px; }
.tile .detail { color: #52606d; font-size: 13px; }
.card { background: #fff; border-radius: 10px; padding: 20px 24px; margin-top: 20px; border: 1px solid #e4e7eb; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; }
.pair .card { margin-top: 20px; }
figure { margin: 0; }
svg { display: block; width: 100%; height: auto; }
svg text { font-family: inherit; }
.note { background: #fff8e6; border-left: 4px solid #c27c0e; padding: 10px 14px; margin: 12px 0 0; font-size: 14px; }
.summary { font-size: 15px; margin: 10px 0 0; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 8px 0 0; padding: 0; list-style: none;
          font-size: 13px; color: #52606d; }
.legend span { display: inline-block; width: 14px; height: 10px; margin-right: 6px; border-radius: 2px;
               vertical-align: baseline; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
caption { text-align: left; }
th, td { padding: 7px 10px; border-bottom: 1px solid #e4e7eb; text-align: left; vertical-align: top; }
th { color: #52606d; font-weight: 600; font-size: 13px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.status-succeeded { background: #e3f4ea; color: #22633f; }
.status-failed, .status-abandoned { background: #fde8e8; color: #9b1c1c; }
.status-skipped, .status-refused { background: #fff3d6; color: #7a4d05; }
.status-running { background: #e1ecf8; color: #1d4f86; }
.error { color: #9b1c1c; max-width: 360px; overflow-wrap: anywhere; }
details { margin-top: 10px; font-size: 14px; }
summary { cursor: pointer; color: #1d4f86; }
details table { margin-top: 8px; }
.empty { color: #52606d; font-style: italic; }
footer { margin-top: 24px; color: #52606d; font-size: 13px; }
@media (max-width: 860px) { .tiles { grid-template-columns: 1fr 1fr; } .pair { grid-template-columns: 1fr; } }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _n(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _nice_ticks(maximum: float, count: int = 5) -> list[float]:
    """0 and round steps (1, 2, 5 x 10^k) up to at least maximum."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(step, 1)
    top = math.ceil(maximum / step) * step
    return [i * step for i in range(int(round(top / step)) + 1)]


def _svg_open(width: int, height: int, ident: str, title: str, desc: str) -> str:
    return (f'<svg viewBox="0 0 {width} {height}" role="img" aria-labelledby="{ident}-title {ident}-desc">'
            f'<title id="{ident}-title">{_e(title)}</title><desc id="{ident}-desc">{_e(desc)}</desc>')


def _text(x: float, y: float, content: str, *, size: int = 12, anchor: str = "start", fill: str | None = None,
          weight: str | None = None) -> str:
    attrs = f'x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill or COLORS["muted"]}"'
    if weight:
        attrs += f' font-weight="{weight}"'
    return f"<text {attrs}>{_e(content)}</text>"


def _y_axis(ticks: list[float], y_of, left: float, right: float, label_x: float) -> list[str]:
    parts = []
    for tick in ticks:
        y = y_of(tick)
        parts.append(f'<line x1="{left:.1f}" x2="{right:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{COLORS["grid"]}"/>')
        parts.append(_text(label_x, y + 4, _n(tick), size=11, anchor="end"))
    return parts


def _short_day(day: dt.date) -> str:
    return f"{day:%b} {day.day}"


def svg_purged_per_day(per_day: list[dict]) -> str:
    width, height = 1100, 270
    left, right, top, bottom = 56, 16, 16, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((row["customers"] for row in per_day), default=0)
    total = sum(row["customers"] for row in per_day)
    ticks = _nice_ticks(peak)
    top_value = ticks[-1]

    def y_of(v: float) -> float:
        return top + plot_h - plot_h * v / top_value

    first = per_day[0]["day"] if per_day else None
    last = per_day[-1]["day"] if per_day else None
    desc = (f"Bar chart: customers purged per day from {first} to {last}; {total:,} in all, at most {peak:,} on one "
            "day. Days with a failed run are marked below the axis.")
    parts = [_svg_open(width, height, "purged", "Customers purged per day, last 30 days", desc)]
    parts += _y_axis(ticks, y_of, left, width - right, left - 8)
    slot = plot_w / max(len(per_day), 1)
    for i, row in enumerate(per_day):
        x = left + i * slot
        bar_h = plot_h * row["customers"] / top_value
        tip = (f"{row['day']}: {row['customers']:,} customers, {row['locations']:,} locations, "
               f"{row['contacts']:,} contacts ({row['runs']} run{'s' if row['runs'] != 1 else ''}"
               f"{', ' + str(row['failures']) + ' failed' if row['failures'] else ''})")
        parts.append(f'<g><title>{_e(tip)}</title>')
        parts.append(f'<rect x="{x + slot * 0.15:.1f}" y="{top:.1f}" width="{slot * 0.7:.1f}" height="{plot_h:.1f}" '
                     'fill="transparent"/>')
        if row["customers"]:
            parts.append(f'<rect x="{x + slot * 0.15:.1f}" y="{y_of(row["customers"]):.1f}" width="{slot * 0.7:.1f}" '
                         f'height="{bar_h:.1f}" rx="2" fill="{COLORS["bar"]}"/>')
            if slot >= 28 or row["customers"] == peak:
                parts.append(_text(x + slot / 2, y_of(row["customers"]) - 5, _n(row["customers"]), size=11,
                                   anchor="middle", fill=COLORS["ink"]))
        if row["failures"]:
            parts.append(f'<circle cx="{x + slot / 2:.1f}" cy="{top + plot_h + 9:.1f}" r="4" fill="{COLORS["fail"]}"/>')
        parts.append("</g>")
        if i % 7 == (len(per_day) - 1) % 7:
            parts.append(_text(x + slot / 2, height - 10, _short_day(row["day"]), size=11, anchor="middle"))
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h:.1f}" y2="{top + plot_h:.1f}" '
                 f'stroke="{COLORS["axis"]}"/>')
    if not total:
        parts.append(_text(left + plot_w / 2, top + plot_h / 2, "No customers purged in the last 30 days", size=15,
                           anchor="middle", fill=COLORS["muted"]))
    parts.append("</svg>")
    return "".join(parts)


def svg_backlog(backlog: dict, today: dt.date) -> str:
    width, height = 1100, 300
    left, right, top, bottom = 56, 16, 22, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    behind, ahead, now = backlog["behind"], backlog["ahead"], backlog["now"]
    future = [row for row in ahead if row["day"] > today]
    span_before = max(len(behind), 1)
    span_after = max(len(future), 1)
    peak = max([now] + [row["high"] for row in behind] + [row["backlog_if_no_purge"] for row in future])
    ticks = _nice_ticks(peak)
    top_value = ticks[-1]

    def x_of(day: dt.date) -> float:
        offset = (day - today).days
        return left + plot_w * (offset + span_before) / (span_before + span_after)

    def y_of(v: float) -> float:
        return top + plot_h - plot_h * v / top_value

    first_day = behind[0]["day"] if behind else today
    last_day = future[-1]["day"] if future else today
    last_projection = future[-1]["backlog_if_no_purge"] if future else now
    desc = (f"Line chart of the eligible backlog from {first_day} to {last_day}. Before today a shaded range "
            f"(an estimate: no history is kept); {now:,} eligible now; a dashed line for the next days if no "
            f"purge runs, reaching {last_projection:,}.")
    parts = [_svg_open(width, height, "backlog", "Eligible backlog: estimated past, now, and ahead if no purge runs",
                       desc)]
    parts += _y_axis(ticks, y_of, left, width - right, left - 8)
    x_now = x_of(today)
    if behind:
        upper = [(x_of(r["day"]), y_of(r["high"])) for r in behind] + [(x_now, y_of(now))]
        lower = [(x_of(r["day"]), y_of(r["low"])) for r in behind] + [(x_now, y_of(now))]
        polygon = " ".join(f"{x:.1f},{y:.1f}" for x, y in upper + lower[::-1])
        parts.append(f'<polygon points="{polygon}" fill="{COLORS["band"]}" fill-opacity="0.18" stroke="none"/>')
        for points, dash in ((upper, ' stroke-dasharray="2 3"'), (lower, "")):
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{COLORS["band"]}" stroke-width="2"{dash}/>')
        # Name the two edges of the range where they are far enough apart to read.
        label_at = min(2, len(behind) - 1)
        (ux, uy), (_, ly) = upper[label_at], lower[label_at]
        if ly - uy >= 30:
            parts.append(_text(ux + 4, uy - 7, "at most", size=11, fill=COLORS["band"]))
            parts.append(_text(ux + 4, ly - 7, "at least", size=11, fill=COLORS["band"]))
        for row in behind:
            span = f"{row['low']:,}" if row["low"] == row["high"] else f"{row['low']:,} to {row['high']:,}"
            tip = f"end of {row['day']}: {span} (estimate)"
            slot = plot_w / (span_before + span_after)
            parts.append(f'<g><title>{_e(tip)}</title>'
                         f'<rect x="{x_of(row["day"]) - slot / 2:.1f}" y="{top}" width="{slot:.1f}" '
                         f'height="{plot_h}" fill="transparent"/></g>')
    if future:
        points = [(x_now, y_of(now))] + [(x_of(r["day"]), y_of(r["backlog_if_no_purge"])) for r in future]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{COLORS["ahead"]}" stroke-width="2.5" '
                     'stroke-dasharray="7 5"/>')
        for row in future:
            tip = (f"end of {row['day']}: {row['backlog_if_no_purge']:,} if no purge runs "
                   f"(+{row['becoming_eligible']:,} that day)")
            parts.append(f'<g><title>{_e(tip)}</title>'
                         f'<circle cx="{x_of(row["day"]):.1f}" cy="{y_of(row["backlog_if_no_purge"]):.1f}" r="6" '
                         'fill="transparent"/></g>')
        end_x, end_y = points[-1]
        parts.append(_text(end_x - 4, end_y - 10, f"{last_projection:,} if no purge runs", size=12, anchor="end",
                           fill=COLORS["ahead"], weight="600"))
    parts.append(f'<line x1="{x_now:.1f}" x2="{x_now:.1f}" y1="{top - 6}" y2="{top + plot_h:.1f}" '
                 f'stroke="{COLORS["ink"]}" stroke-width="1" stroke-dasharray="3 3"/>')
    parts.append(f'<g><title>{_e(f"now: {now:,} eligible")}</title>'
                 f'<circle cx="{x_now:.1f}" cy="{y_of(now):.1f}" r="5.5" fill="{COLORS["ink"]}" stroke="#fff" '
                 'stroke-width="2"/></g>')
    label_y = y_of(now) - 12 if y_of(now) - 12 > top + 10 else y_of(now) + 22
    parts.append(_text(x_now + 8, label_y, f"now: {now:,}", size=13, fill=COLORS["ink"], weight="600"))
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h:.1f}" y2="{top + plot_h:.1f}" '
                 f'stroke="{COLORS["axis"]}"/>')
    for offset in range(-span_before, span_after + 1):
        if offset % 7 == 0:
            day = today + dt.timedelta(days=offset)
            label = "today" if offset == 0 else _short_day(day)
            parts.append(_text(x_of(day), height - 10, label, size=11, anchor="middle",
                               fill=COLORS["ink"] if offset == 0 else None, weight="600" if offset == 0 else None))
    parts.append("</svg>")
    return "".join(parts)


def svg_funnel(report: dict) -> str:
    """One row per stage: its name and count above a bar; the bar's grey tail is what the
    stage dropped from the one before, labelled with why."""
    funnel = report["funnel"]
    labels, drops = _stage_labels(report), _drop_labels(report)
    width, bar_w = 540, 540
    label_h, bar_h, gap, top = 18, 24, 16, 2
    row = label_h + bar_h + gap
    height = top + len(FUNNEL_STAGES) * row - gap + 4
    total = max(funnel["adhoc_customers"], 1)
    desc = "Funnel: " + "; ".join(f"{labels[s]} {funnel[s]:,}" for s in FUNNEL_STAGES) + "."
    parts = [_svg_open(width, height, "funnel", "Funnel from all ad-hoc customers to eligible now", desc)]
    previous = None
    y = top
    for stage in FUNNEL_STAGES:
        n = funnel[stage]
        w = bar_w * n / total
        share = f" · {100 * n / total:.0f}%" if funnel["adhoc_customers"] else ""
        parts.append(_text(0, y + 13, labels[stage], size=13, fill=COLORS["ink"], weight="600"))
        parts.append(_text(width, y + 13, f"{n:,}{share}", size=13, anchor="end", fill=COLORS["ink"]))
        bar_y = y + label_h
        color = COLORS["eligible"] if stage == "eligible_now" else COLORS["bar"]
        if n:
            parts.append(f'<rect x="0" y="{bar_y}" width="{max(w, 2):.1f}" height="{bar_h}" rx="3" fill="{color}"/>')
        if previous is not None and previous > n:
            ghost = bar_w * previous / total - w
            parts.append(f'<rect x="{w:.1f}" y="{bar_y}" width="{ghost:.1f}" height="{bar_h}" rx="3" '
                         f'fill="{COLORS["dropped"]}"/>')
            note = f"−{previous - n:,} {drops[stage]}"
            note_w = len(note) * 6.6 + 16  # about, at 12px
            baseline = bar_y + bar_h / 2 + 4.5
            if ghost >= note_w:  # in the grey tail
                parts.append(_text(w + 8, baseline, note, size=12, fill=COLORS["muted"]))
            elif w + ghost + note_w <= width:  # after it
                parts.append(_text(w + ghost + 8, baseline, note, size=12, fill=COLORS["muted"]))
            else:  # in the (then wide) bar itself
                parts.append(_text(w - 8, baseline, note, size=12, anchor="end", fill="#fff"))
        y += row
        previous = n
    parts.append("</svg>")
    return "".join(parts)


def svg_holds(holds: list[dict]) -> str:
    width = 540
    row_h, gap, top = 26, 12, 4
    label_w = 160
    value_w = 110
    bar_area = width - label_w - value_w
    height = top + max(len(holds), 1) * (row_h + gap) + 4
    peak = max((h["customers"] for h in holds), default=0) or 1
    desc = ("Horizontal bar chart of what holds the ad-hoc customers that are not eligible: "
            + ("; ".join(f"{h['reason']} {h['customers']:,} ({h['percent_of_adhoc']:.1f}% of ad-hoc)" for h in holds)
               or "nothing holds any") + ".")
    parts = [_svg_open(width, height, "holds", "What holds the ad-hoc customers that are not eligible", desc)]
    if not holds:
        parts.append(_text(width / 2, height / 2 + 5, "Nothing holds any ad-hoc customer", size=14, anchor="middle"))
    y = top
    for hold in holds:
        w = bar_area * hold["customers"] / peak
        color = COLORS["time"] if hold["kind"] == "time rule" else COLORS["blocker"]
        parts.append(f'<g><title>{_e(hold["reason"])}: {hold["customers"]:,} customers, '
                     f'{hold["percent_of_adhoc"]:.1f}% of ad-hoc ({_e(hold["kind"])})</title>')
        parts.append(_text(label_w - 10, y + row_h / 2 + 5, _clip(hold["reason"], 22), size=13, anchor="end",
                           fill=COLORS["ink"]))
        parts.append(f'<rect x="{label_w}" y="{y}" width="{max(w, 2):.1f}" height="{row_h}" rx="3" fill="{color}"/>')
        parts.append(_text(label_w + max(w, 2) + 8, y + row_h / 2 + 5,
                           f"{hold['customers']:,} · {hold['percent_of_adhoc']:.1f}%", size=13, fill=COLORS["ink"]))
        parts.append("</g>")
        y += row_h + gap
    parts.append("</svg>")
    return "".join(parts)


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool], caption: str) -> str:
    head = "".join(f'<th scope="col"{" class=num" if num else ""}>{_e(h)}</th>' for h, num in zip(headers, numeric))
    body = "".join(
        "<tr>" + "".join(f'<td{" class=num" if num else ""}>{_e(_n(v) if isinstance(v, (int, float)) else v)}</td>'
                         for v, num in zip(row, numeric)) + "</tr>"
        for row in rows)
    return (f"<table><caption class=sub>{_e(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _numbers(summary: str, table: str) -> str:
    return f"<details><summary>{_e(summary)}</summary>{table}</details>"


def _duration(run: dict) -> str:
    if run["finished_at"] is None or run["started_at"] is None:
        return "-"
    seconds = (run["finished_at"] - run["started_at"]).total_seconds()
    if seconds < 0.1:
        return "< 0.1 s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_html(report: dict) -> str:
    funnel, purged, backlog = report["funnel"], report["purged"], report["backlog"]
    generated = f"{report['generated_at']:%Y-%m-%d %H:%M} ({report['time_zone']})"
    today = report["generated_at"].date()
    labels = _stage_labels(report)
    week, month = purged["last_7_days"], purged["last_30_days"]

    def tile(label: str, value: int, detail: str) -> str:
        return (f'<div class="tile"><div class="label">{_e(label)}</div><div class="value">{value:,}</div>'
                f'<div class="detail">{_e(detail)}</div></div>')

    held = funnel["adhoc_customers"] - funnel["eligible_now"]
    tiles = "".join([
        tile("Eligible now", funnel["eligible_now"], "the backlog: a purge would delete these"),
        tile("Purged, last 7 days", week["customers"],
             f"{week['locations']:,} locations, {week['contacts']:,} contacts"),
        tile("Purged, last 30 days", month["customers"],
             f"{month['locations']:,} locations, {month['contacts']:,} contacts"),
        tile("Ad-hoc customers", funnel["adhoc_customers"], f"{held:,} held (not eligible now)"),
    ])

    per_day_table = _table(
        ["day", "customers", "locations", "contacts", "runs", "failed runs"],
        [(_day(r["day"]), r["customers"], r["locations"], r["contacts"], r["runs"], r["failures"])
         for r in report["purged_per_day"]],
        [False, True, True, True, True, True], "Purged per day (from the runs table)")
    backlog_table = _table(
        ["end of day", "at least", "at most", "if no purge runs"],
        [(_day(r["day"]), r["low"], r["high"], "") for r in backlog["behind"]]
        + [("now", backlog["now"], backlog["now"], backlog["now"])]
        + [(_day(r["day"]), "", "", r["backlog_if_no_purge"]) for r in backlog["ahead"] if r["day"] > today],
        [False, True, True, True], "Eligible backlog: estimated range behind, projection ahead")
    funnel_table = _table(["stage", "customers"], [(labels[s], funnel[s]) for s in FUNNEL_STAGES], [False, True],
                          "Funnel")
    holds_table = _table(["reason", "kind", "customers", "% of ad-hoc"],
                         [(h["reason"], h["kind"], h["customers"], h["percent_of_adhoc"]) for h in report["holds"]],
                         [False, False, True, True], "What holds the rest")

    if report["last_runs"]:
        rows = []
        for r in report["last_runs"]:
            status = _e(r["status"])
            rows.append(
                f"<tr><td class=num>{r['id']}</td><td>{_e(_when(r['started_at']))}</td><td>{_e(_duration(r))}</td>"
                f'<td><span class="status status-{status}">{status}</span></td><td>{_e(r["trigger"])}</td>'
                f"<td class=num>{r['customers_deleted']:,}</td><td class=num>{r['locations_deleted']:,}</td>"
                f"<td class=num>{r['contacts_deleted']:,}</td>"
                f'<td class="error">{_e(r["error"] or "")}</td></tr>')
        runs_html = ("<table><caption class=sub>Newest first; deleted counts per run</caption><thead><tr>"
                     "<th scope=col class=num>run</th><th scope=col>started</th><th scope=col>took</th>"
                     "<th scope=col>status</th><th scope=col>trigger</th><th scope=col class=num>customers</th>"
                     "<th scope=col class=num>locations</th><th scope=col class=num>contacts</th>"
                     "<th scope=col>error</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    else:
        runs_html = '<p class="empty">No runs yet.</p>'

    legend_backlog = (
        '<ul class="legend">'
        f'<li><span style="background:{COLORS["band"]};opacity:.35"></span>'
        "estimated range behind (at least … at most)</li>"
        f'<li><span style="background:{COLORS["ink"]};border-radius:50%;width:10px"></span>eligible now</li>'
        f'<li><span style="background:{COLORS["ahead"]};height:3px"></span>ahead if no purge runs (forecast)</li>'
        "</ul>")
    legend_purged = (
        '<ul class="legend">'
        f'<li><span style="background:{COLORS["bar"]}"></span>customers purged (with their locations and contacts)</li>'
        f'<li><span style="background:{COLORS["fail"]};border-radius:50%;width:10px"></span>a run failed that day</li>'
        "</ul>")
    legend_holds = (
        '<ul class="legend">'
        f'<li><span style="background:{COLORS["time"]}"></span>time rule: passes on its own with time</li>'
        f'<li><span style="background:{COLORS["blocker"]}"></span>blocker: holds until the row is gone</li>'
        "</ul>")

    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>adhoc-gc report: {_e(report['database'])}, {_e(generated)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<header>
<h1>Ad-hoc customer clean-up</h1>
<p>Database <strong>{_e(report['database'])}</strong>, schema <strong>{_e(report['schema'])}</strong> ·
taken {_e(generated)} · stacks become eligible after {_e(report['policy']['inactivity'])} without activity</p>
</header>

<section class="tiles" aria-label="Key numbers">{tiles}</section>

<section class="card" aria-labelledby="h-backlog">
<h2 id="h-backlog">Backlog trend</h2>
<p class="sub">Stacks eligible for deletion: an estimated range over the last {len(backlog['behind'])} days,
now, and the next {len([r for r in backlog['ahead'] if r['day'] > today])} days if no purge runs.</p>
<figure>{svg_backlog(backlog, today)}
<figcaption>{legend_backlog}</figcaption></figure>
<p class="summary">{_e(backlog['summary'])} Pace: {backlog['purged_per_day_last_30_days']:g} purged per day over the
last 30 days; {backlog['becoming_eligible_per_day_next_30_days']:g} per day become eligible over the next 30.</p>
<p class="note"><strong>What this trend means.</strong> {_e(backlog['note'])}</p>
{_numbers("Show the numbers", backlog_table)}
</section>

<section class="card" aria-labelledby="h-purged">
<h2 id="h-purged">Purged per day</h2>
<p class="sub">Customers deleted by purge runs each day over the last 30 days (from the runs table; counts also
when the archive is off). Last 7 days: {week['customers']:,} customers in {week['runs']:,} runs; last 30 days:
{month['customers']:,} in {month['runs']:,} runs{f", {month['failures']:,} failed" if month['failures'] else ""}.</p>
<figure>{svg_purged_per_day(report['purged_per_day'])}
<figcaption>{legend_purged}</figcaption></figure>
{_numbers("Show the numbers", per_day_table)}
</section>

<div class="pair">
<section class="card" aria-labelledby="h-funnel">
<h2 id="h-funnel">Funnel</h2>
<p class="sub">From all ad-hoc customers to those a purge would delete now; each stage keeps only those that
passed the one before.</p>
<figure>{svg_funnel(report)}</figure>
{_numbers("Show the numbers", funnel_table)}
</section>

<section class="card" aria-labelledby="h-holds">
<h2 id="h-holds">What holds the rest</h2>
<p class="sub">Ad-hoc customers not eligible now, by reason. A customer held for two reasons counts under both;
percentages are of all {funnel['adhoc_customers']:,} ad-hoc customers.</p>
<figure>{svg_holds(report['holds'])}
<figcaption>{legend_holds}</figcaption></figure>
{_numbers("Show the numbers", holds_table)}
</section>
</div>

<section class="card" aria-labelledby="h-runs">
<h2 id="h-runs">Last {LAST_RUNS} runs</h2>
{runs_html}
</section>

<footer>adhoc-gc {_e(report['version'])} · <code>adhoc-gc report --html</code> · read only; one consistent
snapshot of the database · dates in {_e(report['time_zone'])}</footer>
</main>
</body>
</html>
"""
