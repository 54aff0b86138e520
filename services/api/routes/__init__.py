"""The JSON API under /api, one module per resource. Every route here passes the role
check of sundial.api.auth (attached to the router in sundial.api.app): denied unless a key allows it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from sundial.api.service import Service


async def _service(request: Request) -> Service:
    # async: FastAPI would run a plain function in its thread pool, a thread handoff
    # on every request.
    return request.app.state.service


Svc = Annotated[Service, Depends(_service)]

# The lists that answer a bare JSON array (jobs, schedules) give their total in a header,
# so that older clients read the same body; GET /api/runs has `total` in its envelope.
TOTAL_HEADER = "X-Total-Count"
TOTAL_COUNT: dict[int | str, dict[str, Any]] = {200: {"headers": {TOTAL_HEADER: {
    "description": "How many items the filters select, whatever limit and offset.",
    "schema": {"type": "integer"}}}}}
