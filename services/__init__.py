"""Sundial: a database-driven job scheduler (PostgreSQL schedules, RabbitMQ runs).

What a handler author needs, importable from the top:

    from sundial import job, declare, current_run, JobError, PayloadError

    @job("reports.daily", cron="0 2 * * *", timezone="Europe/Paris")  # for `sundial sync`
    async def daily(day: str) -> dict:
        run = current_run()          # run_id, job, attempt, max_attempts
        ...

The services live in `sundial.core`, `sundial.scheduler`, `sundial.worker` and
`sundial.api`; the `sundial` command is `sundial.core.cli`. The names above are loaded
on first use, so importing a service does not import the worker's handler machinery.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# name -> the module that defines it
_EXPORTS = {
    "job": "sundial.worker.registry",
    "declare": "sundial.core.declarations",
    "current_run": "sundial.worker.handlers",
    "RunContext": "sundial.worker.handlers",
    "JobError": "sundial.worker.handlers",
    "PayloadError": "sundial.worker.handlers",
}

__all__ = ["JobError", "PayloadError", "RunContext", "__version__", "current_run", "declare", "job"]

if TYPE_CHECKING:
    from sundial.core.declarations import declare
    from sundial.worker.handlers import JobError, PayloadError, RunContext, current_run
    from sundial.worker.registry import job


def _version() -> str:
    # importlib.metadata costs more than the rest of `import sundial` together (hundreds of
    # ms on a busy host): looked up on first use, so that the services install their
    # SIGTERM handler as early as they can.
    from importlib import metadata

    try:
        return metadata.version("sundial")
    except metadata.PackageNotFoundError:  # a source tree that is not installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sundial' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
