"""Sundial: a database-driven job scheduler (PostgreSQL schedules, RabbitMQ runs).

What a handler author needs, importable from the top:

    from sundial import job, current_run, JobError, PayloadError

    @job("reports.daily")
    async def daily(day: str) -> dict:
        run = current_run()          # run_id, job, attempt, max_attempts
        ...

The services live in `sundial.core`, `sundial.scheduler`, `sundial.worker` and
`sundial.api`; the `sundial` command is `sundial.core.cli`. The names above are loaded
on first use, so importing a service does not import the worker's handler machinery.
"""

from __future__ import annotations

from importlib import import_module, metadata
from typing import TYPE_CHECKING, Any

try:
    __version__ = metadata.version("sundial")
except metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

# name -> the module that defines it
_EXPORTS = {
    "job": "sundial.worker.registry",
    "current_run": "sundial.worker.handlers",
    "RunContext": "sundial.worker.handlers",
    "JobError": "sundial.worker.handlers",
    "PayloadError": "sundial.worker.handlers",
}

__all__ = ["JobError", "PayloadError", "RunContext", "__version__", "current_run", "job"]

if TYPE_CHECKING:
    from sundial.worker.handlers import JobError, PayloadError, RunContext, current_run
    from sundial.worker.registry import job


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sundial' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
