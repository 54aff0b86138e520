"""/api/runs: the history of every execution, planned or manual."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from sundial.api.auth import Caller
from sundial.api.routes import Svc
from sundial.api.schemas import (
    BULK_MAX_RUNS,
    MAX_ID,
    Bound,
    BulkResult,
    CancelResult,
    CancelRuns,
    Queued,
    QueueName,
    RetryRuns,
    Run,
    RunPage,
    RunStatus,
)

router = APIRouter(prefix="/runs", tags=["runs"])
RunId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("", response_model=RunPage)
async def list_runs(svc: Svc,
                    job: Annotated[str | None, Query(min_length=1, max_length=200,
                                                     description="A job's id or name.")] = None,
                    schedule: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
                    status: Annotated[list[RunStatus] | None, Query()] = None,
                    since: Annotated[Bound | None, Query(description="Created at or after.")] = None,
                    until: Annotated[Bound | None, Query(description="Created before.")] = None,
                    queue: Annotated[QueueName | None, Query(description="Runs of the jobs "
                                                                         "of this queue.")] = None,
                    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID,
                                                        description="next_cursor of the previous page.")] = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50):
    """Newest first. Repeat `status` to ask for several. `total` counts every run the
    filters select, on every page."""
    return await svc.list_runs(job=job, schedule_id=schedule, statuses=status, since=since,
                               until=until, queue=queue, cursor=cursor, limit=limit)


_CAP = (f"At most {BULK_MAX_RUNS} runs: more is a 422 naming how many, and nothing "
        "changes. `dry_run` only counts them.")


@router.post("/cancel", response_model=BulkResult, response_model_exclude_none=True,
             description="Cancel every queued or running run the filters select (those of "
                         "`GET /api/runs`; `status` among queued and running, both if left "
                         "out), as one cancel each would. " + _CAP)
async def cancel_runs(body: CancelRuns, svc: Svc, who: Caller):
    return await svc.cancel_runs(who.name, body)


@router.post("/retry", response_model=BulkResult, response_model_exclude_none=True,
             description="Retry every failed, dead, timed_out or cancelled run the filters "
                         "select (`status` among those, all four if left out): a new manual "
                         "run each, but for a run whose retry is queued, running or "
                         "succeeded already (one per chain). " + _CAP)
async def retry_runs(body: RetryRuns, svc: Svc, who: Caller):
    return await svc.retry_runs(who.name, body)


@router.get("/{run_id}", response_model=Run)
async def get_run(run_id: RunId, svc: Svc):
    return await svc.get_run(run_id)


@router.post("/{run_id}/cancel", response_model=CancelResult)
async def cancel_run(run_id: RunId, svc: Svc, who: Caller):
    """A queued run ends `cancelled` at once; a running one is asked to stop and ends
    `cancelled` within a worker heartbeat. A finished run: 409."""
    return await svc.cancel_run(who.name, run_id)


@router.post("/{run_id}/retry", response_model=Queued, status_code=202)
async def retry_run(run_id: RunId, svc: Svc, who: Caller):
    """Run the job again: a new manual run (attempt 1) triggered by this key. The run must
    have failed, died, timed out or been cancelled: a succeeded run is a 409 (trigger its
    job instead), as is a run whose retry is queued, running or succeeded already."""
    return {"run_id": await svc.retry_run(who.name, run_id)}
