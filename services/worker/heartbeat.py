"""Liveness: the worker's row in `workers`, and `heartbeat_at` of every run it holds.

One set-based statement per beat keeps all held runs alive, writes the tail of the output
of those that printed since the last beat (sundial.worker.live), and reports which ones the
API asked to cancel; a run that is no longer ours (rescued by the reaper after a long
pause) is stopped and its result dropped.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

import asyncpg

from sundial.core import health
from sundial.core.db import CONNECTION_ERRORS
from sundial.core.logging import get_logger
from sundial.core.sql import q
from sundial.worker.executor import CANCELLED, LOST, Held
from sundial.worker.settings import WorkerSettings

log = get_logger("worker.heartbeat")


class Heartbeat:
    def __init__(self, settings: WorkerSettings, pool: asyncpg.Pool, worker_id: str,
                 handlers: list[str], held: dict[tuple[int, int], Held],
                 counts: dict[str, int]):
        self.settings = settings
        self.pool = pool
        self.worker_id = worker_id
        self.handlers = handlers
        self.held = held
        self.counts = counts
        self.status = "online"
        self.last_beat: float | None = None

    async def run(self) -> None:
        interval = self.settings.worker_heartbeat_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                # A beat hanging on a dead connection must not keep the lease check waiting.
                async with asyncio.timeout(max(interval, 5.0)):
                    await self.run_once()
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                log.error("worker.heartbeat_failed", error=repr(exc))
            self.stop_expired()

    def stop_expired(self) -> None:
        """Stop the runs whose lease may have run out unseen: the reaper may hand them to
        another worker, and two executions of one run must not both go on."""
        s = self.settings
        oldest = time.monotonic() - (s.run_lease_s - s.worker_heartbeat_interval_s)
        for h in list(self.held.values()):
            if not h.finished and h.stop_reason is None and h.alive_at < oldest:
                log.error("run.lease_expired", run_id=h.run_id, attempt=h.attempt,
                          unconfirmed_s=round(time.monotonic() - h.alive_at, 1))
                h.stop(LOST)

    async def run_once(self) -> None:
        held = dict(self.held)
        if held:
            beat_at = time.monotonic()
            rows = await self.pool.fetch(q("heartbeat_runs"), [h.run_id for h in held.values()],
                                         [h.attempt for h in held.values()], self.worker_id,
                                         [h.live.take() for h in held.values()])
            alive = {(row["id"], row["attempt"]): row["cancel_requested"] for row in rows}
            for key, h in held.items():
                if h.finished:
                    continue
                if key not in alive:
                    log.warning("run.lease_lost", run_id=h.run_id, attempt=h.attempt)
                    h.stop(LOST)
                    continue
                h.alive_at = beat_at
                if alive[key] and h.stop_reason is None:
                    log.info("run.cancel_requested", run_id=h.run_id, attempt=h.attempt)
                    h.stop(CANCELLED)
        await self.register()
        health.beat(self.settings.health_dir, "worker")
        self.last_beat = asyncio.get_running_loop().time()

    async def register(self, status: str | None = None) -> None:
        if status is not None:
            self.status = status
        s, c = self.settings, self.counts
        await self.pool.execute(
            q("upsert_worker"), self.worker_id, socket.gethostname(), os.getpid(),
            list(s.worker_queues), self.handlers, s.worker_concurrency, self.status,
            c["claimed"], c["succeeded"], c["failed"] + c["timed_out"])
