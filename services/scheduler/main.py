"""The scheduler daemon: tick, publish, relay, reap — then sleep until the next slot.

One pass (`run_once`) ticks batch after batch until nothing more is due, hands the new
runs to publishing, starts the relay when runs are pending, and every few seconds reaps
stale runs. Publishing (with confirms, then `published_at`) and the relay run in tasks
of their own, up to PUBLISH_IN_FLIGHT at a time, each bounded by the publisher's confirm
deadline: a pass never waits for the broker (with that many unconfirmed, a new batch is
left to the relay), so slots keep being recorded while the broker stalls or blocks.
Between passes the loop sleeps until the earliest next slot (capped by the poll
interval) and wakes at once on NOTIFY. A failure is logged and retried with backoff;
the process never needs a restart to recover from a database or broker restart.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from contextlib import suppress
from dataclasses import dataclass

import asyncpg
import prometheus_client as prom

from sundial.core import health, runtime
from sundial.core.broker import CONFIRM_TIMEOUT_S, Publisher
from sundial.core.db import CONNECTION_ERRORS, connect, create_pool
from sundial.core.logging import get_logger
from sundial.core.migrate import wait_until_migrated
from sundial.core.outbox import WAKEUP_CHANNEL, PublishResult, publish_runs
from sundial.core.runtime import iso_utc
from sundial.core.settings import Settings, instance_id
from sundial.core.sql import q
from sundial.core.zones import TZDATA_VERSION
from sundial.scheduler.reaper import delete_old_runs, reap
from sundial.scheduler.relay import relay
from sundial.scheduler.tick import tick

log = get_logger("scheduler")

TICKS = prom.Counter("sundial_scheduler_passes_total", "Scheduler passes")
DISPATCHED = prom.Counter("sundial_scheduler_runs_dispatched_total", "Runs published and confirmed")
CREATED = prom.Counter("sundial_scheduler_runs_created_total", "Runs recorded for due slots")
PUBLISH_FAILURES = prom.Counter("sundial_scheduler_publish_failures_total", "Runs not confirmed")
PASS_SECONDS = prom.Histogram("sundial_scheduler_pass_seconds", "Duration of a scheduler pass")

REAP_EVERY_S = 5.0
RETENTION_EVERY_S = 60.0
STATUS_EVERY_S = 1.0
PUBLISH_IN_FLIGHT = 16
# On shutdown, how long batches being published may take to be confirmed and marked.
PUBLISH_DRAIN_S = 10.0
SWEEP_EVERY_S = 1.0
# When something is due but another instance holds it, look again soon, not at once.
BUSY_RETRY_S = 0.05
# When slots fell due while a pass was claiming others, the next pass starts this soon.
DUE_DURING_PASS_S = 0.003


@dataclass
class Counters:
    passes: int = 0
    created: int = 0
    dispatched: int = 0
    failures: int = 0
    last_check: float | None = None        # wall time of the last completed pass
    last_execution: float | None = None    # wall time runs were last created


class Scheduler:
    def __init__(self, settings: Settings, *, name: str | None = None):
        self.settings = settings
        self.name = name or instance_id("scheduler")
        self.counters = Counters()
        self.stopping = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        # A confirm must come well before the publish lease runs out, or another
        # instance's relay would publish the runs again meanwhile.
        self._publisher = Publisher(settings.rabbitmq_url, settings.delivery_limit,
                                    confirm_timeout_s=min(CONFIRM_TIMEOUT_S,
                                                          settings.publish_lease_s / 2))
        self._publish_retry_at = 0.0
        self._publish_backoff_s = 0.0
        self._last_reap = 0.0
        self._last_retention = float("-inf")   # from start-up on
        self._retaining: asyncio.Task | None = None
        self._last_status = 0.0
        self._rng = random.Random()
        # Reasons for a pass to look beyond due schedules: the outbox has runs to relay
        # (seen by the sleep-time query, announced by NOTIFY, or left by a failed publish),
        # "trigger now" may be pending. Both are also checked once a second regardless.
        self._relay_due = True
        self._trigger_due = True
        self._last_sweep = 0.0
        # Publish failures per schedule, recorded on the schedules after the pass.
        self._pending_failures: tuple[dict[int, int], str] | None = None
        self._publishing: set[asyncio.Task] = set()   # publish and relay tasks
        self._relaying: asyncio.Task | None = None

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self._pool = await create_pool(s.database_url, min_size=s.db_pool_min,
                                       max_size=s.db_pool_max)
        await wait_until_migrated(self._pool)
        async with self._pool.acquire() as conn:
            await conn.execute(q("register_instance"), self.name, socket.gethostname(),
                               os.getpid(), TZDATA_VERSION)
        await self._ensure_listener()
        log.info("scheduler.started", instance=self.name, poll_interval_s=s.poll_interval_s,
                 batch_size=s.batch_size, tzdata=TZDATA_VERSION)

    async def close(self) -> None:
        if self._publishing:
            _, late = await asyncio.wait(set(self._publishing), timeout=PUBLISH_DRAIN_S)
            if late:
                # Their leases run out and the relay of any instance publishes them.
                log.warning("scheduler.publish_unfinished", batches=len(late))
                for task in late:
                    task.cancel()
        retaining = self._retaining
        if retaining is not None:
            retaining.cancel()   # a delete batch is one statement: cut off, nothing is half-done
            with suppress(asyncio.CancelledError):
                await retaining
        if self._pool is not None:
            with suppress(*CONNECTION_ERRORS, asyncpg.PostgresError):
                await self._pool.execute(q("stop_instance"), self.name)
        await self._publisher.close()
        if self._listener is not None and not self._listener.is_closed():
            with suppress(*CONNECTION_ERRORS):
                await self._listener.close()
        if self._pool is not None:
            await self._pool.close()
        log.info("scheduler.stopped", instance=self.name, **self._counter_fields())

    def stop(self) -> None:
        self.stopping.set()
        self._wakeup.set()

    async def run(self) -> None:
        """Pass after pass until stopped; the current pass always finishes."""
        await self.start()
        runtime.started()
        health_task = asyncio.create_task(self._health_log(), name="health-log")
        failures = 0
        try:
            while not self.stopping.is_set():
                self._wakeup.clear()
                try:
                    # Shielded: a stop request lets the pass finish its transaction.
                    claimed = await asyncio.shield(self.run_once())
                    failures = 0
                    delay = await self._sleep_time(claimed)
                except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                    failures += 1
                    delay = min(30.0, 0.5 * 2 ** min(failures, 6)) * self._rng.uniform(0.8, 1.2)
                    log.error("scheduler.pass_failed", error=repr(exc), retry_in_s=round(delay, 2))
                await self._sleep(delay)
        finally:
            health_task.cancel()
            with suppress(asyncio.CancelledError):
                await health_task
            await self.close()

    # --- one pass ----------------------------------------------------------------------

    async def run_once(self) -> int:
        """Tick until nothing is due, publish, relay, reap; the schedules it claimed."""
        assert self._pool is not None
        s = self.settings
        started = time.monotonic()
        await self._ensure_listener()
        if time.monotonic() - self._last_sweep >= SWEEP_EVERY_S:
            self._last_sweep = time.monotonic()
            self._relay_due = self._trigger_due = True
        if self._trigger_due:
            self._trigger_due = False
            if await self._pool.fetchval(q("take_trigger_request")):
                log.info("scheduler.trigger_served", instance=self.name)

        full = True
        claimed = 0
        while full and not self.stopping.is_set():
            result = await tick(self._pool, batch_size=s.batch_size,
                                look_ahead_s=s.look_ahead_s, lease_s=s.publish_lease_s,
                                rng=self._rng)
            full = result.full
            claimed += result.claimed
            if result.created:
                self.counters.created += result.created
                self.counters.last_execution = time.time()
                CREATED.inc(result.created)
            if result.claimed:
                log.debug("scheduler.tick", claimed=result.claimed, created=result.created,
                          missed=result.missed, deactivated=result.deactivated,
                          set_aside=result.set_aside)
            if result.to_publish:
                await self._start_publishing(result.to_publish, result.run_schedules)

        if self._relay_due and self._may_publish() and not self._relaying:
            self._relay_due = False
            self._track(asyncio.create_task(self._relay(), name="relay"), relaying=True)

        now = time.monotonic()
        if now - self._last_reap >= REAP_EVERY_S:
            self._last_reap = now
            await reap(self._pool, lease_s=s.run_lease_s,
                       offline_after_s=s.worker_offline_threshold_s,
                       republish_after_s=s.run_republish_after_s,
                       forget_after_s=s.forget_after_s,
                       expire_without_worker_s=s.run_expire_without_worker_s)
        if now - self._last_retention >= RETENTION_EVERY_S and not self._retaining:
            self._last_retention = now
            self._retaining = asyncio.create_task(self._retention(), name="retention")

        self.counters.passes += 1
        self.counters.last_check = time.time()
        TICKS.inc()
        PASS_SECONDS.observe(time.monotonic() - started)
        await self._record_status()
        health.beat(s.health_dir, "scheduler")
        return claimed

    async def _start_publishing(self, rows: list[dict], run_schedules: dict[int, int]) -> None:
        """Publish a committed batch in the background. With PUBLISH_IN_FLIGHT batches
        already waiting for their confirms (a broker that lags, stalls or blocks
        publishers), the batch is left to the relay instead: a pass never waits for the
        broker, so slots keep being recorded and schedules keep advancing."""
        if len(self._publishing) >= PUBLISH_IN_FLIGHT:
            assert self._pool is not None
            self._relay_due = True
            await self._pool.execute(q("release_publish_lease"), [r["run_id"] for r in rows])
            return
        self._track(asyncio.create_task(self._publish_batch(rows, run_schedules), name="publish"))

    def _track(self, task: asyncio.Task, *, relaying: bool = False) -> None:
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)
        if relaying:
            self._relaying = task
            task.add_done_callback(lambda _t: setattr(self, "_relaying", None))

    async def _retention(self) -> None:
        """A round of retention in the background: batches for up to its budget, so a
        large first clean-up never delays a pass."""
        assert self._pool is not None
        try:
            await delete_old_runs(self._pool, retention_days=self.settings.cleanup_retention_days)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            log.error("scheduler.retention_failed", error=repr(exc))
        except Exception:
            log.exception("scheduler.retention_failed")
        finally:
            self._retaining = None

    async def _relay(self) -> None:
        """The relay, in the background like any publish: the pass does not wait for it."""
        assert self._pool is not None
        s = self.settings
        try:
            relayed = await relay(self._pool, self._publisher, batch_size=s.batch_size,
                                  lease_s=s.publish_lease_s)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            self._relay_due = True
            log.error("scheduler.relay_failed", error=repr(exc))
            return
        except Exception:
            self._relay_due = True
            log.exception("scheduler.publish_task_failed", runs=None)
            return
        self._account(relayed, {})
        if relayed.published:
            log.info("scheduler.relayed", runs=len(relayed.published))

    async def _publish_batch(self, rows: list[dict], run_schedules: dict[int, int]) -> None:
        try:
            await self._publish(rows, run_schedules)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            # Published or not, the runs keep their lease until it runs out; then the
            # relay publishes them (again: a worker claims a run once).
            self._relay_due = True
            log.error("scheduler.publish_unrecorded", runs=len(rows), error=repr(exc))
        except Exception:
            # A bug, not an outage: said loudly (a background task's error is otherwise
            # only seen when it is collected); the relay publishes the runs later.
            self._relay_due = True
            log.exception("scheduler.publish_task_failed", runs=len(rows))

    async def _publish(self, rows: list[dict], run_schedules: dict[int, int]) -> None:
        if not rows:
            return
        assert self._pool is not None
        if not self._may_publish():
            # The broker is backing off: hand the runs to the relay for later.
            self._relay_due = True
            async with self._pool.acquire() as conn:
                await conn.execute(q("release_publish_lease"), [r["run_id"] for r in rows])
            return
        result = await publish_runs(self._pool, self._publisher, rows)
        self._account(result, run_schedules)

    def _may_publish(self) -> bool:
        return time.monotonic() >= self._publish_retry_at

    def _account(self, result: PublishResult, run_schedules: dict[int, int]) -> None:
        self.counters.dispatched += len(result.published)
        DISPATCHED.inc(len(result.published))
        if not result.failed:
            self._publish_backoff_s = 0.0
            return
        self.counters.failures += len(result.failed)
        self._relay_due = True
        PUBLISH_FAILURES.inc(len(result.failed))
        self._publish_backoff_s = min(30.0, max(0.5, self._publish_backoff_s * 2))
        self._publish_retry_at = time.monotonic() + self._publish_backoff_s
        error = repr(result.first_error)
        log.error("scheduler.publish_failed", runs=len(result.failed), error=error,
                  retry_in_s=self._publish_backoff_s)
        per_schedule: dict[int, int] = {}
        for run_id in result.failed:
            sid = run_schedules.get(run_id)
            if sid is not None:
                per_schedule[sid] = per_schedule.get(sid, 0) + 1
        if per_schedule:
            # Several background batches may fail before the pass records them: add up.
            earlier = self._pending_failures[0] if self._pending_failures else {}
            for sid, n in earlier.items():
                per_schedule[sid] = per_schedule.get(sid, 0) + n
            self._pending_failures = (per_schedule, error)

    async def _record_status(self) -> None:
        assert self._pool is not None
        if self._pending_failures:
            per_schedule, error = self._pending_failures
            self._pending_failures = None
            await self._pool.execute(q("record_publish_failures"), list(per_schedule),
                                     list(per_schedule.values()), error[:1000])
        now = time.monotonic()
        if now - self._last_status < STATUS_EVERY_S:
            return
        self._last_status = now
        c = self.counters
        await self._pool.execute(q("record_status"), self.name, self.settings.poll_interval_s,
                                 c.passes, c.dispatched, c.failures, socket.gethostname(),
                                 os.getpid(), TZDATA_VERSION)

    # --- sleeping and waking -------------------------------------------------------------

    async def _sleep_time(self, claimed: int) -> float:
        """Until the next pass; `claimed`: schedules the pass just ended claimed."""
        assert self._pool is not None
        cap = self.settings.poll_interval_s
        row = await self._pool.fetchrow(q("seconds_until_next_work"))
        times = [t for t in (row["schedules"], row["outbox"]) if t is not None]
        if not times:
            return cap
        until = min(times)
        if row["outbox"] is not None and row["outbox"] <= until:
            # The next thing to do is publishing from the outbox (a retry, jitter).
            self._relay_due = True
        backoff = max(0.0, self._publish_retry_at - time.monotonic())
        if until <= 0:
            # Fell due during a pass that claimed (at a thousand slots a second, several
            # have): the next follows almost at once, taking what falls due meanwhile.
            # Else due but not ours to take (another instance holds it, or the broker
            # backs off): look again shortly.
            return (DUE_DURING_PASS_S if claimed and not backoff
                    else min(cap, max(BUSY_RETRY_S, backoff)))
        return min(cap, until + 0.001)

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0 or self.stopping.is_set():
            return
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=seconds)

    async def _ensure_listener(self) -> None:
        """LISTEN on a connection of its own, re-established after a database restart."""
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = None
        try:
            conn = await connect(self.settings.database_url, attempts=1)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            log.warning("scheduler.listen_unavailable", error=repr(exc))
            return
        await conn.add_listener(WAKEUP_CHANNEL, self._on_notify)
        conn.add_termination_listener(lambda _conn: self._wakeup.set())
        self._listener = conn
        # Anything announced while we were not listening is picked up by this pass.
        self._wakeup.set()
        log.info("scheduler.listening", channel=WAKEUP_CHANNEL)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, reason: str) -> None:
        # A manual run, a retry or a rescue may have left a run in the outbox.
        self._relay_due = self._trigger_due = True
        self._wakeup.set()

    # --- health ----------------------------------------------------------------------------

    def _counter_fields(self) -> dict:
        c = self.counters
        return {"checks": c.passes, "created": c.created, "dispatched": c.dispatched,
                "failures": c.failures, "last_check": iso_utc(c.last_check),
                "last_execution": iso_utc(c.last_execution)}

    async def _health_log(self) -> None:
        while True:
            await asyncio.sleep(self.settings.healthcheck_interval_s)
            log.info("healthcheck", instance=self.name,
                     broker_connected=self._publisher.connected,
                     listening=self._listener is not None and not self._listener.is_closed(),
                     **self._counter_fields())


async def serve(settings: Settings) -> int:
    scheduler = Scheduler(settings)
    return await runtime.serve(scheduler.run, scheduler.stop, metrics_port=settings.metrics_port,
                               announces_start=True)
