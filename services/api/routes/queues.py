"""/api/queues: pause and resume a queue, or every queue at once.

A paused queue's runs stay queued and unpublished (schedules keep recording their slots);
on resume the relay publishes what waited. Runs already running go on.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from sundial.api.auth import Caller
from sundial.api.routes import Svc
from sundial.api.schemas import QueueName, Queues, QueueState
from sundial.api.service import ALL_QUEUES

router = APIRouter(prefix="/queues", tags=["queues"])
Queue = Annotated[QueueName, Path(description="A queue some job runs on.")]


@router.get("", response_model=Queues)
async def list_queues(svc: Svc):
    """Every queue a job runs on, with its pause, jobs and queued runs."""
    return await svc.queues()


@router.post("/pause", response_model=QueueState)
async def pause_all(svc: Svc, who: Caller):
    """Pause every queue: no run is published until `POST /api/queues/resume`."""
    return await svc.pause_queue(who.name, ALL_QUEUES)


@router.post("/resume", response_model=QueueState)
async def resume_all(svc: Svc, who: Caller):
    """Lift the pause of every queue (a queue paused by name stays paused)."""
    return await svc.resume_queue(who.name, ALL_QUEUES)


@router.post("/{queue}/pause", response_model=QueueState)
async def pause_queue(queue: Queue, svc: Svc, who: Caller):
    """Hold the queue's runs in the outbox until it is resumed. 404 if no job runs on it."""
    return await svc.pause_queue(who.name, queue)


@router.post("/{queue}/resume", response_model=QueueState)
async def resume_queue(queue: Queue, svc: Svc, who: Caller):
    """Publish the queue's runs again, those held meanwhile at once."""
    return await svc.resume_queue(who.name, queue)
