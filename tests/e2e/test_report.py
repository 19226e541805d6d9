"""`adhoc-gc report` end to end: a known data set on the reference schema, the CLI in a
subprocess, every number checked exactly in the text, JSON and CSV outputs, and the HTML
page opened in a real headless Chromium (console errors, offline rendering, a screenshot).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import shutil
import struct
import subprocess
import uuid
import zlib

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from helpers import add_stack, deploy_mapping, mapping_from_toml, purge, run_cli

UNREACHABLE_DSN = "host=127.0.0.1 port=1 connect_timeout=2"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]




def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess:
    result = run_cli(*args)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == code, (
        f"adhoc-gc {' '.join(args)}: exit {result.returncode}, expected {code}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}")
    if code == 0:
        assert result.stderr == ""
    else:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("adhoc-gc: error: "), result.stderr
    return result


def add_run(conn: psycopg.Connection, days_ago: int, status: str, customers: int, locations: int, contacts: int,
            error: str | None = None) -> None:
    conn.execute(
        "INSERT INTO adhoc_gc.runs (started_at, finished_at, status, trigger, batch_size, batches, "
        "customers_deleted, locations_deleted, contacts_deleted, error) "
        "VALUES (now() - %s * interval '1 day', now() - %s * interval '1 day' + interval '42 seconds', "
        "%s, 'pg_cron', 500, 1, %s, %s, %s, %s)",
        (days_ago, days_ago, status, customers, locations, contacts, error))


@pytest.fixture
def report_db(ref_db, ref_conn):
    """The known data set.

    Runs before today's purge: 45 days ago (outside both windows), 20 days ago (30-day window),
    6 days ago (both windows), a failed one 3 days ago. Then eleven ad-hoc stacks (and two
    manual ones), and a purge of one batch of 2 deleting the first two eligible stacks
    (2 customers, 3 locations, 5 contacts). Left: 9 ad-hoc customers,
      eligible:  C (eligible since 386 days), D (since 16 days), E (since 46 days);
      activity:  act2 (2 days old; eligible in 12 days), act10 (10 days old; in 4 days);
      login:     a contact logged in a month ago (eligible in about 5 months);
      blockers:  a location with a case, a location with a device;
      both:      2 days old and a case (activity and location_case).
    """
    add_run(ref_conn, 45, "succeeded", 100, 120, 150)
    add_run(ref_conn, 20, "succeeded", 10, 12, 15)
    add_run(ref_conn, 6, "succeeded", 4, 4, 8)
    add_run(ref_conn, 3, "failed", 0, 0, 0, error="canceling statement due to lock timeout")
    add_stack(ref_conn, age="30 days", locations=2, contacts_per_location=2)  # A: purged
    add_stack(ref_conn, age="90 days")  # B: purged
    add_stack(ref_conn, age="400 days", locations=0)  # C
    add_stack(ref_conn, age="30 days")  # D
    add_stack(ref_conn, age="60 days")  # E
    add_stack(ref_conn, age="2 days")
    add_stack(ref_conn, age="10 days")
    add_stack(ref_conn, age="30 days", last_login_ago="1 month")
    with_case = add_stack(ref_conn, age="30 days")
    ref_conn.execute("INSERT INTO cases (location_id, subject) VALUES (%s, 'open')", (with_case.locations[0],))
    with_device = add_stack(ref_conn, age="30 days")
    ref_conn.execute("INSERT INTO devices (location_id, serial) VALUES (%s, 'SN-1')", (with_device.locations[0],))
    recent_with_case = add_stack(ref_conn, age="2 days")
    ref_conn.execute("INSERT INTO cases (location_id, subject) VALUES (%s, 'new')", (recent_with_case.locations[0],))
    add_stack(ref_conn, adhoc=False, age="400 days")
    add_stack(ref_conn, adhoc=False)
    progress = purge(ref_db, batch_size=2, max_batches=1)
    assert (progress.customers, progress.locations, progress.contacts) == (2, 3, 5)
    return ref_db


FUNNEL = {"adhoc_customers": 9, "inactive": 6, "free_of_blockers": 4, "eligible_now": 3}
PURGED = {
    "last_7_days": {"runs": 3, "failures": 1, "customers": 6, "locations": 7, "contacts": 13},
    "last_30_days": {"runs": 4, "failures": 1, "customers": 16, "locations": 19, "contacts": 28},
}
HOLDS = [("activity", 3, 33.3), ("location_case", 2, 22.2), ("location_device", 1, 11.1), ("login", 1, 11.1)]


def expected_behind(days_ago: int) -> tuple[int, int]:
    """(at least, at most) at the end of the day `days_ago` days before today."""
    waiting = 3 if days_ago <= 16 else 2  # D became eligible 16 days ago; C and E long before
    purged_after = 2 + (4 if days_ago >= 7 else 0) + (10 if days_ago >= 21 else 0)
    return waiting, waiting + purged_after


def expected_ahead(days_ahead: int) -> int:
    return 3 + (days_ahead >= 4) + (days_ahead >= 12)


def today(dsn: str) -> dt.date:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT now()::date").fetchone()[0]


# --- numbers ---------------------------------------------------------------------------------

def test_json_numbers(report_db):
    report = json.loads(cli("report", "--dsn", report_db, "--json").stdout)
    day0 = today(report_db)

    assert report["funnel"] == FUNNEL
    assert report["purged"] == PURGED
    assert [(h["reason"], h["customers"], h["percent_of_adhoc"]) for h in report["holds"]] == HOLDS
    assert [h["kind"] for h in report["holds"]] == ["time rule", "blocker", "blocker", "time rule"]

    per_day = report["purged_per_day"]
    assert len(per_day) == 30 and per_day[-1]["day"] == day0.isoformat()
    assert {row["day"]: row["customers"] for row in per_day if row["customers"]} == {
        (day0 - dt.timedelta(days=20)).isoformat(): 10,
        (day0 - dt.timedelta(days=6)).isoformat(): 4,
        day0.isoformat(): 2,
    }
    assert [row["day"] for row in per_day if row["failures"]] == [(day0 - dt.timedelta(days=3)).isoformat()]

    backlog = report["backlog"]
    assert backlog["now"] == 3
    assert len(backlog["behind"]) == 29
    assert {row["day"]: (row["low"], row["high"]) for row in backlog["behind"]} == {
        (day0 - dt.timedelta(days=k)).isoformat(): expected_behind(k) for k in range(1, 30)}
    assert len(backlog["ahead"]) == 30
    assert {row["day"]: row["backlog_if_no_purge"] for row in backlog["ahead"]} == {
        (day0 + dt.timedelta(days=k)).isoformat(): expected_ahead(k) for k in range(30)}
    assert backlog["purged_per_day_last_30_days"] == round(16 / 30, 2)
    assert backlog["becoming_eligible_per_day_next_30_days"] == round(2 / 30, 2)
    assert "no history of the backlog is kept" in backlog["note"]
    assert "between 3 and 9" in backlog["summary"]  # 7 days ago
    assert "would reach 5" in backlog["summary"]

    runs = report["last_runs"]
    assert [(r["status"], r["trigger"], r["customers_deleted"], r["locations_deleted"], r["contacts_deleted"])
            for r in runs] == [("succeeded", "runner", 2, 3, 5), ("failed", "pg_cron", 0, 0, 0),
                               ("succeeded", "pg_cron", 4, 4, 8), ("succeeded", "pg_cron", 10, 12, 15),
                               ("succeeded", "pg_cron", 100, 120, 150)]
    assert [r["id"] for r in runs] == sorted((r["id"] for r in runs), reverse=True)


def test_text_numbers(report_db):
    text = cli("report", "--dsn", report_db).stdout

    def number(label: str) -> list[int]:
        (line,) = [line for line in text.splitlines() if line.strip().startswith(label)]
        return [int(n.replace(",", "")) for n in re.findall(r"(?<![\w.])\d[\d,]*(?![\w-])", line[len(label) + 2:])]

    assert number("ad-hoc customers") == [9]
    assert number("inactive for 14 days") == [6, 3]  # and "-3 held by recent activity"
    assert "-3 held by recent activity" in text
    assert number("... and free of blockers") == [4, 2]
    assert "-2 held by a blocker" in text
    assert number("eligible now (no login in 6 months)") == [3, 1]
    assert "-1 held by a recent login" in text
    assert number("last 7 days") == [6, 7, 13, 3, 1]  # customers, locations, contacts, runs, (1 failed)
    assert number("last 30 days") == [16, 19, 28, 4, 1]
    assert number("eligible now:") == [3]
    assert re.search(r"\(7 days ago\) +between 3 and 9$", text, re.M)
    assert re.search(r"\(29 days ago\) +between 2 and 18$", text, re.M)
    assert re.search(r"\(yesterday\) +between 3 and 5$", text, re.M)
    assert re.search(r"\(in 29 days\) +5 if no purge runs$", text, re.M)
    assert "ESTIMATE: no history of the backlog is kept" in text
    holds = text.split("What holds the rest")[1].split("Last 5 runs")[0]
    assert re.findall(r"^  (\S+)\s+(\d+)\s+([\d.]+)% of ad-hoc", holds, re.M) == [
        (reason, str(n), f"{p:.1f}") for reason, n, p in HOLDS]
    runs = text.split("Last 5 runs")[1].splitlines()[2:]
    assert len(runs) == 5
    assert runs[0].split()[3:9] == ["succeeded", "runner", "2", "3", "5"]
    assert runs[1].split()[3:5] == ["failed", "pg_cron"] and "lock timeout" in runs[1]


def test_csv_numbers(report_db):
    output = cli("report", "--dsn", report_db, "--csv").stdout
    rows = list(csv.reader(io.StringIO(output)))
    assert rows[0] == ["section", "key", "metric", "value"]
    assert all(len(row) == 4 for row in rows)
    values = {(s, k, m): v for s, k, m, v in rows[1:]}
    day0 = today(report_db)

    for stage, n in FUNNEL.items():
        assert values["funnel", stage, "customers"] == str(n)
    for window, numbers in PURGED.items():
        for metric, n in numbers.items():
            assert values["purged", window, metric] == str(n)
    for reason, n, percent in HOLDS:
        assert values["holds", reason, "customers"] == str(n)
        assert float(values["holds", reason, "percent_of_adhoc"]) == percent
    assert values["purged_per_day", day0.isoformat(), "customers"] == "2"
    assert values["purged_per_day", (day0 - dt.timedelta(days=6)).isoformat(), "contacts"] == "8"
    assert values["backlog", "now", "eligible"] == "3"
    for k in (1, 7, 20, 29):
        day = (day0 - dt.timedelta(days=k)).isoformat()
        assert (int(values["backlog_behind", day, "low"]), int(values["backlog_behind", day, "high"])) == \
            expected_behind(k)
    assert values["backlog_ahead", (day0 + dt.timedelta(days=29)).isoformat(), "backlog_if_no_purge"] == "5"
    sections = {row[0] for row in rows[1:]}
    assert sections == {"meta", "funnel", "purged", "purged_per_day", "backlog", "backlog_behind", "backlog_ahead",
                        "holds", "runs"}
    assert len([1 for s, k, m, v in rows[1:] if s == "runs" and m == "status"]) == 5


def test_an_empty_database(ref_db, tmp_path):
    report = json.loads(cli("report", "--dsn", ref_db, "--json").stdout)
    assert report["funnel"] == {stage: 0 for stage in FUNNEL}
    assert report["holds"] == [] and report["last_runs"] == []
    assert report["backlog"]["now"] == 0
    text = cli("report", "--dsn", ref_db).stdout
    assert "no runs yet" in text
    page = tmp_path / "empty.html"
    cli("report", "--dsn", ref_db, "--html", str(page))
    dom = chromium(tmp_path, page, "--dump-dom").stdout
    assert "No runs yet." in dom and "No customers purged in the last 30 days" in dom


def test_usage_and_failures(ref_db, app_db, tmp_path):
    assert "not allowed with argument" in cli("report", "--dsn", ref_db, "--json", "--csv", code=2).stderr
    assert "not deployed" in cli("report", "--dsn", app_db, code=2).stderr
    assert "cannot connect" in cli("report", "--dsn", UNREACHABLE_DSN, code=1).stderr
    assert cli("report", "--dsn", ref_db, "--html", "-").stdout.startswith("<!DOCTYPE html>")
    missing = tmp_path / "no-such-folder" / "report.html"
    assert f"cannot write {missing}" in cli("report", "--dsn", ref_db, "--html", str(missing), code=1).stderr


def test_the_analyst_role_is_enough(ref_db, tmp_path):
    """Read only, and only what [roles] analyst may read: the views, runs, deployed_mapping()."""
    suffix = uuid.uuid4().hex[:8]  # roles are cluster-wide: unique per test
    owner, analyst = f"gc_owner_{suffix}", f"gc_analyst_{suffix}"
    config = tmp_path / "adhoc-gc.toml"
    config.write_text(f'[roles]\nowner = "{owner}"\nanalyst = "{analyst}"\n')
    with psycopg.connect(ref_db, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{owner}" LOGIN')
        conn.execute(f'CREATE ROLE "{analyst}" LOGIN')
        conn.execute(f'GRANT SELECT, UPDATE, INSERT, DELETE ON customers, locations, contacts TO "{owner}"')
        conn.execute(f'GRANT SELECT ON cases, devices TO "{owner}"')
    try:
        deploy_mapping(ref_db, mapping_from_toml(config.read_text()))
        with psycopg.connect(ref_db, autocommit=True) as conn:
            add_stack(conn)
            add_stack(conn, age="3 days")
        as_analyst = make_conninfo(ref_db, user=analyst)
        report = json.loads(cli("report", "--dsn", as_analyst, "--config", str(config), "--json").stdout)
        assert report["funnel"] == {"adhoc_customers": 2, "inactive": 1, "free_of_blockers": 1, "eligible_now": 1}
        assert report["holds"][0]["reason"] == "activity"
    finally:
        with psycopg.connect(ref_db, autocommit=True) as conn:
            conn.execute("DROP SCHEMA adhoc_gc CASCADE")
            for role in (owner, analyst):
                conn.execute(f'DROP OWNED BY "{role}" CASCADE')
                conn.execute(f'DROP ROLE "{role}"')


# --- the HTML page in a real browser ---------------------------------------------------------

def chromium(tmp_path, page, *args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium") or CHROMIUM
    if not os.path.exists(binary):
        message = f"{CHROMIUM} is not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: never skip there
        pytest.skip(message)
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    result = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def png_size_and_colours(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the decompressed image data): a blank page
    compresses to a handful of values, a drawn one to nearly all 256."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, idat, width, height = 8, b"", 0, 0
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def test_html_renders_offline_in_chromium_without_console_errors(report_db, tmp_path):
    page = tmp_path / "report.html"
    result = cli("report", "--dsn", report_db, "--html", str(page))
    assert result.stdout == f"report written to {page}\n"
    html = page.read_text()

    # Self-contained: no resource from anywhere else, no script.
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"""(?:src|href)\s*=|url\(|@import""", html, re.I)
    assert "<script" not in html.lower()
    assert "default-src 'none'" in html  # the page itself forbids loading anything
    # Accessible: a language, a title, every chart an image with a title and a description.
    assert '<html lang="en">' in html and "<title>adhoc-gc report" in html
    charts = re.findall(r"<svg [^>]*>", html)
    assert len(charts) == 4
    for svg in charts:
        assert 'role="img"' in svg and "aria-labelledby=" in svg
    for ident in ("backlog", "purged", "funnel", "holds"):
        assert f'<title id="{ident}-title">' in html and f'<desc id="{ident}-desc">' in html
    assert html.count("<details>") == 4  # each chart's numbers as a table
    assert "no history of the backlog is kept" in html

    dom = chromium(tmp_path, page, "--dump-dom").stdout
    assert "Ad-hoc customer clean-up" in dom
    assert dom.count("<svg") == 4 and dom.count("<rect") > 30
    assert re.search(r'class="status status-failed">failed<', dom)

    shot = tmp_path / "report.png"
    logged = chromium(tmp_path, page, "--enable-logging=stderr", "--v=0", f"--screenshot={shot}",
                      "--window-size=1280,2000", "--hide-scrollbars")
    console = [line for line in logged.stderr.splitlines()
               if "Uncaught" in line or "ERROR:CONSOLE" in line or ":CONSOLE(" in line
               or "Content Security Policy" in line or "Refused to" in line]
    assert not console, "\n".join(console)
    data = shot.read_bytes()
    assert len(data) > 40_000, f"screenshot is only {len(data)} bytes"
    width, height, colours = png_size_and_colours(data)
    assert (width, height) == (1280, 2000)
    assert colours > 100, "the screenshot looks blank"
