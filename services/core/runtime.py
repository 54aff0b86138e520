"""What every long-running service does the same way: stop on SIGTERM/SIGINT, expose
its Prometheus counters when asked, report times in its healthcheck events."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable

import prometheus_client as prom

from sundial.core.cli import stop_requested

_started = False


def started() -> None:
    """The service is up. Before this, SIGTERM abandons start-up (waiting for PostgreSQL
    or RabbitMQ, which may take forever) and exits 0; after it, it asks the service to
    stop cleanly."""
    global _started
    _started = True


async def serve(run: Callable[[], Awaitable[int | None]], stop: Callable[[], None], *,
                metrics_port: int = 0, announces_start: bool = False) -> int:
    """Run a service until it returns; SIGTERM and SIGINT ask it to stop cleanly.
    `announces_start`: the service calls `started()` once it is up; until then a signal
    cancels it instead."""
    global _started
    loop = asyncio.get_running_loop()
    _started = not announces_start
    task = asyncio.ensure_future(run())

    def on_signal() -> None:
        stop()
        if not _started:
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    if stop_requested():
        on_signal()   # SIGTERM came while the process was still loading
    if metrics_port:
        prom.start_http_server(metrics_port)
    try:
        return int(await task or 0)
    except asyncio.CancelledError:
        if _started or not task.cancelled():
            raise
        return 0


def iso_utc(timestamp: float | None) -> str | None:
    """A wall-clock timestamp as ISO 8601 UTC, for log events."""
    return None if timestamp is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
