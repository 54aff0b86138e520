"""/api/runs: the history of every execution, planned or manual."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from sundial.api.auth import Caller
from sundial.api.routes import Svc
from sundial.api.schemas import MAX_ID, Bound, CancelResult, Queued, Run, RunPage, RunStatus

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
                    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID,
                                                        description="next_cursor of the previous page.")] = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50):
    """Newest first. Repeat `status` to ask for several."""
    items, next_cursor = await svc.list_runs(job=job, schedule_id=schedule, statuses=status,
                                             since=since, until=until, cursor=cursor, limit=limit)
    return {"items": items, "next_cursor": next_cursor}


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
    be finished."""
    return {"run_id": await svc.retry_run(who.name, run_id)}
