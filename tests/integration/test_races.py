"""The purge racing a busy application: many short committed transactions against small batches.

While purges run in small batches (3 to 5 stacks, no pause), several application threads
(each its own connection) keep writing to the stacks the purge is about to reach (the
"frontier", read from `runs.last_key`) and to random ones:

- attach a case to a location or to a contact, attach a device to a location;
- log a contact in (`last_login_at = now()`);
- touch an activity column (`updated_at = now()`) of a customer, location or contact;
- move one of their own cases to a location of another stack.

A transaction does one to three of these (at most one `UPDATE` of a stack row, so the
application threads cannot deadlock among themselves: any deadlock is the purge's fault).
Every transaction that COMMITTED is logged with what it wrote and two server timestamps:
`clock_timestamp()` just before its COMMIT and just after it (the latter is certainly
later than the moment the commit became visible). Every error the application saw is
counted by type.

The test is run once per kind of foreign key on the blocker columns (`cases.location_id`,
`cases.contact_id`, `devices.location_id`): NO ACTION (the reference schema), ON DELETE
CASCADE, ON DELETE SET NULL, and none at all.

What is asserted, and why it is sound at READ COMMITTED
--------------------------------------------------------

Touches and logins (every variant). An `UPDATE` of a stack row that reported one row and
committed holds that row's lock until it commits. The batch locks the row `SKIP LOCKED`:
if it got the lock before the update, the update waited and then found the row gone (it
reports zero rows, so it is not counted as a touch); if the update was still open, the
stack was skipped; if it had committed, the re-check (a later statement, so a later
snapshot) sees the new timestamp, which keeps the stack for 14 days (6 months for a
login). So: every stack that a committed touch or login reached is never deleted. As a
second view of the same thing, no row archived in `adhoc_gc.purged` carries a timestamp
newer than the rules allow relative to its batch's `purged_at` (the archive is built from
the DELETE's RETURNING, i.e. the row versions actually deleted).

Cases and devices, with a foreign key (NO ACTION, CASCADE, SET NULL). The insert (or the
move, whose new value is checked too) takes KEY SHARE on the referenced row until it
commits. A batch must hold that row FOR UPDATE to delete it, so either it took it first
(the insert waits, then fails its foreign-key check: never committed) or the insert had
already committed (the re-check sees it). So: every case and device that a committed
transaction wrote still exists, still holds exactly the value last written (in particular
CASCADE deleted nothing and SET NULL nulled nothing), and the stack it points at survives.
Only a case's *last* position counts: a case moved away no longer holds its old stack.

Without a foreign key the design note admits a window: a case committed after the batch's
re-check snapshot and before the batch commits is not seen. The application then checks
existence itself (`INSERT ... SELECT ... WHERE EXISTS (location)`), as such an application
would, so that an orphan can only come from a batch deleting the location while the insert
was under way (the window, widened by the application's own check-then-insert). What stays guaranteed there,
and is asserted: a blocker whose commit was acknowledged before the deleting batch's
transaction began (`purged_at` is that transaction's `now()`, earlier than its re-check
snapshot) keeps its stack; a fortiori one committed before the first run started (that
simplest check is also asserted on its own, in every variant). Orphans (cases and devices
pointing at a location or contact that is gone) are counted and printed, not asserted.

In every variant: no stack is ever half deleted (`helpers.stack_exists`); the runs' totals
equal the stacks, locations and contacts actually gone, and the archive holds exactly one
complete row per stack gone; the application saw no error other than a foreign-key
violation (none at all without foreign keys: no deadlock, no timeout, no serialization
failure); every purge run succeeded; after the application stops, a last run leaves no
candidate behind.

One line of numbers per variant is printed at the end (also on success): committed
application transactions, blockers attached (case and device inserts), case moves, touches
and logins, writes that committed while a run was going, writes that found nothing (row
gone, or the no-foreign-key existence check failed), application errors by type, runs,
how long the first run took, stacks purged, orphans, violations.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import datetime as dt
import random
import threading
import time

import psycopg
import pytest

from adhoc_gc.errors import RunFailed
from adhoc_gc.purge import MAX_RACE_RETRIES
from helpers import Stack, add_stack, purge, stack_exists

STACKS = 1500  # eligible stacks seeded
HELD_STACKS = 60  # stacks seeded with a case on their first location (movable by the threads)
APP_THREADS = 6
MAX_TXNS_PER_THREAD = 1500
APP_DEADLINE_SECONDS = 12.0  # the application threads stop by themselves after this long
WARMUP_SECONDS = 0.5  # application traffic before the first run starts
FRONTIER_WINDOW = 15  # "near the frontier": this many stacks after runs.last_key
MAX_RUNS = 6

FK_COLUMNS = (("cases", "location_id", "locations"),
              ("cases", "contact_id", "contacts"),
              ("devices", "location_id", "locations"))
VARIANTS = ("no_action", "cascade", "set_null", "no_fk")
ALLOWED_ERRORS = {
    "no_action": {"ForeignKeyViolation"},
    "cascade": {"ForeignKeyViolation"},
    "set_null": {"ForeignKeyViolation"},
    "no_fk": set(),
}
BLOCKER_KINDS = ("case_location", "case_contact", "device", "move")
TOUCH_KINDS = ("login", "touch_customer", "touch_location", "touch_contact")
EXCLUSIVE_KINDS = TOUCH_KINDS  # UPDATEs of stack rows: at most one per transaction


def _set_fk_variant(conn: psycopg.Connection, variant: str) -> None:
    for table, column, target in FK_COLUMNS:
        name = conn.execute(
            "SELECT con.conname FROM pg_constraint AS con "
            "JOIN pg_attribute AS a ON a.attrelid = con.conrelid AND a.attnum = ANY (con.conkey) "
            "WHERE con.contype = 'f' AND con.conrelid = %s::regclass AND a.attname = %s",
            (table, column)).fetchone()[0]
        if variant == "no_action":
            continue  # the reference schema already says NO ACTION
        conn.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
        if variant == "no_fk":
            continue
        if variant == "set_null":
            # devices.location_id is NOT NULL: without this a SET NULL would fail loudly;
            # the test wants it to be silent, and caught by the checks below.
            conn.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" DROP NOT NULL')
        action = {"cascade": "ON DELETE CASCADE", "set_null": "ON DELETE SET NULL"}[variant]
        conn.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" '
                     f'FOREIGN KEY ("{column}") REFERENCES "{target}" ("id") {action}')
    kinds = conn.execute(
        "SELECT confdeltype FROM pg_constraint WHERE contype = 'f' "
        "AND conrelid IN ('cases'::regclass, 'devices'::regclass) ORDER BY 1").fetchall()
    expected = {"no_action": [("a",)] * 3, "cascade": [("c",)] * 3, "set_null": [("n",)] * 3, "no_fk": []}[variant]
    assert kinds == expected, kinds


@dataclasses.dataclass
class Write:
    kind: str
    stack: int  # index into the seeded stacks: the stack written to
    table: str
    row: int  # case/device id, or the touched row's id
    column: str | None = None  # the pointer written (cases/devices)
    value: int | None = None
    from_stack: int | None = None  # for moves: the stack the case left


@dataclasses.dataclass
class Txn:
    thread: int
    writes: list[Write]
    missed: int = 0  # statements that found nothing to write (row gone / EXISTS false)
    committed: bool = False
    error: str | None = None
    pre_commit: dt.datetime | None = None
    post_commit: dt.datetime | None = None


class Frontier:
    """The index (into the seeded stacks) just after the running run's last_key."""

    def __init__(self, customer_ids: list[int]):
        self.customer_ids = customer_ids
        self.index = 0

    def update(self, last_key: str | None) -> None:
        self.index = 0 if last_key is None else bisect.bisect_right(self.customer_ids, int(last_key))


