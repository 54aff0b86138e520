"""The worker service: named, supervised tasks around the consumer.

    consumer   messages -> claim -> execute (one task per message, prefetch-bounded)
    claimer    claims of messages that arrive together, in one round trip
    recorder   results committed in batches, then acked
    heartbeat  workers row, heartbeat_at of held runs, cancel requests, health file
    health-log a `healthcheck` event every HEALTHCHECK_INTERVAL

SIGTERM sets `stopping`: consuming stops, in-flight runs get WORKER_SHUTDOWN_GRACE to
finish, the rest are queued again without counting an attempt (their sync jobs'
processes killed), and the process exits 0.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

import asyncpg

from sundial.core import runtime
from sundial.core.db import CONNECTION_ERRORS, create_pool, waiting_out
from sundial.core.logging import get_logger
from sundial.core.migrate import wait_until_migrated
from sundial.core.runtime import iso_utc
from sundial.core.settings import instance_id
from sundial.worker import live, metrics, registry
from sundial.worker.consumer import Consumer
from sundial.worker.executor import RELEASE, Held
from sundial.worker.handlers import available
from sundial.worker.heartbeat import Heartbeat
from sundial.worker.processes import SyncPool
from sundial.worker.recorder import Acks, Recorder
from sundial.worker.settings import WorkerSettings

log = get_logger("worker")

# After the grace: how long released runs and pending results may take to be written.
RELEASE_WAIT_S = 10.0


class Worker:
    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self.id = instance_id("worker")
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("worker.stopping", grace_s=self.settings.shutdown_grace_s)
        self.stopping.set()

    async def run(self) -> int:
        live.capture_python_output()
        registry.import_modules(self.settings.imports)
        sync = SyncPool(self.settings) if self.settings.sync_processes else None
        try:  # whatever ends start-up or the service, no sync-job process stays behind
            if sync is not None:
                await sync.start()
            return await self._serve(sync)
        finally:
            if sync is not None:
                await sync.close()

    async def _serve(self, sync: SyncPool | None) -> int:
        s = self.settings
        handlers = available(s, sync)
        pool = await create_pool(s.database_url, min_size=s.db_pool_min, max_size=s.db_pool_max)
        await wait_until_migrated(pool)
        held: dict[tuple[int, int], Held] = {}
        recorder = Recorder(pool, self.id, Acks(), held)
        metrics.watch_slots(s.worker_concurrency, lambda: len(held))
        self.heartbeat = Heartbeat(s, pool, self.id, sorted(handlers), held, recorder.counts)
        self.consumer = Consumer(s, pool, self.id, handlers, recorder)
        # A database that cannot take writes yet (read-only during a failover) is waited
        # out here, as the pool waited for one that did not answer.
        async for attempt in waiting_out("worker.register_retry"):
            with attempt:
                await self.heartbeat.run_once()
        log.info("worker.started", worker_id=self.id, handlers=sorted(handlers),
                 python_jobs=registry.names(), concurrency=s.worker_concurrency,
                 sync_processes=s.sync_processes)
        tasks = [asyncio.create_task(recorder.run(), name="recorder"),
                 asyncio.create_task(self.consumer.claimer.run(), name="claimer"),
                 asyncio.create_task(self.heartbeat.run(), name="heartbeat"),
                 asyncio.create_task(self._health_log(recorder), name="health-log")]
        code = 0
        try:
            await self.consumer.start()
            runtime.started()
            stop = asyncio.create_task(self.stopping.wait(), name="stop")
            done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stop}:
                code = 1
                log.error("worker.task_failed", task=task.get_name(),
                          error=repr(task.exception()) if not task.cancelled() else "cancelled")
            stop.cancel()
            await self._drain(recorder)
        finally:
            for task in tasks:
                task.cancel()
            with suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
            await self.consumer.close()
            with suppress(*CONNECTION_ERRORS, asyncpg.PostgresError):
                await self.heartbeat.register("offline")
            await pool.close()
            log.info("worker.stopped", worker_id=self.id, **self._counters(recorder))
        return code

    async def _drain(self, recorder: Recorder) -> None:
        """Stop consuming, let in-flight runs finish up to the grace, release the rest."""
        with suppress(*CONNECTION_ERRORS, asyncpg.PostgresError):
            await self.heartbeat.register("draining")
        await self.consumer.stop_consuming()
        pending = set(self.consumer.tasks)
        if pending:
            log.info("worker.draining", in_flight=len(pending))
            _, pending = await asyncio.wait(pending, timeout=self.settings.shutdown_grace_s)
        if pending:
            released = [h.run_id for h in list(recorder.held.values()) if not h.finished]
            for h in list(recorder.held.values()):
                h.stop(RELEASE)
            log.warning("worker.releasing", runs=released)
            _, pending = await asyncio.wait(pending, timeout=RELEASE_WAIT_S)
            # Not claimed yet (waiting for the database): their messages go back to the
            # queue when the connection closes.
            for task in pending:
                task.cancel()
        if not await recorder.drain(RELEASE_WAIT_S):
            log.error("worker.results_unwritten", runs=len(recorder.held))

    def _counters(self, recorder: Recorder) -> dict:
        c = recorder.counts
        last = self.consumer.last_execution if hasattr(self, "consumer") else None
        return {"received": c["received"], "claimed": c["claimed"], "succeeded": c["succeeded"],
                "failed": c["failed"], "retried": c["retry"], "timed_out": c["timed_out"],
                "cancelled": c["cancelled"], "skipped": c["skipped"], "duplicates": c["duplicate"],
                "rejected": c["rejected"], "dead": c["dead"], "in_flight": len(recorder.held),
                "last_execution": iso_utc(last)}

    async def _health_log(self, recorder: Recorder) -> None:
        while True:
            await asyncio.sleep(self.settings.healthcheck_interval_s)
            log.info("healthcheck", worker_id=self.id, status=self.heartbeat.status,
                     broker_connected=self.consumer.connected, **self._counters(recorder))


async def serve(settings: WorkerSettings) -> int:
    worker = Worker(settings)
    return await runtime.serve(worker.run, worker.stop, metrics_port=settings.metrics_port,
                               announces_start=True)
