"""structlog set-up: one line per event on one stream (stdout for the services, so a
container's log holds each event once), libraries' own log records included."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, TextIO

import structlog

_SECRET_KEY = re.compile(r"(password|passwd|secret|token|authorization|api_key|apikey|cookie"
                         r"|encryption_key)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+):[^@/\s]+@", re.IGNORECASE)


def redact(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Never log a secret: mask secret-looking keys and passwords inside URLs."""
    for key, value in list(event.items()):
        if _SECRET_KEY.search(key):
            event[key] = "***"
        elif isinstance(value, str) and "://" in value:
            event[key] = _URL_PASSWORD.sub(r"\g<scheme>:***@", value)
    return event


def configure_logging(level: str = "INFO", fmt: str = "json", service: str | None = None,
                      stream: TextIO | None = None) -> None:
    """Events at `level` and above as JSON (or console) lines on `stream` (default stdout;
    the admin CLI passes stderr so that its own output stays clean). Records that
    libraries log through the standard library go the same way, rendered alike, from
    WARNING up."""
    out = stream or sys.stdout
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=out.isatty()))
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
        structlog.processors.format_exc_info if fmt == "json" else structlog.dev.set_exc_info,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    if service:
        structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.WARNING, getattr(logging, level)))


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
