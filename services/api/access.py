"""The access log: one `http.request` event per request with the method, the path, the
status, the duration and the name of the API key that made it (never the key itself,
never the query string). Probes (`/health`, `/ready`, `/metrics`) log at debug level, so
an orchestrator polling them does not fill the log."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sundial.core.logging import get_logger

log = get_logger("api.access")

PROBES = frozenset({"/health", "/ready", "/metrics"})


class AccessLog:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app fails before a response

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = scope["path"]
            event = log.debug if path in PROBES else log.info
            client = scope.get("client")
            event("http.request", method=scope["method"], path=path, status=status,
                  duration_ms=round((time.perf_counter() - started) * 1000, 2),
                  key=(scope.get("state") or {}).get("key_name"),  # request.state.key_name
                  client=client[0] if client else None)
