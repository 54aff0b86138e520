"""Live output: what a running run prints, kept as a bounded tail and written to its row
(runs.output, runs.output_at) at each heartbeat, so it can be read while the run runs.

Command jobs write their program's stdout and stderr here as it comes. Python jobs that
run in the worker (async functions, and sync ones in threads when WORKER_SYNC_PROCESSES=0)
write what they print and log: the worker's sys.stdout, sys.stderr and a root logging
handler send the text of whichever run is current (sundial.current_run()) to that run's
tail, and on to where it went before.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TextIO

from sundial.core.jsonb import printable

# The tail kept of a running run's output, in characters: the same bound as the output a
# finished run keeps (executor.MAX_OUTPUT_CHARS).
LIVE_OUTPUT_CHARS = 65536


class LiveOutput:
    """The last `limit` characters written, and whether they changed since the last take."""

    def __init__(self, limit: int = LIVE_OUTPUT_CHARS):
        self.limit = limit
        self._text = ""
        self._changed = False
        self._lock = threading.Lock()   # a sync job's thread writes too

    def write(self, text: str) -> None:
        if not text:
            return
        # A lone surrogate (a file name os.fsdecode kept) cannot be sent as UTF-8: the
        # heartbeat that writes the tail would fail for every run the worker holds.
        text = printable(text)
        with self._lock:
            self._text = (self._text + text)[-self.limit:]
            self._changed = True

    def take(self) -> str | None:
        """The tail if it changed since the last take, else None."""
        with self._lock:
            if not self._changed:
                return None
            self._changed = False
            return self._text.replace("\x00", "\ufffd")

    def text(self) -> str | None:
        """The whole tail (None: nothing written)."""
        with self._lock:
            return self._text.replace("\x00", "\ufffd") or None


def _current() -> LiveOutput | None:
    from sundial.worker.handlers import current

    ctx = current.get(None)
    return ctx.live if ctx is not None else None


class _Tee:
    """A text stream that copies what the current run writes to its live output."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        live = _current()
        if live is not None:
            live.write(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


class _RunLogHandler(logging.Handler):
    """Log records emitted while a run is current, into its live output."""

    def emit(self, record: logging.LogRecord) -> None:
        live = _current()
        if live is not None:
            try:
                live.write(self.format(record) + "\n")
            except Exception:
                self.handleError(record)


_installed = False


def capture_python_output() -> None:
    """Route prints and log records of in-process Python jobs to their runs (once)."""
    global _installed
    if _installed:
        return
    _installed = True
    sys.stdout = _Tee(sys.stdout)  # type: ignore[assignment]
    sys.stderr = _Tee(sys.stderr)  # type: ignore[assignment]
    handler = _RunLogHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
