"""The Python job registry: user functions registered with `@job("name")`.

    from sundial.worker import job

    @job("reports.daily")
    async def daily(payload: dict) -> dict: ...

Modules named in WORKER_IMPORTS are imported at start-up, which runs the decorators.
A sync function runs in a child process (sundial.worker.processes) so it never blocks
the worker's event loop, and a timeout can stop it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sundial.core.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

_jobs: dict[str, Callable[..., Any]] = {}


def job(name: str) -> Callable[[F], F]:
    """Register the decorated function as the Python job `name`."""
    if not isinstance(name, str) or not name:
        raise ValueError("@job needs a name, e.g. @job('reports.daily')")

    def register(fn: F) -> F:
        existing = _jobs.get(name)
        if existing is not None and existing is not fn:
            raise ValueError(f"python job {name!r} is registered twice "
                             f"({_describe(existing)} and {_describe(fn)})")
        _jobs[name] = fn
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
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"WORKER_IMPORTS={module!r}: cannot import it ({exc})") from None
