"""/api/schedules: when a job runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from sundial.api.auth import Caller
from sundial.api.routes import TOTAL_COUNT, TOTAL_HEADER, Svc
from sundial.api.schemas import (
    MAX_ID,
    Backfill,
    BackfillBody,
    Deleted,
    Preview,
    Schedule,
    ScheduleCreate,
    ScheduleFields,
    ScheduleUpdate,
)

router = APIRouter(prefix="/schedules", tags=["schedules"])
ScheduleId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("", response_model=list[Schedule], responses=TOTAL_COUNT)
async def list_schedules(svc: Svc, response: Response,
                         job: Annotated[str | None, Query(min_length=1, max_length=200,
                                                          description="A job's id or name.")] = None,
                         active: bool | None = None,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                         offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0):
    """Schedules by id. The `X-Total-Count` header counts every schedule the filters select."""
    response.headers[TOTAL_HEADER] = str(await svc.count_schedules(job=job, active=active))
    return await svc.list_schedules(job=job, active=active, limit=limit, offset=offset)


@router.post("", response_model=Schedule, status_code=status.HTTP_201_CREATED)
async def create_schedule(body: ScheduleCreate, svc: Svc, who: Caller):
    return await svc.create_schedule(who.name, body)


@router.post("/preview", response_model=Preview)
async def preview_unsaved_schedule(body: ScheduleFields, svc: Svc,
                                   count: Annotated[int, Query(ge=1, le=100)] = 10):
    """The next `count` fire times (UTC) of a schedule before it is saved; a bad field is a
    422 naming it, as on create. Nothing is written."""
    return await svc.preview_unsaved(body, count)


@router.get("/{schedule_id}", response_model=Schedule)
async def get_schedule(schedule_id: ScheduleId, svc: Svc):
    return await svc.get_schedule(schedule_id)


@router.patch("/{schedule_id}", response_model=Schedule)
async def update_schedule(schedule_id: ScheduleId, body: ScheduleUpdate, svc: Svc, who: Caller):
    """Change some fields; the next slot is recomputed from now. A schedule of a job
    managed by code takes only `is_active` here (409 for the rest: see `sundial sync`)."""
    return await svc.update_schedule(who.name, schedule_id, body)


@router.delete("/{schedule_id}", response_model=Deleted)
async def delete_schedule(schedule_id: ScheduleId, svc: Svc, who: Caller):
    """Its past runs stay in the history. 409 for a schedule declared in code
    (`managed_key` set, its job managed by code)."""
    return {"id": await svc.delete_schedule(who.name, schedule_id)}


@router.post("/{schedule_id}/pause", response_model=Schedule)
async def pause_schedule(schedule_id: ScheduleId, svc: Svc, who: Caller):
    return await svc.pause_schedule(who.name, schedule_id)


@router.post("/{schedule_id}/resume", response_model=Schedule)
async def resume_schedule(schedule_id: ScheduleId, svc: Svc, who: Caller):
    """Active again from its next slot after now; slots missed while paused do not run."""
    return await svc.resume_schedule(who.name, schedule_id)


@router.get("/{schedule_id}/preview", response_model=Preview)
async def preview_schedule(schedule_id: ScheduleId, svc: Svc,
                           count: Annotated[int, Query(ge=1, le=100)] = 10):
    """The next `count` fire times (UTC), before jitter."""
    return await svc.preview(schedule_id, count)


@router.post("/{schedule_id}/backfill", response_model=Backfill)
async def backfill_schedule(schedule_id: ScheduleId, body: BackfillBody, svc: Svc, who: Caller):
    """A run for each slot of the schedule from `from` to `to` (both included, not in the
    future) that has none yet, whether the schedule and its job are active or not: the
    slot key of the scheduler's ticks, so no slot runs twice. At most 1000 slots per
    request (422 with their count beyond). `dry_run` writes nothing."""
    return await svc.backfill(who.name, schedule_id, body.from_, body.to, dry_run=body.dry_run)
