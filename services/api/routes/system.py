"""/api/me, /api/scheduler, /api/workers, /api/stats: the caller and the state of the system."""

from __future__ import annotations

from fastapi import APIRouter, status

from sundial.api.auth import Caller
from sundial.api.routes import Svc
from sundial.api.schemas import Accepted, Me, SchedulerStatus, Stats, Worker

router = APIRouter(tags=["system"])


@router.get("/me", response_model=Me)
async def me(who: Caller):
    """The calling key's name and role (the dashboard shows write buttons to admins only)."""
    return {"name": who.name, "role": who.role}


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
