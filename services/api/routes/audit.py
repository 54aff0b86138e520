"""/api/audit: who changed what, through the API or the CLI. Read by viewers too, like
every other record: it holds key names and changes, never a secret value."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from sundial.api.routes import Svc
from sundial.api.schemas import MAX_ID, AuditPage, Bound

router = APIRouter(prefix="/audit", tags=["audit"])
Text = Annotated[str | None, Query(min_length=1, max_length=200)]


@router.get("", response_model=AuditPage)
async def list_audit(svc: Svc, actor: Text = None,
                     action: Annotated[str | None, Query(
                         min_length=1, max_length=200,
                         description="An action (job.create), or every action of a kind "
                                     "with a prefix ending in '.' (job.).")] = None,
                     target_type: Text = None, target_id: Text = None,
                     since: Annotated[Bound | None, Query(description="At or after.")] = None,
                     until: Annotated[Bound | None, Query(description="Before.")] = None,
                     cursor: Annotated[int | None, Query(ge=1, le=MAX_ID, description=(
                         "next_cursor of the previous page."))] = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50):
    """Newest first."""
    items, next_cursor = await svc.list_audit(
        actor=actor, action=action, target_type=target_type, target_id=target_id,
        since=since, until=until, cursor=cursor, limit=limit)
    return {"items": items, "next_cursor": next_cursor}
