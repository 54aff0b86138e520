"""The FastAPI application: `create_app(settings)`.

/health, /ready and /metrics (and the dashboard's HTML shells) need no key; everything
under /api passes the role check of sundial.api.auth. Every error is a JSON `{"detail": ...}`
with the status that means it: 401/403, 404, 409, 413, 422 naming field, value and reason.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sundial.api import dashboard, probes
from sundial.api.access import AccessLog
from sundial.api.apidocs import include_docs
from sundial.api.auth import KeyCache, authorize
from sundial.api.errors import Conflict, Forbidden, Unauthorized
from sundial.api.openapi import install_openapi
from sundial.api.routes import audit, jobs, known_query, notifications, queues, runs, schedules, system
from sundial.api.service import SESSION_SETTINGS, Service
from sundial.api.settings import ApiSettings
from sundial.core import health, jsonb, runtime
from sundial.core.broker import Publisher
from sundial.core.db import CONNECTION_ERRORS, create_pool
from sundial.core.errors import AlreadyExists, InvalidInput, NotFound, SundialError
from sundial.core.logging import get_logger
from sundial.core.migrate import wait_until_migrated
from sundial.core.secrets import masked_url
from sundial.core.settings import load_settings

log = get_logger("api")

HERE = Path(__file__).resolve().parent
# Routes that answer without a key: probes, docs, and the dashboard's HTML shells (their
# data comes from the JSON API, with the user's key).
PUBLIC_PATHS = frozenset({"/health", "/ready", "/metrics", "/docs", "/docs-assets",
                          "/openapi.json"})
_SECRET_FIELD = ("authorization", "secret", "password", "token", "cookie")
_MAX_SHOWN = 200
_MAX_SHOWN_DEPTH = 8


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or load_settings(ApiSettings)  # type: ignore[assignment]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.database_url, min_size=settings.db_pool_min,
                                 max_size=settings.db_pool_max,
                                 server_settings=SESSION_SETTINGS)
        await wait_until_migrated(pool)
        publisher = Publisher(settings.rabbitmq_url, settings.delivery_limit)
        app.state.pool = pool
        app.state.publisher = publisher
        app.state.service = Service(pool, settings, publisher)
        app.state.key_cache = KeyCache(settings.api_key_cache_s)
        log.info("api.started", host=settings.api_host, port=settings.api_port)
        runtime.started()  # from now on SIGTERM stops it cleanly; before, it abandons start-up
        tasks = [asyncio.create_task(_liveness(settings), name="liveness"),
                 asyncio.create_task(app.state.key_cache.follow(settings.database_url, pool),
                                     name="key-changes")]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task, result in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True),
                                    strict=True):
                if not isinstance(result, asyncio.CancelledError | None):
                    log.error("api.task_failed", task=task.get_name(), error=repr(result))
            await publisher.close()
            await pool.close()
            log.info("api.stopped")

    app = FastAPI(title="Sundial", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="A database-driven job scheduler. Send `Authorization: Bearer "
                              "<key>` (from `sundial keys create`) to every /api route: "
                              "`viewer` keys read, `admin` keys also write.")
    app.state.settings = settings
    app.state.public_paths = set(PUBLIC_PATHS)

    api = APIRouter(prefix="/api", dependencies=[Depends(authorize), Depends(known_query)])
    for module in (jobs, schedules, runs, queues, notifications, system, audit):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(probes.router)
    _include_dashboard(app)
    include_docs(app)
    install_openapi(app)
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(AccessLog)  # outermost: every answer is logged, a 413 included
    return app


async def _liveness(settings: ApiSettings) -> None:
    """The heartbeat file `sundial healthcheck api` reads, and the `healthcheck` event."""
    started = time.monotonic()
    last_event = started
    while True:
        health.beat(settings.health_dir, "api")
        if time.monotonic() - last_event >= settings.healthcheck_interval_s:
            last_event = time.monotonic()
            log.info("healthcheck", uptime_s=round(last_event - started))
        await asyncio.sleep(min(5.0, settings.healthcheck_interval_s))


def _include_dashboard(app: FastAPI) -> None:
    """The dashboard's pages and static files: public (each page asks for a key itself)."""
    before = set(route_table(app))
    app.include_router(dashboard.router)
    app.state.public_paths |= {path for _method, path in route_table(app)} - {
        path for _method, path in before}
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.state.public_paths.add("/static")


