"""The scheduler daemon: a handful of loops, each its own concern, supervised together.

- tick: claim what is due batch after batch, hand each batch to publishing, then sleep
  until the earliest next slot (capped by the poll interval); NOTIFY wakes it at once.
- relay: publish the outbox's runs no one else is publishing, on a wake-up (NOTIFY, a
  failed or handed-back publish, a run of the outbox falling due) or once a second;
  after a failed publish it backs off, and fresh batches go to it meanwhile.
- reap (every 5 s), retention (once a minute from start-up), status (once a second
  after a pass) and the healthcheck log (every HEALTHCHECK_INTERVAL).
- notify: deliver the notifications due (once a second); alerts: evaluate the
  notification rules on conditions (every NOTIFY_CHECK_INTERVAL). Neither is in the
  tick's path: a slow webhook or SMTP server delays only other notifications.

A loop's failing round is logged and retried with backoff while the others go on
(`supervisor.py`); the process never needs a restart to recover from a database or
broker restart. A stop lets the tick finish its pass.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from contextlib import suppress
from datetime import UTC, datetime

import asyncpg
import prometheus_client as prom

from sundial.core import faults, health, runtime
from sundial.core.broker import CONFIRM_TIMEOUT_S, Publisher
from sundial.core.db import CONNECTION_ERRORS, connect, create_pool, replacements
from sundial.core.logging import get_logger
from sundial.core.migrate import wait_until_migrated
from sundial.core.outbox import WAKEUP_CHANNEL
from sundial.core.runtime import iso_utc
from sundial.core.settings import instance_id
from sundial.core.sql import q
from sundial.core.zones import TZDATA_VERSION
from sundial.scheduler.alerts import evaluate
from sundial.scheduler.notifier import BATCH as NOTIFY_BATCH
from sundial.scheduler.notifier import Notifier
from sundial.scheduler.publishing import Counters, Publishing
from sundial.scheduler.reaper import delete_old_runs, reap
from sundial.scheduler.relay import relay
from sundial.scheduler.settings import SchedulerSettings
from sundial.scheduler.supervisor import Loop, Outage, Supervisor
from sundial.scheduler.tick import tick

log = get_logger("scheduler")

TICKS = prom.Counter("sundial_scheduler_passes_total", "Scheduler passes")
CREATED = prom.Counter("sundial_scheduler_runs_created_total", "Runs recorded for due slots")
PASS_SECONDS = prom.Histogram("sundial_scheduler_pass_seconds", "Duration of a scheduler pass")
BROKER_BLOCKED = prom.Gauge("sundial_scheduler_broker_blocked",
                            "1 while RabbitMQ blocks this scheduler's publishing (a memory or "
                            "disk alarm), else 0")

REAP_EVERY_S = 5.0
RETENTION_EVERY_S = 60.0
STATUS_EVERY_S = 1.0
# The relay looks at the outbox this often without a wake-up (runs whose publisher's
# lease ran out); "trigger now" is looked for as often.
SWEEP_EVERY_S = 1.0
# The delivery loop looks for due notifications this often (a test, a retry, a failure).
NOTIFY_EVERY_S = 1.0
# When something is due but another instance holds it, look again soon, not at once.
BUSY_RETRY_S = 0.05
# When slots fell due while a pass was claiming others, the next pass starts this soon.
DUE_DURING_PASS_S = 0.003


class RelayFailed(Outage):
    """Runs of the outbox could not be published."""


class Scheduler:
    def __init__(self, settings: SchedulerSettings, *, name: str | None = None):
        self.settings = settings
        self.name = name or instance_id("scheduler")
        self.counters = Counters()
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._listener_replacements = 0
        # A confirm must come well before the publish lease runs out, or another
        # instance's relay would publish the runs again meanwhile.
        self._publisher = Publisher(settings.rabbitmq_url, settings.delivery_limit,
                                    confirm_timeout_s=min(CONFIRM_TIMEOUT_S,
                                                          settings.publish_lease_s / 2))
        self._publishing: Publishing | None = None
        self._notifier: Notifier | None = None
        self._rng = random.Random()
        self._trigger_due = True           # "trigger now" may be pending (NOTIFY, sweep)
        self._last_sweep = 0.0
        self._passes_recorded = -1
        self._blocked_recorded: float | None = None
        self._tick = Loop("tick", self._tick_round, "scheduler.pass_failed")
        self._relay = Loop("relay", self._relay_round, "scheduler.relay_failed",
                           on_backoff=self._relay_backing_off)
        self._supervisor = Supervisor([
            self._tick,
            self._relay,
            Loop("reap", self._reap_round, "scheduler.reap_failed"),
            Loop("retention", self._retention_round, "scheduler.retention_failed",
                 cancel_on_stop=True),   # a delete batch is one statement: nothing half-done
            Loop("status", self._status_round, "scheduler.status_failed"),
            Loop("notify", self._notify_round, "scheduler.notify_failed"),
            Loop("alerts", self._alerts_round, "scheduler.alerts_failed"),
            Loop("healthcheck", self._health_round, "scheduler.healthcheck_failed",
                 first_in_s=settings.healthcheck_interval_s),
        ])

    @property
    def stopping(self) -> asyncio.Event:
        return self._supervisor.stopping

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self._pool = await create_pool(s.database_url, min_size=s.db_pool_min,
                                       max_size=s.db_pool_max)
        await wait_until_migrated(self._pool)
        async with self._pool.acquire() as conn:
            await conn.execute(q("register_instance"), self.name, socket.gethostname(),
                               os.getpid(), TZDATA_VERSION)
        self._publishing = Publishing(self._pool, self._publisher, self.counters,
                                      on_failure=self._relay.wakeup.set)
        self._notifier = Notifier(self._pool, s)
        await self._ensure_listener()
        log.info("scheduler.started", instance=self.name, poll_interval_s=s.poll_interval_s,
                 batch_size=s.batch_size, tzdata=TZDATA_VERSION)

    async def close(self) -> None:
        if self._publishing is not None:
            await self._publishing.drain()
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
        self._supervisor.stop()

    async def run(self) -> None:
        """Every loop until stopped; the current pass always finishes."""
        await self.start()
        runtime.started()
        try:
            await self._supervisor.run()
        finally:
            await self.close()

    # --- tick ----------------------------------------------------------------------------

    async def _tick_round(self) -> float:
        return await self._sleep_time(await self.run_once())

    async def run_once(self) -> int:
        """Tick until nothing is due, handing each batch to publishing; the schedules
        it claimed."""
        assert self._pool is not None and self._publishing is not None
        s = self.settings
        started = time.monotonic()
        await self._ensure_listener()
        if started - self._last_sweep >= SWEEP_EVERY_S:
            self._last_sweep = started
            self._trigger_due = True
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
            await self._publishing.hand_over(result.to_publish, result.run_schedules)

        self.counters.passes += 1
        self.counters.last_check = time.time()
        TICKS.inc()
        PASS_SECONDS.observe(time.monotonic() - started)
        health.beat(s.health_dir, "scheduler")
        return claimed

    async def _sleep_time(self, claimed: int) -> float:
        """Until the next pass; `claimed`: schedules the pass just ended claimed."""
        assert self._pool is not None
        if claimed:
            # Under steady load something falls due during every pass: the next follows
            # almost at once, without asking when (a round trip per pass saved); once a
            # pass finds nothing, the sleep-time query says how long to sleep.
            return DUE_DURING_PASS_S
        cap = self.settings.poll_interval_s
        until = (await self._pool.fetchrow(q("seconds_until_next_work")))["schedules"]
        if until is None:
            return cap
        if until <= 0:
            # Due but not ours to take (another instance holds it): look again shortly.
            return min(cap, BUSY_RETRY_S)
        return min(cap, until + 0.001)

    async def _ensure_listener(self) -> None:
        """LISTEN on a connection of its own, re-established after a database restart or
        once the pool met a read-only host (a failover: this one may be on the old
        primary, where no NOTIFY comes any more)."""
        assert self._pool is not None
        if self._listener is not None and not self._listener.is_closed():
            if self._listener_replacements == replacements(self._pool):
                return
            log.warning("scheduler.listen_again", reason="the pool met a read-only host")
            self._listener.terminate()
        self._listener = None
        self._listener_replacements = replacements(self._pool)
        try:
            conn = await connect(self.settings.database_url, attempts=1)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            log.warning("scheduler.listen_unavailable", error=repr(exc))
            return
        await conn.add_listener(WAKEUP_CHANNEL, self._on_notify)
        conn.add_termination_listener(lambda _conn: self._tick.wakeup.set())
        self._listener = conn
        # Anything announced while we were not listening is picked up by this pass.
        self._tick.wakeup.set()
        self._relay.wakeup.set()
        log.info("scheduler.listening", channel=WAKEUP_CHANNEL)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, reason: str) -> None:
        # A manual run, a retry or a rescue may have left a run in the outbox.
        self._trigger_due = True
        self._tick.wakeup.set()
        self._relay.wakeup.set()

    # --- relay -----------------------------------------------------------------------------

    async def _relay_round(self) -> float:
        """Publish what the outbox holds; raises RelayFailed (the loop backs off) when
        the broker did not take it."""
        assert self._pool is not None and self._publishing is not None
        s = self.settings
        result = await relay(self._pool, self._publisher, batch_size=s.batch_size,
                             lease_s=s.publish_lease_s, stopping=self.stopping,
                             give_way=self._publishing.give_way)
        self._publishing.account(result, {})
        if result.published:
            log.info("scheduler.relayed", runs=len(result.published))
        if result.failed:
            raise RelayFailed(f"{len(result.failed)} runs not published: {result.first_error!r}")
        self._publishing.retry_at = 0.0
        if result.more:
            return 0.0
        # Until the next run of the outbox becomes available (jitter, look-ahead, a
        # retry's backoff), or the sweep for runs whose publisher's lease ran out.
        until = (await self._pool.fetchrow(q("seconds_until_next_work")))["outbox"]
        if until is None or until >= SWEEP_EVERY_S:
            return SWEEP_EVERY_S
        # Available now but not taken (locked by another transaction): look again shortly.
        return max(until + 0.001, 0.0 if result.published else BUSY_RETRY_S)

    def _relay_backing_off(self, exc: BaseException, seconds: float) -> None:
        """Fresh batches go to the relay while it backs off from the broker."""
        assert self._publishing is not None
        if isinstance(exc, RelayFailed):
            self._publishing.retry_at = time.monotonic() + seconds

    # --- maintenance -------------------------------------------------------------------------

    async def _reap_round(self) -> float:
        assert self._pool is not None
        s = self.settings
        await reap(self._pool, lease_s=s.run_lease_s, offline_after_s=s.worker_offline_threshold_s,
                   republish_after_s=s.run_republish_after_s, forget_after_s=s.forget_after_s,
                   expire_without_worker_s=s.run_expire_without_worker_s)
        return REAP_EVERY_S

    async def _retention_round(self) -> float:
        """Batches for up to retention's budget, in a loop of its own, so a large first
        clean-up never delays a pass."""
        assert self._pool is not None
        await delete_old_runs(self._pool, retention_days=self.settings.cleanup_retention_days)
        await self._pool.execute(q("delete_old_notifications"), self.settings.cleanup_retention_days,
                                 10_000)
        return RETENTION_EVERY_S

    async def _notify_round(self) -> float:
        assert self._notifier is not None
        claimed = await self._notifier.run_once()
        return 0.0 if claimed >= NOTIFY_BATCH else NOTIFY_EVERY_S

    async def _alerts_round(self) -> float:
        assert self._pool is not None
        await evaluate(self._pool)
        return self.settings.notify_check_interval_s

    async def _status_round(self) -> float:
        """Publish failures onto their schedules, and this instance's status after each
        pass (no pass, no status: the API then reports the scheduler stale) or when the
        broker starts or stops blocking its publishing."""
        assert self._pool is not None and self._publishing is not None
        if self._publishing.pending_failures:
            per_schedule, error = self._publishing.pending_failures
            self._publishing.pending_failures = None
            try:
                await self._pool.execute(q("record_publish_failures"), list(per_schedule),
                                         list(per_schedule.values()), error[:1000])
            except BaseException:
                self._publishing.add_failures(per_schedule, error)  # the next round has them
                raise
        c = self.counters
        passes = c.passes   # the tick may pass again while this is written
        blocked, since = self._publisher.blocked, self._publisher.blocked_since
        BROKER_BLOCKED.set(1 if blocked is not None else 0)
        if passes != self._passes_recorded or since != self._blocked_recorded:
            faults.reached("status")
            await self._pool.execute(q("record_status"), self.name,
                                     self.settings.poll_interval_s, passes, c.dispatched,
                                     c.failures, socket.gethostname(), os.getpid(),
                                     TZDATA_VERSION, since and datetime.fromtimestamp(since, UTC), blocked)
            self._passes_recorded, self._blocked_recorded = passes, since
        return STATUS_EVERY_S

    # --- health ----------------------------------------------------------------------------

    def _counter_fields(self) -> dict:
        c = self.counters
        return {"checks": c.passes, "created": c.created, "dispatched": c.dispatched,
                "failures": c.failures, "last_check": iso_utc(c.last_check),
                "last_execution": iso_utc(c.last_execution)}

    async def _health_round(self) -> float:
        log.info("healthcheck", instance=self.name, broker_connected=self._publisher.connected,
                 broker_blocked=self._publisher.blocked,
                 listening=self._listener is not None and not self._listener.is_closed(),
                 **self._counter_fields())
        return self.settings.healthcheck_interval_s


async def serve(settings: SchedulerSettings) -> int:
    scheduler = Scheduler(settings)
    return await runtime.serve(scheduler.run, scheduler.stop, metrics_port=settings.metrics_port,
                               announces_start=True)
