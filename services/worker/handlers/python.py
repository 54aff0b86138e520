"""`python`: a function registered with `@job("name")` in a WORKER_IMPORTS module.

Payload: {"function": "reports.daily", "args": [...], "kwargs": {...}}; `function`
defaults to the job's name. The function's return value is the result. An async function
runs on the worker's event loop. A sync one runs in a child process of the worker's pool
(sundial.worker.processes), which a timeout, a cancel request or a shutdown past its grace
kills; with WORKER_SYNC_PROCESSES=0 it runs in a thread instead, which nothing can stop.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sundial.worker import registry
from sundial.worker.handlers import Handler, PayloadError, RunContext, field

if TYPE_CHECKING:
    from sundial.worker.processes import SyncPool


def handler(sync: SyncPool | None) -> Handler:
    """The `python` handler: sync functions run in `sync`'s processes, or in threads
    without a pool."""

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
        if sync is None:
            # to_thread copies the context: sundial.current_run() works in the thread too.
            return await asyncio.to_thread(fn, *args, **kwargs)
        return await sync.call(name, args, kwargs, ctx)

    return run