def route_table(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, routers included (for the role matrix)."""
    table = []

    def walk(routes: Any) -> None:
        for route in routes:
            if hasattr(route, "effective_route_contexts"):  # an included router
                walk(route.effective_route_contexts())
                continue
            path = getattr(route, "path", None)
            methods = getattr(route, "methods", None) or ()
            if path is not None:
                table.extend((m, path) for m in sorted(methods) if m != "HEAD")
    walk(app.router.routes)
    return table


# --- errors ---------------------------------------------------------------------------------


def _shown(field: str, value: Any) -> Any:
    """A value fit to echo back: secrets masked, long values cut, always valid JSON."""
    if _is_secret(field):
        return "***"
    value = _json_safe(value)
    text = json.dumps(value)
    if len(text) > _MAX_SHOWN:
        return text[:_MAX_SHOWN] + "…"
    return value


def _is_secret(field: str) -> bool:
    return any(s in field.lower() for s in _SECRET_FIELD)


def _json_safe(value: Any) -> Any:
    """`value` as JSON that any client can read: NaN and infinities as the strings "NaN",
    "Infinity", a lone surrogate as its escape, a URL's password and the values of keys
    named like a secret as "***", nesting beyond a few levels as "…"."""
    return jsonb.render(value, max_depth=_MAX_SHOWN_DEPTH, too_deep="…",
                        text=lambda text: jsonb.printable(masked_url(text)),
                        hidden=_is_secret, other=jsonable_encoder)


def _problem(field: str, value: Any, reason: str) -> dict[str, Any]:
    field, reason = jsonb.printable(field), jsonb.printable(reason)
    shown = _shown(field, value)
    return {"field": field, "value": shown, "reason": reason,
            "loc": field.split("."), "msg": f"{field}: {reason}"}


def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    problem = _problem(exc.field, exc.value, exc.reason)  # type: ignore[attr-defined]
    return JSONResponse({"detail": [problem]}, status_code=422)


def _request_invalid(_request: Request, exc: Exception) -> JSONResponse:
    problems = []
    for err in exc.errors():  # type: ignore[attr-defined]
        if err.get("type") == "json_invalid":
            where = err.get("loc", ("body", "?"))[-1]
            why = (err.get("ctx") or {}).get("error", "it cannot be read")
            problems.append(_problem("body", None, f"is not valid JSON ({why} at character "
                                                   f"{where}); send a JSON object"))
            continue
        loc = list(err.get("loc", ()))
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:] or loc
        reason = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        # A missing field's "input" is the whole object around it: nothing to show.
        value = None if err.get("type") == "missing" else err.get("input")
        problems.append(_problem(_field(loc), value, reason))
    return JSONResponse({"detail": problems}, status_code=422)


def _field(loc: list[Any]) -> str:
    """pydantic's ("schedules", 0, "cron") as "schedules[0].cron", as InvalidInput names it."""
    field = ""
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else f".{part}" if field else str(part)
    return field or "body"


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    status = exc.status_code  # type: ignore[attr-defined]
    if status == 400:  # FastAPI's answer to a body that is not even text
        problem = _problem("body", None, "is not valid JSON (it is not UTF-8 text); send a "
                                         "JSON object")
        return JSONResponse({"detail": [problem]}, status_code=422)
    return JSONResponse({"detail": exc.detail}, status_code=status,  # type: ignore[attr-defined]
                        headers=exc.headers)  # type: ignore[attr-defined]


def _status(code: int, headers: dict[str, str] | None = None):
    def handler(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=code, headers=headers)
    return handler


def _install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(InvalidInput, _invalid)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Unauthorized, _status(401, {"WWW-Authenticate": "Bearer"}))
    app.add_exception_handler(Forbidden, _status(403))
    app.add_exception_handler(NotFound, _status(404))
    app.add_exception_handler(AlreadyExists, _status(409))
    app.add_exception_handler(Conflict, _status(409))
    app.add_exception_handler(SundialError, _status(400))
    # A safety net: input the checks above missed still gets a 4xx, never a 500.
    app.add_exception_handler(asyncpg.DataError, _database_refused)
    app.add_exception_handler(asyncpg.IntegrityConstraintViolationError, _database_refused)
    # The database or the broker is down: the caller may retry.
    app.add_exception_handler(asyncpg.PostgresConnectionError, _unavailable)
    for error in CONNECTION_ERRORS:
        if error not in (OSError, TimeoutError):
            app.add_exception_handler(error, _unavailable)
    # A host that cannot write (an old primary after a failover): the pool has replaced
    # its connections, so the retry reaches the one that can.
    app.add_exception_handler(asyncpg.ReadOnlySQLTransactionError, _unavailable)


# What PostgreSQL refused, in Sundial's words; its own text goes to the log only.
_DATA_REASONS = {
    "22003": "has a number out of the range the database can store",
    "22021": "has text with a character the database cannot store",
    "22P05": "has text with a character the database cannot store",
    "22P02": "has a value that is not in the form its field needs",
}


def _database_refused(request: Request, exc: Exception) -> JSONResponse:
    sqlstate = getattr(exc, "sqlstate", None)
    log.warning("api.database_refused", method=request.method, path=request.url.path,
                sqlstate=sqlstate, error=str(exc))
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return JSONResponse({"detail": "the change conflicts with the stored data (another "
                                       "change may have come first); reload and try again"},
                            status_code=409)
    reason = _DATA_REASONS.get(sqlstate, "has a value the database cannot store; check the "
                                         "fields against the limits in docs/api.md")
    return JSONResponse({"detail": [_problem("body", None, reason)]}, status_code=422)


def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.error("api.unavailable", error=repr(exc))
    return JSONResponse({"detail": "the database is unavailable; try again"}, status_code=503,
                        headers={"Retry-After": "5"})


# --- body size ---------------------------------------------------------------------------------


class BodyLimit:
    """413 for a body over `max_bytes`, by Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            response = JSONResponse({"detail": f"the request body is larger than "
                                               f"{self.max_bytes} bytes"}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, f"the request body is larger than "
                                             f"{self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)
