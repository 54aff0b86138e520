"""APScheduler 4 as a peer: SQLAlchemy data store on asyncpg + the asyncpg event broker,
in a database of the bench's own.

    python -m bench.aps node --db URL --role both|scheduler|worker [--events FILE]

runs one APScheduler process until SIGTERM; with --events it writes, at exit, every
JobAcquired event's (acquired at, scheduled start) pair. `seed` (called in the harness)
adds schedules through APScheduler's own API before any node runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler import AsyncScheduler, JobAcquired, SchedulerRole
from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
from apscheduler.eventbrokers.asyncpg import AsyncpgEventBroker
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import create_async_engine

# Kept for a day: job_results rows are how the harness counts started and finished jobs.
RESULT_KEPT_S = 86400


def noop() -> None:
    """The trivial job."""


class _CallbackSafeTaskGroup:
    """APScheduler 4.0.0a6's asyncpg broker calls `start_soon` from asyncpg's NOTIFY
    callback, outside any task; anyio >= 4.1x refuses that (NoEventLoopError) and the
    event is lost. Such calls start a plain asyncio task instead; the rest is anyio's."""

    def __init__(self, group: object):
        self._group = group
        self._tasks: set[asyncio.Task] = set()

    def start_soon(self, func: Callable, *args: object, name: object = None) -> None:
        if asyncio.current_task() is not None:
            self._group.start_soon(func, *args, name=name)
            return
        task = asyncio.get_running_loop().create_task(func(*args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def __getattr__(self, name: str) -> object:
        return getattr(self._group, name)


class EventBroker(AsyncpgEventBroker):
    """The asyncpg event broker, unchanged but for the shim above."""

    async def start(self, exit_stack, logger) -> None:
        await super().start(exit_stack, logger)
        self._task_group = _CallbackSafeTaskGroup(self._task_group)


def scheduler(db_url: str, role: str = "both") -> AsyncScheduler:
    engine = create_async_engine(db_url.replace("postgresql://", "postgresql+asyncpg://", 1))
    return AsyncScheduler(SQLAlchemyDataStore(engine),
                          EventBroker.from_async_sqla_engine(engine),
                          role=SchedulerRole[role])


async def seed(db_url: str, count: int, trigger: Callable[[int], object], *,
               concurrency: int = 16) -> None:
    """Add `count` schedules of `noop`; `trigger(i)` gives schedule i's trigger."""
    async with scheduler(db_url, "scheduler") as s:
        window = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with window:
                await s.add_schedule(noop, trigger(i), id=f"s{i}",
                                     job_result_expiration_time=RESULT_KEPT_S)

        await asyncio.gather(*(one(i) for i in range(count)))


def due_at(at: datetime) -> Callable[[int], object]:
    return lambda _i: DateTrigger(at)


def every_second(first: datetime, count: int) -> Callable[[int], object]:
    return lambda i: IntervalTrigger(seconds=1, start_time=first + timedelta(seconds=i / count))


async def add_job(s: AsyncScheduler) -> object:
    return await s.add_job(noop, result_expiration_time=RESULT_KEPT_S)


async def node(db_url: str, role: str, events: bool) -> list[tuple[float, float]]:
    acquired: list[tuple[float, float]] = []

    def on_acquired(event: JobAcquired) -> None:
        if event.scheduled_start is not None:
            acquired.append((event.timestamp.timestamp(), event.scheduled_start.timestamp()))

    s = scheduler(db_url, role)
    async with s:
        if events:
            s.subscribe(on_acquired, JobAcquired)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(s.stop()))
        await s.run_until_stopped()
    return acquired


def utcnow() -> datetime:
    return datetime.now(UTC)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("node")
    p.add_argument("--db", required=True)
    p.add_argument("--role", default="both", choices=("both", "scheduler", "worker"))
    p.add_argument("--events")
    args = parser.parse_args()
    acquired = asyncio.run(node(args.db, args.role, bool(args.events)))
    if args.events:
        Path(args.events).write_text(json.dumps(acquired))


if __name__ == "__main__":
    main()