def _seed(conn: psycopg.Connection, rng: random.Random) -> tuple[list[Stack], list[tuple[int, int, int]]]:
    """STACKS eligible stacks and HELD_STACKS held by a seeded case, interleaved in key order."""
    kinds = [False] * STACKS + [True] * HELD_STACKS
    rng.shuffle(kinds)
    stacks, seeded_cases = [], []
    for is_held in kinds:
        locations = rng.choices([0, 1, 2, 3], weights=[3, 42, 33, 22])[0]
        if is_held:
            locations = max(locations, 1)
        contacts = rng.choices([0, 1, 2], weights=[6, 54, 40])[0]
        login = rng.choice([None, None, "400 days"])
        stack = add_stack(conn, locations=locations, contacts_per_location=contacts, last_login_ago=login)
        if is_held:
            case = conn.execute("INSERT INTO cases (location_id, subject) VALUES (%s, 'seeded') RETURNING id",
                                (stack.locations[0],)).fetchone()[0]
            seeded_cases.append((case, stack.locations[0], len(stacks)))
        stacks.append(stack)
    return stacks, seeded_cases


class App:
    """The application threads, their log, and what they may pick."""

    def __init__(self, dsn: str, variant: str, stacks: list[Stack], frontier: Frontier,
                 seeded_cases: list[tuple[int, int, int]], seed: int):
        self.dsn = dsn
        self.guarded = variant == "no_fk"  # no foreign key: the application checks existence itself
        self.stacks = stacks
        self.frontier = frontier
        self.stop = threading.Event()
        self.deadline = time.monotonic() + APP_DEADLINE_SECONDS
        self.logs: list[list[Txn]] = [[] for _ in range(APP_THREADS)]
        self.crashes: list[str] = []
        self.seed = seed
        # Each thread owns some cases (only it moves them): committed positions, case -> (location, stack).
        self.owned: list[dict[int, tuple[int, int]]] = [{} for _ in range(APP_THREADS)]
        for n, (case, location, stack) in enumerate(seeded_cases):
            self.owned[n % APP_THREADS][case] = (location, stack)

    def threads(self) -> list[threading.Thread]:
        return [threading.Thread(target=self._run, args=(tid,), name=f"app-{tid}") for tid in range(APP_THREADS)]

    def _pick_stack(self, rng: random.Random) -> int:
        if rng.random() < 0.65:
            index = self.frontier.index + rng.randrange(FRONTIER_WINDOW)
        else:
            index = rng.randrange(len(self.stacks))
        return min(index, len(self.stacks) - 1)

    def _plan(self, rng: random.Random, tid: int) -> list[tuple[str, int]]:
        plan: list[tuple[str, int]] = []
        exclusive = False
        for _ in range(rng.choices([1, 2, 3], weights=[70, 20, 10])[0]):
            stack = self.stacks[index := self._pick_stack(rng)]
            choices = []
            if stack.locations:
                choices += [("case_location", 20), ("device", 15)]
                if self.owned[tid]:
                    choices.append(("move", 15))
            if stack.contacts:
                choices.append(("case_contact", 10))
            if not exclusive:
                choices.append(("touch_customer", 10))
                if stack.locations:
                    choices.append(("touch_location", 10))
                if stack.contacts:
                    choices += [("login", 10), ("touch_contact", 10)]
            if not choices:
                continue
            kind = rng.choices([c[0] for c in choices], weights=[c[1] for c in choices])[0]
            exclusive = exclusive or kind in EXCLUSIVE_KINDS
            plan.append((kind, index))
        return plan

    def _execute(self, conn: psycopg.Connection, rng: random.Random, tid: int, kind: str, index: int,
                 txn: Txn, moved: dict[int, tuple[int, int]]) -> None:
        stack = self.stacks[index]
        guard = " AND EXISTS (SELECT 1 FROM {t} WHERE id = %s)" if self.guarded else ""

        def insert(table: str, column: str, target_table: str, target: int) -> None:
            if self.guarded:
                sql = (f'INSERT INTO "{table}" ("{column}") SELECT %s '
                       f'WHERE EXISTS (SELECT 1 FROM "{target_table}" WHERE id = %s) RETURNING id')
                params: tuple = (target, target)
            else:
                sql, params = f'INSERT INTO "{table}" ("{column}") VALUES (%s) RETURNING id', (target,)
            row = conn.execute(sql, params).fetchone()
            if row is None:
                txn.missed += 1
            else:
                txn.writes.append(Write(kind, index, table, row[0], column, target))

        def update(table: str, column: str, key: int) -> None:
            row = conn.execute(f'UPDATE "{table}" SET "{column}" = now() WHERE id = %s RETURNING id', (key,)).fetchone()
            if row is None:
                txn.missed += 1
            else:
                txn.writes.append(Write(kind, index, table, key))

        if kind == "case_location":
            insert("cases", "location_id", "locations", rng.choice(stack.locations))
        elif kind == "case_contact":
            insert("cases", "contact_id", "contacts", rng.choice(stack.contacts))
        elif kind == "device":
            insert("devices", "location_id", "locations", rng.choice(stack.locations))
        elif kind == "move":
            positions = {**self.owned[tid], **moved}
            case = rng.choice(sorted(positions))
            old_location, old_stack = positions[case]
            location = rng.choice(stack.locations)
            if location == old_location:
                return
            params: tuple = (location, case) + ((location,) if self.guarded else ())
            row = conn.execute("UPDATE cases SET location_id = %s WHERE id = %s"
                               + guard.format(t="locations") + " RETURNING id", params).fetchone()
            if row is None:
                txn.missed += 1
            else:
                txn.writes.append(Write(kind, index, "cases", case, "location_id", location, old_stack))
                moved[case] = (location, index)
        elif kind == "login":
            update("contacts", "last_login_at", rng.choice(stack.contacts))
        elif kind == "touch_customer":
            update("customers", "updated_at", stack.customer)
        elif kind == "touch_location":
            update("locations", "updated_at", rng.choice(stack.locations))
        elif kind == "touch_contact":
            update("contacts", "updated_at", rng.choice(stack.contacts))
        else:
            raise AssertionError(kind)

    def _run(self, tid: int) -> None:
        rng = random.Random(self.seed * 1000 + tid)
        log = self.logs[tid]
        try:
            with psycopg.connect(self.dsn, autocommit=True, application_name=f"race-app-{tid}") as conn:
                # A safety net only: the purge never makes the application wait for long,
                # so hitting it is a failure (QueryCanceled is not an allowed error).
                conn.execute("SET statement_timeout = '15s'")
                for _ in range(MAX_TXNS_PER_THREAD):
                    if self.stop.is_set() or time.monotonic() > self.deadline:
                        break
                    plan = self._plan(rng, tid)
                    if not plan:
                        continue
                    txn = Txn(tid, [])
                    moved: dict[int, tuple[int, int]] = {}
                    try:
                        with conn.transaction():
                            for kind, index in plan:
                                self._execute(conn, rng, tid, kind, index, txn, moved)
                            txn.pre_commit = conn.execute("SELECT clock_timestamp()").fetchone()[0]
                        txn.committed = True
                    except psycopg.Error as exc:
                        txn.error = type(exc).__name__
                        txn.writes = []
                        if conn.closed:
                            log.append(txn)
                            self.crashes.append(f"app thread {tid}: connection lost: {exc}")
                            return
                    if txn.committed:
                        # Later than the moment the commit became visible to others.
                        txn.post_commit = conn.execute("SELECT clock_timestamp()").fetchone()[0]
                    log.append(txn)
                    if txn.committed:
                        for w in txn.writes:
                            if w.kind == "case_location":
                                self.owned[tid][w.row] = (w.value, w.stack)
                        self.owned[tid].update(moved)
                    if rng.random() < 0.2:
                        time.sleep(rng.random() * 0.003)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.crashes.append(f"app thread {tid} crashed: {type(exc).__name__}: {exc}")


