"""Probes without a key: /health (liveness), /ready (database and broker), /metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Gauge,
    generate_latest,
)

from sundial.core.broker import BROKER_ERRORS
from sundial.core.db import CONNECTION_ERRORS
from sundial.core.sql import q

router = APIRouter(tags=["probes"])
READY_TIMEOUT_S = 5.0
# The API process's own collectors (CPU, memory, GC), not the default registry: a process
# that also loads the scheduler or a worker (an embedding application, the tests) would
# otherwise serve their metrics too, and names twice in one scrape, which Prometheus refuses.
PROCESS = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    PROCESS.register(_collector)


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "healthy", "service": "api", "timestamp": datetime.now(UTC).isoformat()}


@router.get("/ready", responses={503: {"description": "PostgreSQL or RabbitMQ does not "
                                                    "answer: `checks` says which."}})
async def ready(request: Request) -> JSONResponse:
    """200 only when PostgreSQL and RabbitMQ both answer; 503 naming what does not."""
    checks = {"database": "ok", "broker": "ok"}
    try:
        await asyncio.wait_for(request.app.state.pool.fetchval("SELECT 1"), READY_TIMEOUT_S)
    except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        await asyncio.wait_for(request.app.state.publisher.connect(), READY_TIMEOUT_S)
    except BROKER_ERRORS as exc:
        checks["broker"] = f"unavailable: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks},
                        status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, responses={200: {
    "description": "Prometheus text format.", "content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus text format: this process's own collectors (CPU, memory, open files,
    garbage collection), then what the database says at this scrape, the same from every
    API replica: runs by job, queue and status, queue depth and workers per queue, the
    outbox, worker slots, the scheduler's last pass, each scheduled job's last success, and
    how many running schedulers the broker blocks."""
    settings = request.app.state.settings
    async with request.app.state.pool.acquire() as conn:
        by_status = await conn.fetch(q("metrics_runs_by_status"))
        job_runs = await conn.fetch(q("metrics_job_runs"), settings.metrics_max_jobs)
        queues = await conn.fetch(q("metrics_queues"), settings.worker_offline_threshold_s)
        gauges = await conn.fetchrow(q("metrics_gauges"), settings.worker_offline_threshold_s,
                                     settings.scheduler_stale_after_s)
        last_success = await conn.fetch(q("metrics_last_success"), settings.metrics_max_jobs)
    registry = CollectorRegistry()
    runs = Gauge("sundial_runs", "Runs in the database by status", ["status"],
                 registry=registry)
    for row in by_status:
        runs.labels(row["status"]).set(row["n"])
    by_job = Gauge("sundial_job_runs_last_hour", "Runs created in the last hour by job, queue "
                   "and status (the METRICS_MAX_JOBS busiest jobs, the rest as "
                   "job_name=\"_other\")", ["job_name", "queue", "status"], registry=registry)
    for row in job_runs:
        by_job.labels(row["job_name"], row["queue"], row["status"]).set(row["n"])
    depth = Gauge("sundial_queue_depth", "Queued runs per queue (published or not)", ["queue"],
                  registry=registry)
    workers = Gauge("sundial_queue_workers", "Online workers consuming each queue", ["queue"],
                    registry=registry)
    for row in queues:
        depth.labels(row["queue"]).set(row["depth"])
        workers.labels(row["queue"]).set(row["workers"])
    Gauge("sundial_dispatch_lag_seconds", "Age of the oldest available run not yet published",
          registry=registry).set(gauges["dispatch_lag_s"])
    Gauge("sundial_outbox_size", "Queued runs not yet published (the outbox)",
          registry=registry).set(gauges["outbox"])
    Gauge("sundial_workers_online", "Workers with a fresh heartbeat",
          registry=registry).set(gauges["workers_online"])
    slots = Gauge("sundial_worker_slots", "Run slots of online workers (WORKER_CONCURRENCY "
                  "summed): busy ones run a run, free ones can take one", ["state"],
                  registry=registry)
    slots.labels("busy").set(gauges["busy"])
    slots.labels("free").set(max(0, gauges["slots"] - gauges["busy"]))
    Gauge("sundial_scheduler_last_pass_timestamp_seconds",
          "Unix time of the latest scheduler pass (0: never)",
          registry=registry).set(gauges["scheduler_last_tick"] or 0)
    success = Gauge("sundial_job_last_success_timestamp_seconds",
                    "Unix time of the latest success of each job with an active schedule "
                    "(its creation if none)", ["job_name"], registry=registry)
    for row in last_success:
        success.labels(row["job_name"]).set(row["at"])
    Gauge("sundial_scheduler_broker_blocked",
          "Running schedulers whose publishing RabbitMQ blocks (a memory or disk alarm)",
          registry=registry).set(gauges["schedulers_blocked"])
    body = generate_latest(PROCESS) + generate_latest(registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
