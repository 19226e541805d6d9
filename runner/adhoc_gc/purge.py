"""The purge loop: one purge_batch call per transaction, recorded in the runs table.

All deciding and deleting happens in SQL (purge_batch); this loop only keeps the keyset
position, the limits (batches, runtime) and the pause between batches.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import psycopg

from .db import one_line
from .errors import ConfigError, PurgeRefused, PurgeSkipped, RunFailed, Terminated
from .mapping import Mapping


@dataclasses.dataclass(frozen=True)
class PurgeOptions:
    batch_size: int = 500
    max_batches: int | None = None
    max_runtime: float | None = None  # seconds
    sleep: float = 0.0  # seconds between batches
    archive: bool = True
    trigger: str = "runner"
    force: bool = False  # pass the [guard] caps
    target_batch_seconds: float | None = None  # adapt the batch size (batch_size is the ceiling)


@dataclasses.dataclass
class PurgeProgress:
    run_id: int
    batches: int = 0
    examined: int = 0
    customers: int = 0
    locations: int = 0
    contacts: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    status: str = "running"
    error: str | None = None
    batch_seconds: list[float] = dataclasses.field(default_factory=list)  # each committed batch
    batch_size: int = 0  # the size the next batch will have
    retries: int = 0  # batches taken again: smaller after a timeout, or after a concurrent change undid them
    throttled_seconds: float = 0.0  # paused for replica lag
    note: str | None = None  # what the run is doing besides deleting (waiting, retrying)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def batch_stats(self) -> dict[str, float | None]:
        """p50, p95 and max of the batch durations (seconds), nearest-rank."""
        ordered = sorted(self.batch_seconds)
        if not ordered:
            return {"p50": None, "p95": None, "max": None}

        def rank(q: float) -> float:
            return round(ordered[max(0, math.ceil(len(ordered) * q) - 1)], 4)

        return {"p50": rank(0.50), "p95": rank(0.95), "max": round(ordered[-1], 4)}


def check_deployed(conn: psycopg.Connection, mapping: Mapping, queries: dict[str, str]) -> None:
    """Refuse to purge with objects rendered from another mapping (or not deployed at all)."""
    try:
        with conn.transaction():
            row = conn.execute(queries["deployed_mapping"]).fetchone()
    except psycopg.errors.UndefinedFunction:
        row = None
    except psycopg.errors.InvalidSchemaName:
        row = None
    if row is None:
        raise ConfigError(f"adhoc-gc is not deployed in schema {mapping.schema!r}: run `adhoc-gc deploy` first")
    if row[0] != mapping.fingerprint():
        raise ConfigError(
            f"the objects deployed in schema {mapping.schema!r} were rendered from another mapping "
            f"(fingerprint {row[0]}, this mapping {mapping.fingerprint()}): run `adhoc-gc deploy` to apply it"
        )


def run_purge(
    conn: psycopg.Connection,
    mapping: Mapping,
    queries: dict[str, str],
    options: PurgeOptions,
    on_batch: Callable[[PurgeProgress], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> PurgeProgress:
    """Purge in batches until no candidate is left or a limit is reached."""
    if options.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    check_deployed(conn, mapping, queries)
    with conn.transaction():
        if conn.execute(queries["in_recovery"]).fetchone()[0]:
            raise PurgeSkipped("this server is a standby (in recovery): purge skipped; run it on the primary",
                               run_status="skipped")
        # Session-level: held across the per-batch transactions until released below or
        # until this connection ends.
        locked = conn.execute(queries["try_purge_lock"]).fetchone()[0]
        if not locked:
            skipped_id = _record_unstarted(conn, queries, options, "skipped", "another purge is running")
    if not locked:
        raise PurgeSkipped(f"another purge is running: this one is skipped (recorded as run {skipped_id})",
                           run_status="skipped", run_id=skipped_id)
    try:
        with conn.transaction():
            # [retention] first: every purge that holds the lock prunes the package's history,
            # whether it then succeeds, fails or is refused (the procedure does the same).
            conn.execute(queries["apply_retention"])
        with conn.transaction():
            unmapped = conn.execute(queries["unmapped_foreign_keys_deployed"]).fetchall()
            if unmapped:
                reason = describe_unmapped_foreign_keys(unmapped)
                refused_id = _record_unstarted(conn, queries, options, "refused", reason)
        if unmapped:
            raise ConfigError(f"purge refused (recorded as run {refused_id}): {reason}",
                              run_status="refused", run_id=refused_id)
        with conn.transaction():
            refusal = conn.execute(queries["guard_refusal"], {"force": options.force}).fetchone()[0]
            if refusal:
                refused_id = _record_unstarted(conn, queries, options, "refused", refusal)
        if refusal:
            raise PurgeRefused(f"purge refused (recorded as run {refused_id}): {refusal}",
                               run_status="refused", run_id=refused_id)
        return _run_locked(conn, queries, options, on_batch, mapping, on_start)
    finally:
        _release_lock(conn, queries)


def _record_unstarted(conn: psycopg.Connection, queries: dict[str, str], options: PurgeOptions, status: str,
                      reason: str) -> int:
    return conn.execute(queries["record_unstarted_run"], {
        "trigger": options.trigger, "batch_size": options.batch_size, "status": status, "reason": reason,
    }).fetchone()[0]


def describe_unmapped_foreign_keys(rows) -> str:
    """One line naming each unmapped foreign key and the mapping entry that would fix it."""
    parts = []
    for name, schema, table, columns, references, target_schema, target_table, on_delete in rows:
        where = f'foreign key "{name}" on {schema}.{table} ({", ".join(columns)}) -> {target_schema}.{target_table} ' \
                f"(ON DELETE {on_delete})"
        if len(columns) != 1:
            parts.append(f"{where}: a composite key adhoc-gc cannot map; drop it or point it elsewhere")
            continue
        entry = f'table = "{schema}.{table}", column = "{columns[0]}", references = "{references}"'
        parts.append(f"{where} is neither a blocker nor owned: add [[owned]] {entry} (its rows are deleted with "
                     f"the stack) or [[blockers]] {entry} (its rows keep the stack)")
    return "; ".join(parts)


def _run_locked(
    conn: psycopg.Connection,
    queries: dict[str, str],
    options: PurgeOptions,
    on_batch: Callable[[PurgeProgress], None] | None,
    mapping: Mapping,
    on_start: Callable[[int], None] | None = None,
) -> PurgeProgress:
    with conn.transaction():
        run_id = conn.execute(queries["start_run"], {
            "trigger": options.trigger,
            "batch_size": options.batch_size,
            "max_batches": options.max_batches,
            "max_runtime": None if options.max_runtime is None else f"{options.max_runtime} seconds",
            "archive": options.archive,
        }).fetchone()[0]
    progress = PurgeProgress(run_id=run_id)
    if on_start:
        on_start(run_id)
    deadline = None if options.max_runtime is None else progress.started + options.max_runtime
    sizer = BatchSizer(options.batch_size, options.target_batch_seconds)
    progress.batch_size = sizer.size
    after_key: str | None = None
    races = 0  # the same batch undone by concurrent changes, in a row
    try:
        if options.target_batch_seconds is not None:
            _note(conn, queries, progress, options)
        while True:
            if options.max_batches is not None and progress.batches >= options.max_batches:
                break
            if not _wait_for_replicas(conn, queries, mapping, progress, options, deadline, on_batch):
                break  # max_runtime ran out while waiting
            if deadline is not None and time.monotonic() >= deadline:
                break
            batch_started = time.monotonic()
            try:
                with conn.transaction():  # one transaction per batch: its deletes and its counts
                    conn.execute(queries["batch_isolation"])
                    conn.execute(queries["batch_statement_timeout"])
                    row = conn.execute(queries["purge_batch"], {
                        "run_id": run_id,
                        "after_key": after_key,
                        "batch_size": sizer.size,
                        "archive": options.archive,
                    }).fetchone()
            except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled) as exc:
                # A lock or statement timeout undid the batch: try it again, half as large.
                if not sizer.halve():
                    raise
                progress.retries += 1
                progress.batch_size = sizer.size
                progress.note = f"batch timed out ({one_line(exc)}); retrying with {sizer.size}"
                _note(conn, queries, progress, options)
                continue
            except (psycopg.errors.SerializationFailure, psycopg.errors.ForeignKeyViolation) as exc:
                # The application changed a row of the batch after its snapshot (a case
                # attached, a login): the batch was undone; a new snapshot sees the change.
                races += 1
                if races > MAX_RACE_RETRIES:
                    # The application keeps changing this batch's rows: a smaller batch
                    # holds fewer of them, and gets its own tries.
                    if not sizer.halve():
                        raise
                    races = 0
                    progress.batch_size = sizer.size
                progress.retries += 1
                progress.note = f"batch undone by a concurrent change ({one_line(exc)}); taking it again"
                _note(conn, queries, progress, options)
                continue
            races = 0
            next_after_key, done, examined, customers, locations, contacts = row
            if done:
                break
            seconds = time.monotonic() - batch_started
            progress.batch_seconds.append(seconds)
            full = examined >= sizer.size  # a batch short of its size reached the last candidate
            sizer.observe(seconds, full=full)
            progress.batch_size = sizer.size
            progress.note = None
            after_key = next_after_key
            progress.batches += 1
            progress.examined += examined
            progress.customers += customers
            progress.locations += locations
            progress.contacts += contacts
            if on_batch:
                on_batch(progress)
            more = full and (options.max_batches is None or progress.batches < options.max_batches)
            if options.sleep and more:
                # Only between batches, and never past --max-runtime.
                time.sleep(options.sleep if deadline is None else max(0.0, min(options.sleep,
                                                                               deadline - time.monotonic())))
    except KeyboardInterrupt as exc:
        _finish(conn, queries, progress, "failed", str(exc) if isinstance(exc, Terminated) else "interrupted")
        exc.run_status, exc.run_id, exc.progress = "failed", run_id, progress
        raise
    except ConfigError as exc:
        _finish(conn, queries, progress, "failed", str(exc))
        exc.run_status, exc.run_id, exc.progress = "failed", run_id, progress
        raise
    except psycopg.Error as exc:
        _finish(conn, queries, progress, "failed", one_line(exc))
        raise RunFailed(f"purge run {run_id} failed after {progress.batches} batches: {one_line(exc)}",
                        run_status="failed", run_id=run_id, progress=progress) from None
    _finish(conn, queries, progress, "succeeded", None)
    return progress


class BatchSizer:
    """The batch size: fixed, or adapted so that a batch takes about `target` seconds.

    It grows at most 1.5x per batch and shrinks as far as the last batch says, never above
    the ceiling (--batch-size) nor below 1; a timed-out batch halves it. Only full batches
    teach it anything: a short last batch says nothing about the rate.
    """

    START = 100
    GROWTH = 1.5

    def __init__(self, ceiling: int, target: float | None):
        self.ceiling = ceiling
        self.target = target
        self.size = ceiling if target is None else min(ceiling, self.START)

    def observe(self, seconds: float, full: bool) -> None:
        if self.target is None or not full:
            return
        wanted = self.size * self.target / max(seconds, 1e-3)
        self.size = max(1, min(self.ceiling, int(min(wanted, self.size * self.GROWTH))))

    def halve(self) -> bool:
        """Halve for a retry; False when it is already 1 (nothing left to try)."""
        if self.size <= 1:
            return False
        self.size = max(1, self.size // 2)
        return True


def _wait_for_replicas(conn, queries, mapping: Mapping, progress: PurgeProgress, options: PurgeOptions,
                       deadline: float | None, on_batch) -> bool:
    """Pause while a standby's replay lag exceeds [throttle] max_replica_lag. False when
    max_runtime ran out while waiting."""
    if mapping.throttle.max_replica_lag is None:
        return True
    waited_before = progress.throttled_seconds
    while True:
        with conn.transaction():
            lag, too_far = conn.execute(queries["replica_lag"]).fetchone()
        if lag is None:
            raise ConfigError("[throttle] max_replica_lag needs to see standby lag: GRANT pg_monitor TO the role "
                              "that owns the adhoc-gc functions ([roles].owner, or the deploying role)")
        if not too_far:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        progress.note = f"waiting: replica lag {lag:.1f}s > {mapping.throttle.max_replica_lag}"
        if on_batch:
            on_batch(progress)
        time.sleep(THROTTLE_POLL_SECONDS)
        progress.throttled_seconds += THROTTLE_POLL_SECONDS
    if progress.throttled_seconds != waited_before:
        progress.note = None
        _note(conn, queries, progress, options)
    return deadline is None or time.monotonic() < deadline


def fetch_runs(conn: psycopg.Connection, queries: dict[str, str], limit: int) -> list[dict]:
    """The last `limit` runs, newest first, each as a dict of the runs table's columns."""
    cursor = conn.execute(queries["list_runs"], {"limit": limit})
    names = [column.name for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


THROTTLE_POLL_SECONDS = 1.0
# How often in a row one batch may be undone by concurrent changes before it is halved: each
# retry's snapshot sees the change that undid the last one. A batch of one undone this often
# fails the run: something keeps rewriting that stack.
MAX_RACE_RETRIES = 5


def _note(conn, queries, progress: PurgeProgress, options: PurgeOptions) -> None:
    with conn.transaction():
        conn.execute(queries["note_run"], {
            "run_id": progress.run_id, "target_batch_seconds": options.target_batch_seconds,
            "batch_retries": progress.retries, "throttled_seconds": progress.throttled_seconds,
        })


def _release_lock(conn: psycopg.Connection, queries: dict[str, str]) -> None:
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        with conn.transaction():
            conn.execute(queries["release_purge_lock"])
    except psycopg.Error:
        pass  # the session is gone, and its lock with it


def _finish(conn: psycopg.Connection, queries: dict[str, str], progress: PurgeProgress, status: str,
            error: str | None) -> None:
    progress.status, progress.error = status, error
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        with conn.transaction():
            conn.execute(queries["finish_run"], {"run_id": progress.run_id, "status": status, "error": error})
    except psycopg.Error:
        # The connection itself is gone: the run stays 'running' until the next run
        # notices its backend is gone.
        pass