def _monitor_frontier(dsn: str, frontier: Frontier, stop: threading.Event) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            row = conn.execute("SELECT last_key FROM adhoc_gc.runs WHERE status = 'running' "
                               "ORDER BY id DESC LIMIT 1").fetchone()
            if row is not None:
                frontier.update(row[0])
            time.sleep(0.005)


def _purge_loop(dsn: str, rng: random.Random, first_done: threading.Event, stop: threading.Event,
                result: dict) -> None:
    result["runs"] = []
    try:
        while len(result["runs"]) < MAX_RUNS and not stop.is_set():
            progress = purge(dsn, batch_size=rng.choice([3, 4, 5]), sleep=0.0)
            result["runs"].append(progress.run_id)
            first_done.set()
    except Exception as exc:  # noqa: BLE001 - reported by the test
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        first_done.set()


@pytest.mark.parametrize("variant", VARIANTS)
def test_purge_racing_the_application(ref_db, ref_conn, variant, capsys):
    started = time.monotonic()
    seed = VARIANTS.index(variant) + 1
    rng = random.Random(seed)
    _set_fk_variant(ref_conn, variant)
    stacks, seeded_cases = _seed(ref_conn, rng)
    customer_ids = [s.customer for s in stacks]
    assert customer_ids == sorted(customer_ids)
    seed_time = ref_conn.execute("SELECT clock_timestamp()").fetchone()[0]

    frontier = Frontier(customer_ids)
    app = App(ref_db, variant, stacks, frontier, seeded_cases, seed)
    monitor_stop = threading.Event()
    monitor = threading.Thread(target=_monitor_frontier, args=(ref_db, frontier, monitor_stop))
    app_threads = app.threads()
    monitor.start()
    for t in app_threads:
        t.start()
    time.sleep(WARMUP_SECONDS)

    purge_result: dict = {}
    first_done, purge_stop = threading.Event(), threading.Event()
    purger = threading.Thread(target=_purge_loop, args=(ref_db, rng, first_done, purge_stop, purge_result))
    purger.start()
    first_done.wait(timeout=APP_DEADLINE_SECONDS + 10)
    time.sleep(0.3)  # a little traffic after the first run, racing the next ones
    app.stop.set()
    for t in app_threads:
        t.join(timeout=30)
    purge_stop.set()
    purger.join(timeout=60)
    monitor_stop.set()
    monitor.join(timeout=10)
    assert not purger.is_alive() and not any(t.is_alive() for t in app_threads), "a thread hung"

    violations: list[str] = []
    violations += app.crashes
    if "error" in purge_result:
        violations.append(f"a purge run failed: {purge_result['error']}")

    # The application is quiet now: one last run must leave no candidate.
    final = purge(ref_db, batch_size=5)
    run_ids = purge_result["runs"] + [final.run_id]
    leftover = ref_conn.execute("SELECT count(*) FROM adhoc_gc.candidates").fetchone()[0]
    if leftover:
        violations.append(f"{leftover} candidates left after a quiet run")

    txns = [txn for log in app.logs for txn in log]
    committed = [t for t in txns if t.committed]
    errors = collections.Counter(t.error for t in txns if t.error)
    for error, count in errors.items():
        if error not in ALLOWED_ERRORS[variant]:
            violations.append(f"the application saw {count} x {error}")

    # (c) no half-deleted stack (stack_exists asserts it); which stacks are gone.
    gone: list[bool] = []
    for stack in stacks:
        try:
            gone.append(not stack_exists(ref_conn, stack))
        except AssertionError as exc:
            violations.append(str(exc))
            gone.append(True)
    purged_at = {int(k): at for k, at in ref_conn.execute(
        "SELECT customer_id, purged_at FROM adhoc_gc.purged").fetchall()}
    index_of = {s.customer: i for i, s in enumerate(stacks)}

    runs = ref_conn.execute(
        "SELECT id, status, started_at, customers_deleted, locations_deleted, contacts_deleted "
        "FROM adhoc_gc.runs ORDER BY id").fetchall()
    first_run_start = runs[0][2]
    first_run_seconds = ref_conn.execute("SELECT extract(epoch FROM finished_at - started_at) FROM adhoc_gc.runs "
                                         "WHERE id = %s", (run_ids[0],)).fetchone()[0]
    last_run_end = ref_conn.execute("SELECT max(finished_at) FROM adhoc_gc.runs WHERE id = ANY (%s)",
                                    (purge_result["runs"] or [final.run_id],)).fetchone()[0]

    # Final position of every case/device written (cases are moved only by their owner
    # thread, so each thread's log is in commit order for the rows it moves).
    final_pointer: dict[tuple[str, int], tuple[str, int, int, dt.datetime | None]] = {}
    for case, location, stack in seeded_cases:
        final_pointer[("cases", case)] = ("location_id", location, stack, None)  # committed before everything
    touched: dict[int, list[Txn]] = collections.defaultdict(list)
    for log in app.logs:
        for txn in log:
            if not txn.committed:
                continue
            for w in txn.writes:
                if w.kind in TOUCH_KINDS:
                    touched[w.stack].append(txn)
                else:
                    final_pointer[(w.table, w.row)] = (w.column, w.value, w.stack, txn.post_commit)

    # (b) touches and logins: the touched stack survives, in every variant.
    for index, by in touched.items():
        if gone[index]:
            violations.append(f"stack {stacks[index].customer} deleted although {len(by)} committed "
                              f"touch/login transaction(s) reached it (first acknowledged {min(t.post_commit for t in by)}, "
                              f"purged_at {purged_at.get(stacks[index].customer)})")

    # (a) + (b) cases and devices.
    window_orphans = 0
    for (table, row), (column, value, index, acknowledged) in final_pointer.items():
        actual = ref_conn.execute(f'SELECT "{column}" FROM "{table}" WHERE id = %s', (row,)).fetchone()
        if actual is None:
            violations.append(f"{table} {row} was committed (pointing at {column} {value}) and is gone")
            continue
        if actual[0] != value:
            violations.append(f"{table} {row}.{column} is {actual[0]}, the application last wrote {value}")
        if not gone[index]:
            continue
        # Its stack was deleted while it pointed there.
        deleted_at = purged_at.get(stacks[index].customer)
        before_run = acknowledged is None or acknowledged < first_run_start
        if variant != "no_fk":
            violations.append(f"stack {stacks[index].customer} deleted although committed {table} {row} "
                              f"points at it ({column} = {value}, acknowledged {acknowledged}, purged_at {deleted_at})")
        elif before_run or (deleted_at is not None and acknowledged < deleted_at):
            violations.append(f"stack {stacks[index].customer} deleted (purged_at {deleted_at}) although {table} {row} "
                              f"pointing at it was acknowledged before that batch began ({acknowledged})")
        else:
            window_orphans += 1

    # The simplest check, in every variant: whatever held a stack before the first run
    # started (a touch, or a blocker whose last position is that stack) keeps it.
    held_before = {index for (column, value, index, ack) in final_pointer.values()
                   if ack is None or ack < first_run_start}  # None: seeded, never moved since
    held_before |= {i for i, by in touched.items() if any(t.post_commit < first_run_start for t in by)}
    for index in sorted(held_before):
        if gone[index]:
            violations.append(f"stack {stacks[index].customer} held before the first run started was deleted")

    # Dangling pointers in the whole database (every case and device, not only ours).
    orphans = ref_conn.execute(
        "SELECT (SELECT count(*) FROM cases c WHERE c.location_id IS NOT NULL "
        "          AND NOT EXISTS (SELECT 1 FROM locations l WHERE l.id = c.location_id))"
        "     + (SELECT count(*) FROM cases c WHERE c.contact_id IS NOT NULL "
        "          AND NOT EXISTS (SELECT 1 FROM contacts ct WHERE ct.id = c.contact_id))"
        "     + (SELECT count(*) FROM devices d WHERE d.location_id IS NOT NULL "
        "          AND NOT EXISTS (SELECT 1 FROM locations l WHERE l.id = d.location_id))").fetchone()[0]
    if variant != "no_fk" and orphans:
        violations.append(f"{orphans} cases/devices point at a missing location or contact")
    nulled = ref_conn.execute("SELECT (SELECT count(*) FROM cases WHERE location_id IS NULL AND contact_id IS NULL)"
                              " + (SELECT count(*) FROM devices WHERE location_id IS NULL)").fetchone()[0]
    if nulled:
        violations.append(f"{nulled} cases/devices lost their pointer (set to NULL)")

    # The archive: no deleted row carries a timestamp the rules forbid at its batch's time.
    fresh = ref_conn.execute("""
        SELECT p.customer_id FROM adhoc_gc.purged AS p
        WHERE (p.customer->>'updated_at')::timestamptz > p.purged_at - interval '14 days'
           OR EXISTS (SELECT 1 FROM json_array_elements(p.locations) AS l
                      WHERE (l->>'updated_at')::timestamptz > p.purged_at - interval '14 days')
           OR EXISTS (SELECT 1 FROM json_array_elements(p.contacts) AS ct
                      WHERE (ct->>'updated_at')::timestamptz > p.purged_at - interval '14 days'
                         OR (ct->>'last_login_at')::timestamptz > p.purged_at - interval '6 months')
    """).fetchall()
    if fresh:
        violations.append(f"archived stacks with recent activity or login: {[r[0] for r in fresh][:10]}")

    # The archive: exactly one complete row per stack gone.
    archived = ref_conn.execute("""
        SELECT customer_id::bigint, count(*) OVER (PARTITION BY customer_id),
               ARRAY(SELECT (x->>'id')::bigint FROM json_array_elements(locations) AS x ORDER BY 1),
               ARRAY(SELECT (x->>'id')::bigint FROM json_array_elements(contacts) AS x ORDER BY 1)
        FROM adhoc_gc.purged""").fetchall()
    gone_keys = {stacks[i].customer for i, g in enumerate(gone) if g}
    if {r[0] for r in archived} != gone_keys:
        violations.append(f"archive/gone mismatch: archived not gone {sorted({r[0] for r in archived} - gone_keys)[:10]}, "
                          f"gone not archived {sorted(gone_keys - {r[0] for r in archived})[:10]}")
    for customer, copies, locations, contacts in archived:
        stack = stacks[index_of[customer]] if customer in index_of else None
        if copies != 1 or stack is None or locations != sorted(stack.locations) or contacts != sorted(stack.contacts):
            violations.append(f"archive row for {customer} is not the whole stack once: {copies} copies, "
                              f"locations {locations}, contacts {contacts}")

    # (d) the runs' totals equal what is gone.
    statuses = collections.Counter(r[1] for r in runs)
    if statuses != {"succeeded": len(run_ids)}:
        violations.append(f"run statuses {dict(statuses)}, expected {len(run_ids)} succeeded")
    totals = tuple(sum(r[k] for r in runs) for k in (3, 4, 5))
    actual_totals = (sum(gone),
                     sum(len(s.locations) for s, g in zip(stacks, gone) if g),
                     sum(len(s.contacts) for s, g in zip(stacks, gone) if g))
    if totals != actual_totals:
        violations.append(f"runs say {totals} (customers, locations, contacts) deleted, {actual_totals} are gone")

    during_run = sum(1 for t in committed
                     if t.writes and first_run_start <= t.post_commit and t.pre_commit <= last_run_end)
    blockers = sum(1 for t in committed for w in t.writes if w.kind in BLOCKER_KINDS and w.kind != "move")
    moves = sum(1 for t in committed for w in t.writes if w.kind == "move")
    touches = sum(1 for t in committed for w in t.writes if w.kind in TOUCH_KINDS)
    missed = sum(t.missed for t in txns)
    line = (f"race[{variant}]: app_txns_committed={len(committed)} blockers_attached={blockers} moves={moves} "
            f"touches={touches} writes_during_runs={during_run} missed_writes={missed} "
            f"app_errors={dict(errors) or {}} runs={len(run_ids)} first_run_seconds={float(first_run_seconds):.2f} "
            f"stacks_purged={sum(gone)}/{len(stacks)} "
            f"orphans={orphans} (window {window_orphans}) violations={len(violations)} "
            f"seconds={time.monotonic() - started:.1f}")
    with capsys.disabled():
        print("\n" + line)

    assert not violations, line + "\n" + "\n".join(violations[:40])
    # The race really happened: the application wrote while the purge ran, and both sides got work done.
    assert during_run > 20, line
    assert 0 < sum(gone) < len(stacks), line
    assert seed_time < first_run_start


