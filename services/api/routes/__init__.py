"""The JSON API under /api, one module per resource. Every route here passes the role
check of sundial.api.auth (attached to the router in sundial.api.app): denied unless a key allows it."""

from __future__ import annotations

from typing import Annotated, Any, get_args, get_origin

from fastapi import Depends, Request
from fastapi.routing import APIRoute

from sundial.api.service import Service
from sundial.core.errors import InvalidInput


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


async def known_query(request: Request) -> None:
    """422 for a query parameter the route does not have (a misspelt filter would otherwise
    be ignored and answer with everything), or one that takes one value given several
    times (only the last would count)."""
    known = _query_params(request.scope["route"])
    for name, value in request.query_params.multi_items():
        if name not in known:
            raise InvalidInput(name, value, "is not a parameter of this route; it has "
                               + (", ".join(sorted(known)) or "none"))
        if not known[name] and len(values := request.query_params.getlist(name)) > 1:
            raise InvalidInput(name, values, "takes one value; give it once")


def _query_params(route: APIRoute) -> dict[str, bool]:
    """The route's query parameters, each with whether it takes several values: worked
    out once per route (kept on it), not at every request."""
    known = route.__dict__.get("_sundial_query_params")
    if known is None:
        known = route._sundial_query_params = _walk_query_params(route)
    return known


def _walk_query_params(route: APIRoute) -> dict[str, bool]:
    params, dependants = {}, [route.dependant]
    while dependants:
        dependant = dependants.pop()
        params.update((p.alias, _is_list(p.field_info.annotation)) for p in dependant.query_params)
        dependants.extend(dependant.dependencies)
    return params


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) in (list, tuple, set, frozenset):
        return True
    return any(_is_list(arg) for arg in get_args(annotation) if arg is not type(None))
