"""/api/scheduler, /api/workers, /api/stats: the state of the system at a glance."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.auth import Caller
from api.routes import Svc
from api.schemas import Accepted, SchedulerStatus, Stats, Worker

router = APIRouter(tags=["system"])


@router.get("/scheduler/status", response_model=SchedulerStatus)
async def scheduler_status(svc: Svc):
    """`running` if a scheduler passed within SCHEDULER_STALE_AFTER seconds, `stale` if
    not, `unknown` if none ever did."""
    return await svc.scheduler_status()


@router.post("/scheduler/trigger", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED)
async def trigger_scheduler(svc: Svc, who: Caller):
    """A scheduler pass now, instead of at the next slot or poll interval."""
    await svc.trigger_scheduler(who.name)
    return {}


@router.get("/workers", response_model=list[Worker])
async def workers(svc: Svc):
    return await svc.workers()


@router.get("/stats", response_model=Stats)
async def stats(svc: Svc):
    return await svc.stats()