# --- a batch that keeps being undone ----------------------------------------------------------

def _undo_deletes_of_more_than(conn, rows: int) -> None:
    """A trigger that fails every DELETE of more than `rows` customers with a serialization
    failure, as an application rewriting the batch's rows on every try would."""
    conn.execute(f"""
        CREATE FUNCTION public.undo_big_deletes() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF (SELECT count(*) FROM gone) > {rows} THEN
                RAISE EXCEPTION 'rewritten meanwhile' USING ERRCODE = '40001';
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER undo_big_deletes AFTER DELETE ON customers
            REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION public.undo_big_deletes();
    """)


@pytest.mark.parametrize("how", ["runner", "CALL"])
def test_a_batch_undone_again_and_again_is_halved_until_it_goes_through(ref_db, ref_conn, how):
    stacks = [add_stack(ref_conn) for _ in range(6)]
    _undo_deletes_of_more_than(ref_conn, 1)
    if how == "runner":
        purge(ref_db, batch_size=8)
    else:
        ref_conn.execute("CALL adhoc_gc.purge(batch_size => 8)")
    assert not any(stack_exists(ref_conn, s) for s in stacks)
    status, retries = ref_conn.execute("SELECT status, batch_retries FROM adhoc_gc.runs").fetchone()
    # 8, 4 and 2 are each undone 6 times (5 retries, then halved); 1 goes through.
    assert status == "succeeded" and retries == 3 * (MAX_RACE_RETRIES + 1), retries


@pytest.mark.parametrize("how", ["runner", "CALL"])
def test_a_batch_of_one_undone_again_and_again_fails_the_run(ref_db, ref_conn, how):
    stack = add_stack(ref_conn)
    _undo_deletes_of_more_than(ref_conn, 0)
    with pytest.raises((RunFailed, psycopg.errors.SerializationFailure)):
        if how == "runner":
            purge(ref_db, batch_size=2)
        else:
            ref_conn.execute("CALL adhoc_gc.purge(batch_size => 2)")
    assert stack_exists(ref_conn, stack)
    status, retries = ref_conn.execute("SELECT status, batch_retries FROM adhoc_gc.runs").fetchone()
    assert status == "failed" and retries == 2 * MAX_RACE_RETRIES + 1, retries
