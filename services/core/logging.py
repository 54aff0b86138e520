"""structlog set-up: one JSON line per event on stdout (errors also on stderr)."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

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


class _StdLogger:
    """Writes each rendered event to stdout, and errors to stderr as well."""

    def _out(self, message: str) -> None:
        print(message, file=sys.stdout, flush=True)

    def _both(self, message: str) -> None:
        self._out(message)
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = warn = msg = _out
    error = critical = exception = fatal = _both


def configure_logging(level: str = "INFO", fmt: str = "json", service: str | None = None) -> None:
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty()))
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
        structlog.processors.format_exc_info if fmt == "json" else structlog.dev.set_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=lambda *_: _StdLogger(),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    if service:
        structlog.contextvars.bind_contextvars(service=service)
    # Libraries log through the standard library: keep their warnings, in one line.
    logging.basicConfig(level=max(logging.WARNING, getattr(logging, level)), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
