"""What every long-running service does the same way: stop on SIGTERM/SIGINT, expose
its Prometheus counters when asked, report times in its healthcheck events."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable

import prometheus_client as prom


async def serve(run: Callable[[], Awaitable[int | None]], stop: Callable[[], None], *,
                metrics_port: int = 0) -> int:
    """Run a service until it returns; SIGTERM and SIGINT ask it to stop cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    if metrics_port:
        prom.start_http_server(metrics_port)
    return int(await run() or 0)


def iso_utc(timestamp: float | None) -> str | None:
    """A wall-clock timestamp as ISO 8601 UTC, for log events."""
    return None if timestamp is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
