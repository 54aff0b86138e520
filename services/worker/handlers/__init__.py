"""Built-in handlers. A handler is `async def run(payload: dict, ctx: RunContext) -> result`;
the result (JSON-serialisable) is stored in runs.result. Raising fails the attempt;
raising `PayloadError` fails the run at once (a retry would fail the same way).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sundial.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from sundial.worker.live import LiveOutput
    from sundial.worker.processes import SyncPool


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a handler (or a Python job, through `sundial.current_run()`) knows of its run."""

    settings: WorkerSettings
    run_id: int
    job_id: int
    job: str
    attempt: int
    max_attempts: int
    # The running attempt's live output (sundial.worker.live), written at each heartbeat.
    live: LiveOutput | None = None


Handler = Callable[[dict[str, Any], RunContext], Awaitable[Any]]

current: ContextVar[RunContext] = ContextVar("sundial_run")


def current_run() -> RunContext:
    """The run being executed: call it inside a job (in a sync job's process or thread too)."""
    try:
        return current.get()
    except LookupError:
        raise RuntimeError("current_run() is called outside a run: only a job that a "
                           "Sundial worker executes has one") from None


class JobError(Exception):
    """The attempt failed (and is retried while attempts remain): `output` (e.g. a
    command's stderr) is kept with the run, and `result` stored as its result."""

    retryable = True

    def __init__(self, message: str, *, output: str | None = None, result: Any = None):
        super().__init__(message)
        self.output = output
        self.result = result


class PayloadError(JobError):
    """The payload cannot work: the run fails without retrying."""

    retryable = False


def field(payload: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...,
          ) -> Any:
    """payload[name], checked against `kind`; PayloadError naming the field otherwise."""
    if name not in payload or payload[name] is None:
        if default is ...:
            raise PayloadError(f"payload.{name} is required")
        return default
    value = payload[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        names = " or ".join(k.__name__ for k in _as_tuple(kind))
        raise PayloadError(f"payload.{name} must be {names}, not {type(value).__name__}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


# Why a handler may be missing from a worker, for the run's error.
HINTS = {
    "command": "command jobs are off by default; start a worker with WORKER_ALLOW_COMMANDS=true",
    "python": "start a worker with WORKER_IMPORTS naming the module of the @job function",
}


def available(settings: WorkerSettings, sync: SyncPool | None = None) -> dict[str, Handler]:
    """The handlers this worker can run, by name (what it advertises in `workers`); sync
    Python jobs run in `sync`'s processes, or in threads without a pool."""
    from sundial.worker import registry
    from sundial.worker.handlers import command, http, noop, python, sleep

    handlers: dict[str, Handler] = {"noop": noop.run, "sleep": sleep.run, "http": http.run}
    if settings.allow_commands:
        handlers["command"] = command.run
    if registry.names():
        handlers["python"] = python.handler(sync)
    return handlers
