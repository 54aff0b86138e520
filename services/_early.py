"""SIGTERM that arrives while a service is still loading: noted here, from the first
moment the process can, and honoured by sundial.core.runtime.serve once the service
starts (it exits 0). This module imports nothing else: the `sundial` command installs
the note before any import that takes time (asyncio, the settings, the drivers)."""

from __future__ import annotations

import signal
from typing import Any

requested = False
_before: Any = signal.SIG_DFL  # the handler the first install replaced


def _note(_signum: int, _frame: object) -> None:
    global requested
    requested = True


def install() -> Any:
    """Note SIGTERM from now on; returns the handler that was there before the first
    install (to give the signal back to, for a command that is not a service)."""
    global _before
    replaced = signal.signal(signal.SIGTERM, _note)
    if replaced is not _note:
        _before = replaced
    return _before
