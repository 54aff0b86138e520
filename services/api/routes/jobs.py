"""/api/jobs: what to run. A job is named by its id or its name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response, status

from sundial.api.auth import Caller
from sundial.api.routes import TOTAL_COUNT, TOTAL_HEADER, Svc
from sundial.api.schemas import (
    Deleted,
    JobCreate,
    JobDetail,
    JobHealth,
    JobSummary,
    JobUpdate,
    TriggerBody,
    Triggered,
)
from sundial.api.service import WINDOW_PATTERN

router = APIRouter(prefix="/jobs", tags=["jobs"])
JobRef = Annotated[str, Path(min_length=1, max_length=200, description="A job's id or name.")]


@router.get("", response_model=list[JobSummary], responses=TOTAL_COUNT)
async def list_jobs(svc: Svc, response: Response, enabled: bool | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0):
    """Jobs by name. The `X-Total-Count` header counts every job the filter selects."""
    response.headers[TOTAL_HEADER] = str(await svc.count_jobs(enabled=enabled))
    return await svc.list_jobs(enabled=enabled, limit=limit, offset=offset)


@router.post("", response_model=JobDetail, status_code=status.HTTP_201_CREATED)
async def create_job(body: JobCreate, svc: Svc, who: Caller):
    """Create a job, and its `schedules` in the same transaction (all or nothing)."""
    return await svc.create_job(who.name, body)


@router.get("/{job}", response_model=JobDetail)
async def get_job(job: JobRef, svc: Svc):
    return await svc.get_job(job)


@router.get("/{job}/health", response_model=JobHealth)
async def job_health(job: JobRef, svc: Svc,
                     window: Annotated[str, Query(max_length=20, description=(
                         "How far back: a number and a unit s, m, h or d, 1m to 366d."),
                         json_schema_extra={"pattern": WINDOW_PATTERN})]
                     = "24h"):
    """Success and error rates, mean and p95 duration of the job's runs that finished in
    the window."""
    return await svc.job_health(job, window)


@router.patch("/{job}", response_model=JobDetail)
async def update_job(job: JobRef, body: JobUpdate, svc: Svc, who: Caller):
    """Change some fields. A secret value sent back as "***" keeps the stored one. A job
    managed by code (`managed_by: "code"`) takes only `enabled` here: 409 for the rest,
    which its declaration and `sundial sync` change."""
    return await svc.update_job(who.name, job, body)


@router.delete("/{job}", response_model=Deleted)
async def delete_job(job: JobRef, svc: Svc, who: Caller):
    """Delete the job with its schedules and its run history. 409 for a job managed by
    code: remove its declaration and run `sundial sync` (which disables it) first."""
    return {"id": await svc.delete_job(who.name, job)}


@router.post("/{job}/trigger", response_model=Triggered, status_code=status.HTTP_202_ACCEPTED,
             responses={200: {"model": Triggered,
                              "description": "The idempotency key was used within 24 hours: "
                                             "the first run, no new one."}})
async def trigger_job(job: JobRef, svc: Svc, who: Caller, response: Response,
                      body: Annotated[TriggerBody | None, Body()] = None):
    """Run now (even if the job is paused); `triggered_by` is the key's name. The body is
    optional: `payload` runs it with arguments (merged into the job's payload, or
    replacing it), `idempotency_key` makes a repeat return the first run."""
    queued, created = await svc.trigger_job(who.name, job, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return queued


@router.post("/{job}/pause", response_model=JobDetail)
async def pause_job(job: JobRef, svc: Svc, who: Caller):
    """Disable the job: its slots pass without runs until it is resumed."""
    return await svc.set_job_enabled(who.name, job, False)


@router.post("/{job}/resume", response_model=JobDetail)
async def resume_job(job: JobRef, svc: Svc, who: Caller):
    return await svc.set_job_enabled(who.name, job, True)
