"""Liveness: the worker's row in `workers`, and `heartbeat_at` of every run it holds.

One set-based statement per beat keeps all held runs alive and reports which ones the
API asked to cancel; a run that is no longer ours (rescued by the reaper after a long
pause) is stopped and its result dropped.
"""

from __future__ import annotations

import asyncio
import os
import socket

import asyncpg

from core import health
from core.db import CONNECTION_ERRORS
from core.logging import get_logger
from core.sql import q
from worker.executor import CANCELLED, LOST, Held
from worker.settings import WorkerSettings

log = get_logger("worker.heartbeat")


class Heartbeat:
    def __init__(self, settings: WorkerSettings, pool: asyncpg.Pool, worker_id: str,
                 handlers: list[str], held: dict[int, Held], counts: dict[str, int]):
        self.settings = settings
        self.pool = pool
        self.worker_id = worker_id
        self.handlers = handlers
        self.held = held
        self.counts = counts
        self.status = "online"
        self.last_beat: float | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.worker_heartbeat_interval_s)
            try:
                await self.run_once()
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                log.error("worker.heartbeat_failed", error=repr(exc))

    async def run_once(self) -> None:
        held = dict(self.held)
        if held:
            rows = await self.pool.fetch(q("heartbeat_runs"), list(held), self.worker_id)
            alive = {row["id"]: row["cancel_requested"] for row in rows}
            for run_id, h in held.items():
                if h.finished:
                    continue
                if run_id not in alive:
                    log.warning("run.lease_lost", run_id=run_id, attempt=h.attempt)
                    h.stop(LOST)
                elif alive[run_id] and h.stop_reason is None:
                    log.info("run.cancel_requested", run_id=run_id, attempt=h.attempt)
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
