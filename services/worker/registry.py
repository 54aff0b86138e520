"""The Python job registry: user functions registered with `@job("name")`.

    from sundial.worker import job

    @job("reports.daily")
    async def daily(payload: dict) -> dict: ...

Modules named in WORKER_IMPORTS are imported at start-up, which runs the decorators.
Given schedules or job fields (`@job("reports.daily", cron="0 2 * * *", queue=...)`),
the decorator also declares the job for `sundial sync` (sundial.core.declarations):
a `python` job of that name that calls the function, with `args` and `kwargs`.
A sync function runs in a child process (sundial.worker.processes) so it never blocks
the worker's event loop, and a timeout can stop it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, TypeVar

from sundial.core import declarations

F = TypeVar("F", bound=Callable[..., Any])

_jobs: dict[str, Callable[..., Any]] = {}


def job(name: str, *, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None,
        **options: Any) -> Callable[[F], F]:
    """Register the decorated function as the Python job `name`.

    With schedules or job fields (the options of sundial.declare: cron, every, timezone,
    schedules, queue, timeout_seconds, ...) or `args`/`kwargs`, also declare the job for
    `sundial sync`. Without, the function only runs where a job's payload names it.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("@job needs a name, e.g. @job('reports.daily')")
    declared = args is not None or kwargs is not None or any(v is not None for v in options.values())
    payload: dict[str, Any] = {"function": name}
    if args is not None:
        payload["args"] = args
    if kwargs is not None:
        payload["kwargs"] = kwargs
    # Checked now, at import: a bad declaration stops the import with one clear line.
    declaration = (declarations.build(name, handler="python", payload=payload, where="?", **options)
                   if declared else None)

    def register(fn: F) -> F:
        existing = _jobs.get(name)
        if existing is not None and existing is not fn:
            raise ValueError(f"python job {name!r} is registered twice "
                             f"({_describe(existing)} and {_describe(fn)})")
        _jobs[name] = fn
        if declaration is not None:
            declarations.register(replace(declaration, where=_describe(fn)))
        return fn

    return register


def _describe(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def lookup(name: str) -> Callable[..., Any]:
    try:
        return _jobs[name]
    except KeyError:
        known = ", ".join(sorted(_jobs)) or "none"
        raise LookupError(f"no python job named {name!r} on this worker (registered: {known}; "
                          "add its module to WORKER_IMPORTS)") from None


def names() -> list[str]:
    return sorted(_jobs)


def is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn)


def import_modules(modules: Iterable[str]) -> None:
    """Import the WORKER_IMPORTS modules; a missing one stops the worker with one line."""
    declarations.import_modules(modules, "WORKER_IMPORTS")
