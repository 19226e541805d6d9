"""stdout and stderr that a command's work never fails on.

A reader that goes away (`adhoc-gc runs | head -1`), a closed descriptor (`2>&-`) or a full
disk must not turn a purge that deleted and recorded its batches into an internal error, nor
stop one halfway with its run left `running`. The guard takes every write: what cannot be
written is dropped, and the first failure is kept for `main` to judge once the command has
ended. Characters the stream's encoding lacks (PYTHONIOENCODING=ascii, a C locale) are
replaced, not raised.
"""

from __future__ import annotations

import errno
import os
from typing import TextIO


class GuardedStream:
    def __init__(self, inner: TextIO | None):
        self.inner = inner
        self.failure: OSError | None = None
        self.lost = False  # something was written while the stream was closed from the start
        if inner is not None and hasattr(inner, "reconfigure"):
            try:
                inner.reconfigure(errors="replace")
            except (ValueError, OSError):
                pass

    @property
    def broken_pipe(self) -> bool:
        return isinstance(self.failure, BrokenPipeError)

    def write(self, text: str) -> int:
        if self.inner is None:
            self.lost = self.lost or bool(text)
        elif self.failure is None:
            try:
                self.inner.write(text)
            except OSError as exc:
                self._failed(exc)
        return len(text)

    def flush(self) -> None:
        if self.inner is not None and self.failure is None:
            try:
                self.inner.flush()
            except OSError as exc:
                self._failed(exc)

    def isatty(self) -> bool:
        try:
            return self.inner is not None and self.failure is None and self.inner.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        if self.inner is None:
            raise OSError(errno.EBADF, "closed")
        return self.inner.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.inner, "encoding", None) or "utf-8"

    def _failed(self, exc: OSError) -> None:
        self.failure = exc
        # What is still buffered would fail again when Python flushes at exit, with a
        # message of its own: point the descriptor at /dev/null instead.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.inner.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
