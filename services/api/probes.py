"""Probes without a key: /health (liveness), /ready (database and broker), /metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from sundial.core.broker import BROKER_ERRORS
from sundial.core.db import CONNECTION_ERRORS
from sundial.core.sql import q

router = APIRouter(tags=["probes"])
READY_TIMEOUT_S = 5.0


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
    """Prometheus text format, read from the database at each scrape: runs by status,
    dispatch lag, queue depth, workers online, the scheduler's last pass."""
    settings = request.app.state.settings
    async with request.app.state.pool.acquire() as conn:
        by_status = await conn.fetch(q("metrics_runs_by_status"))
        depth = await conn.fetch(q("metrics_queue_depth"))
        gauges = await conn.fetchrow(q("metrics_gauges"), settings.worker_offline_threshold_s)
    registry = CollectorRegistry()
    runs = Gauge("sundial_runs", "Runs by status", ["status"], registry=registry)
    for row in by_status:
        runs.labels(row["status"]).set(row["n"])
    queued = Gauge("sundial_queue_depth", "Queued runs per job queue", ["queue"], registry=registry)
    for row in depth:
        queued.labels(row["queue"]).set(row["n"])
    Gauge("sundial_dispatch_lag_seconds", "Age of the oldest available run not yet published",
          registry=registry).set(gauges["dispatch_lag_s"])
    Gauge("sundial_workers_online", "Workers with a fresh heartbeat",
          registry=registry).set(gauges["workers_online"])
    Gauge("sundial_scheduler_last_pass_timestamp_seconds",
          "Unix time of the latest scheduler pass (0: never)",
          registry=registry).set(gauges["scheduler_last_tick"] or 0)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
