"""How a purge shows its progress: a live line on a terminal, log lines elsewhere."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from typing import TextIO

from .purge import PurgeProgress

LOG_INTERVAL_SECONDS = 5.0  # between progress log lines when not on a terminal


class TerminalLine:
    """One self-rewriting line: batches, stacks deleted, rate, batch size, ETA, what it waits for."""

    def __init__(self, total: int | None, stream: TextIO | None = None):
        self.total = total
        self.stream = stream or sys.stderr

    def started(self, run_id: int) -> None:
        pass

    def __call__(self, p: PurgeProgress) -> None:
        rate = p.customers / p.elapsed if p.elapsed > 0 else 0.0
        line = f"run {p.run_id}, batch {p.batches}: {p.customers} stacks deleted, {rate:.0f}/s, batch size {p.batch_size}"
        if self.total:
            line += f", {min(100.0, 100.0 * p.customers / self.total):.0f}% of {self.total}"
            if rate > 0:
                line += f", ETA {max(0.0, (self.total - p.customers) / rate):.0f}s"
        if p.note:
            line += f" ({p.note})"
        self.stream.write("\r\x1b[2K" + line)
        self.stream.flush()

    def finished(self, p: PurgeProgress) -> None:
        self.stream.write("\n")
        self.stream.flush()


class LogLines:
    """Log lines for files, journald or a log shipper: at the start, at most one every
    LOG_INTERVAL_SECONDS while deleting (and whenever the run waits or retries), at the end.
    `json` writes one JSON object a line."""

    def __init__(self, log_format: str, stream: TextIO | None = None, interval: float = LOG_INTERVAL_SECONDS):
        self.json = log_format == "json"
        self.stream = stream or sys.stderr
        self.interval = interval
        self.last = 0.0
        self.last_note: str | None = None

    def _emit(self, event: str, message: str, level: str = "info", **fields) -> None:
        if self.json:
            record = {"ts": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
                      "level": level, "event": event, "message": message, **fields}
            self.stream.write(json.dumps(record) + "\n")
        else:
            stamp = dt.datetime.now().astimezone().isoformat(timespec="seconds")
            self.stream.write(f"{stamp} adhoc-gc {message}\n")
        self.stream.flush()

    def started(self, run_id: int) -> None:
        self.last = time.monotonic()
        self._emit("run_started", f"run {run_id} started", run_id=run_id)

    def __call__(self, p: PurgeProgress) -> None:
        now = time.monotonic()
        changed_note = p.note != self.last_note and p.note is not None
        self.last_note = p.note
        if not changed_note and now - self.last < self.interval:
            return
        self.last = now
        message = f"run {p.run_id}: {p.batches} batches, {p.customers} stacks deleted, batch size {p.batch_size}"
        if p.note:
            message += f" ({p.note})"
        self._emit("run_progress", message, **_fields(p))

    def finished(self, p: PurgeProgress) -> None:
        """The end of a run, also of one that failed, was skipped or refused (`error` says why)."""
        message = (f"run {p.run_id} {p.status}: {p.customers} customers, {p.locations} locations, "
                   f"{p.contacts} contacts deleted in {p.batches} batches ({p.elapsed:.1f}s)")
        if p.error:
            message += f"; {p.error}"
        level = {"succeeded": "info", "failed": "error"}.get(p.status, "warning")
        self._emit("run_finished", message, level, **_fields(p), error=p.error)


def _fields(p: PurgeProgress) -> dict:
    return {"run_id": p.run_id, "status": p.status, "batches": p.batches, "customers_deleted": p.customers,
            "locations_deleted": p.locations, "contacts_deleted": p.contacts, "batch_size": p.batch_size,
            "seconds": round(p.elapsed, 3), "throttled_seconds": p.throttled_seconds, "batch_retries": p.retries,
            "note": p.note}


def choose(quiet: bool, log_format: str | None, stream: TextIO | None = None):
    """None (quiet), a live line (a terminal, no --log-format), or log lines."""
    stream = stream or sys.stderr
    if quiet:
        return None
    if log_format is None and stream.isatty():
        return "terminal"
    return LogLines(log_format or "text", stream)
