"""Publishing the tick's runs in the background, and keeping count of what went out.

The tick hands each committed batch over and goes on: the batch is published (with
confirms, then `published_at`) in a task of its own, up to PUBLISH_IN_FLIGHT at a time,
each bounded by the publisher's confirm deadline. With that many unconfirmed (a broker
that lags, stalls or blocks), or while the relay backs off after a failure, a batch is
left to the relay instead: a tick never waits for the broker.

Fresh batches go first: the relay gives way to them between its batches (`give_way`),
so a slot falling due while a large outbox drains waits behind at most one short relay
batch, not behind the outbox.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import prometheus_client as prom

from sundial.core.broker import Publisher
from sundial.core.db import CONNECTION_ERRORS
from sundial.core.logging import get_logger
from sundial.core.outbox import PublishResult, publish_runs
from sundial.core.sql import q

log = get_logger("scheduler")

DISPATCHED = prom.Counter("sundial_scheduler_runs_dispatched_total", "Runs published and confirmed")
PUBLISH_FAILURES = prom.Counter("sundial_scheduler_publish_failures_total", "Runs not confirmed")

PUBLISH_IN_FLIGHT = 16
# On shutdown, how long batches being published may take to be confirmed and marked.
PUBLISH_DRAIN_S = 10.0
# Fresh batches count as flowing for this long after one was handed over: meanwhile the
# relay publishes short batches (relay.SHARED_BATCH).
FRESH_FLOWING_S = 1.0


@dataclass
class Counters:
    passes: int = 0
    created: int = 0
    dispatched: int = 0
    failures: int = 0
    last_check: float | None = None        # wall time of the last completed pass
    last_execution: float | None = None    # wall time runs were last created


class Publishing:
    def __init__(self, pool: asyncpg.Pool, publisher: Publisher, counters: Counters, *,
                 on_failure: Callable[[], None]):
        self._pool = pool
        self._publisher = publisher
        self._counters = counters
        self._on_failure = on_failure   # runs were handed back: the relay should look
        self._tasks: set[asyncio.Task] = set()
        self._handed_over_at = float("-inf")
        # Until then the relay backs off after a failure, and fresh batches wait for it.
        self.retry_at = 0.0
        # Publish failures per schedule, and the error, not yet recorded on the schedules.
        self.pending_failures: tuple[dict[int, int], str] | None = None

    def may_publish(self) -> bool:
        return time.monotonic() >= self.retry_at

    async def hand_over(self, rows: list[dict], run_schedules: dict[int, int]) -> None:
        """Publish a committed batch in the background, or leave it to the relay."""
        if not rows:
            return
        self._handed_over_at = time.monotonic()
        if len(self._tasks) >= PUBLISH_IN_FLIGHT or not self.may_publish():
            await self._pool.execute(q("release_publish_lease"), [r["run_id"] for r in rows])
            self._on_failure()
            return
        task = asyncio.create_task(self._publish(rows, run_schedules), name="publish")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def give_way(self) -> bool:
        """For the relay, between its batches: wait until the fresh batches in flight now
        are confirmed and marked (not those handed over meanwhile, so the relay is never
        starved); True while fresh batches flow (one was handed over within
        FRESH_FLOWING_S)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        return time.monotonic() - self._handed_over_at < FRESH_FLOWING_S

    async def _publish(self, rows: list[dict], run_schedules: dict[int, int]) -> None:
        try:
            # The tick leased none of a paused queue's runs (record_runs_and_advance).
            self.account(await publish_runs(self._pool, self._publisher, rows,
                                            paused=()), run_schedules)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            # Published or not, the runs keep their lease until it runs out; then the
            # relay publishes them (again: a worker claims a run once).
            self._on_failure()
            log.error("scheduler.publish_unrecorded", runs=len(rows), error=repr(exc))
        except Exception:
            # A bug, not an outage: said loudly (a background task's error is otherwise
            # only seen when it is collected); the relay publishes the runs later.
            self._on_failure()
            log.exception("scheduler.publish_task_failed", runs=len(rows))

    def account(self, result: PublishResult, run_schedules: dict[int, int]) -> None:
        self._counters.dispatched += len(result.published)
        DISPATCHED.inc(len(result.published))
        if not result.failed:
            return
        self._counters.failures += len(result.failed)
        PUBLISH_FAILURES.inc(len(result.failed))
        error = repr(result.first_error)
        log.error("scheduler.publish_failed", runs=len(result.failed), error=error)
        self._on_failure()
        per_schedule: dict[int, int] = {}
        for run_id in result.failed:
            sid = run_schedules.get(run_id)
            if sid is not None:
                per_schedule[sid] = per_schedule.get(sid, 0) + 1
        if per_schedule:
            self.add_failures(per_schedule, error)

    def add_failures(self, per_schedule: dict[int, int], error: str) -> None:
        """Failures add up until the status loop records them (several background batches
        may fail first, and a recording that fails gives its failures back)."""
        earlier = self.pending_failures[0] if self.pending_failures else {}
        total = dict(earlier)
        for sid, n in per_schedule.items():
            total[sid] = total.get(sid, 0) + n
        self.pending_failures = (total, error)

    async def drain(self) -> None:
        """Let the batches in flight be confirmed and marked, for up to PUBLISH_DRAIN_S."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=PUBLISH_DRAIN_S)
        if late:
            # Their leases run out and the relay of any instance publishes them.
            log.warning("scheduler.publish_unfinished", batches=len(late))
            for task in late:
                task.cancel()
