"""The OpenAPI schema with every status the API can answer, added to each operation by
rule rather than route by route (a new route gets them too):

- every /api route: 401 (no valid key) and 503 (the database is unavailable);
- a write (not GET): 403 (a viewer key), 409 (a conflict with the stored data, or another
  write that came first) and 413 (a body over API_MAX_BODY_BYTES);
- a route with a path parameter, or naming another object (the `job`, `channel` and
  `rule` filters, a body's `job_id`, `schedule_id` or `channel_id`): 404;
- a route with parameters or a body, and every write: 422 with the body of
  sundial.api.app's error handler (`Invalid`), in place of FastAPI's own.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from sundial.api.schemas import Error, Invalid

# Parameters and body fields naming another object.
REFERENCES = frozenset({"job", "job_id", "schedule_id", "channel", "channel_id", "rule"})
READS = frozenset({"get", "head", "options"})
SCHEMAS = "#/components/schemas/"

_WHY = {
    "401": "No valid API key: send `Authorization: Bearer <key>`.",
    "403": "This key's role may not do that (a viewer key on a write).",
    "404": "No such job, schedule, run, notification channel or rule (in the path, a filter "
           "or the body).",
    "409": "A conflict: a duplicate job name, a run not in a state that allows this, or "
           "another write that came first.",
    "413": "The request body is larger than API_MAX_BODY_BYTES.",
    "422": "Invalid input: each problem names the field, the value and the fix.",
    "503": "The database is unavailable; try again (see Retry-After).",
}


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and /openapi.json) return the completed schema."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            app.openapi_schema = complete(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (Error, Invalid):
        definition = model.model_json_schema(ref_template=SCHEMAS + "{model}")
        components.update(definition.pop("$defs", {}))
        components[model.__name__] = definition
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in statuses(path, method, operation, components):
                model = Invalid if status == "422" else Error
                responses[status] = {"description": _WHY[status], "content": {
                    "application/json": {"schema": {"$ref": SCHEMAS + model.__name__}}}}
    return schema


def statuses(path: str, method: str, operation: dict[str, Any],
             components: dict[str, Any]) -> list[str]:
    """The error statuses of one operation, by the rules above."""
    if not path.startswith("/api/"):
        return []  # the probes declare their own (sundial.api.probes)
    write = method not in READS
    parameters = operation.get("parameters", [])
    body = operation.get("requestBody")
    found = ["401"]
    if write:
        found.append("403")
    named = {p["name"] for p in parameters} | _body_fields(body, components)
    if any(p["in"] == "path" for p in parameters) or named & REFERENCES:
        found.append("404")
    if write:
        found += ["409", "413"]
    if write or parameters or body:
        found.append("422")
    return [*found, "503"]


def _body_fields(body: dict[str, Any] | None, components: dict[str, Any]) -> set[str]:
    if not body:
        return set()
    schema = body.get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        schema = components.get(schema["$ref"].removeprefix(SCHEMAS), {})
    # A body whose fields depend on its kind has them in one object per kind.
    return {name for variant in [schema, *schema.get("oneOf", [])]
            for name in variant.get("properties", {})}
