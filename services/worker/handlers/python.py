"""`python`: a function registered with `@job("name")` in a WORKER_IMPORTS module.

Payload: {"function": "reports.daily", "args": [...], "kwargs": {...}}; `function`
defaults to the job's name. The function's return value is the result. A sync function
runs in a thread (it cannot be interrupted: on timeout the run ends `timed_out` but the
thread finishes on its own).
"""

from __future__ import annotations

import asyncio
from typing import Any

from sundial.worker import registry
from sundial.worker.handlers import PayloadError, RunContext, field


async def run(payload: dict[str, Any], ctx: RunContext) -> Any:
    name = field(payload, "function", str, ctx.job)
    args = field(payload, "args", list, [])
    kwargs = field(payload, "kwargs", dict, {})
    try:
        fn = registry.lookup(name)
    except LookupError as exc:
        raise PayloadError(str(exc)) from None
    if registry.is_async(fn):
        return await fn(*args, **kwargs)
    # to_thread copies the context: sundial.current_run() works in the thread too.
    return await asyncio.to_thread(fn, *args, **kwargs)
