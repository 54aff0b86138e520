"""What each handler's payload must look like, and which of its fields are secret.

Checked when a job is written, so a job that cannot work is refused with a 422 naming
the field instead of failing at every run. The worker's handlers stay the authority on
execution; these checks mirror their documented payloads.

Secret fields: an http job's `Authorization` and `Proxy-Authorization` headers, any
header named in `secret_headers`, and every value under `secrets` (any handler). They
are stored encrypted in jobs.secret_payload, in the payload's own shape, and their
places in jobs.payload hold "***"; the worker merges them back (sundial.core.secrets).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sundial.core.errors import InvalidInput
from sundial.core.netguard import check_url

MASK = "***"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def validate(handler: str, payload: dict[str, Any], *, max_bytes: int,
             allowed_networks: Iterable[Any] = ()) -> None:
    """Raise InvalidInput naming the payload field that cannot work with `handler`.

    Blocking for http (the SSRF guard resolves the host): call it in a thread.
    """
    size = len(json.dumps(payload, separators=(",", ":")).encode())
    if size > max_bytes:
        raise InvalidInput("payload", f"{size} bytes", f"is too large; at most {max_bytes} bytes")
    _refuse_nul(payload, "payload")
    check = _CHECKS.get(handler)
    if check is not None:
        check(payload, tuple(allowed_networks))
    secrets = payload.get("secrets")
    if secrets is not None and not isinstance(secrets, dict):
        raise InvalidInput("payload.secrets", secrets, "must be an object of secret values")


def _refuse_nul(value: Any, where: str) -> None:
    # PostgreSQL's jsonb cannot hold U+0000.
    if isinstance(value, str) and "\x00" in value:
        raise InvalidInput(where, value, "must not contain NUL characters")
    if isinstance(value, dict):
        for k, v in value.items():
            _refuse_nul(k, where)
            _refuse_nul(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _refuse_nul(v, f"{where}[{i}]")


def _typed(payload: dict[str, Any], name: str, kinds: tuple[type, ...], what: str,
           required: bool = False) -> Any:
    value = payload.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"payload.{name}", None, f"is required ({what})")
        return None
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise InvalidInput(f"payload.{name}", value, f"must be {what}")
    return value


def _sleep(payload: dict[str, Any], _allowed: tuple) -> None:
    seconds = _typed(payload, "seconds", (int, float), "a number of seconds >= 0")
    if seconds is not None and not 0 <= seconds <= 7 * 86400:
        raise InvalidInput("payload.seconds", seconds, "must be between 0 and 604800")


def _http(payload: dict[str, Any], allowed: tuple) -> None:
    url = _typed(payload, "url", (str,), "an http:// or https:// URL", required=True)
    try:
        check_url(url, allowed)
    except ValueError as exc:
        raise InvalidInput("payload.url", url, _reason(str(exc), url)) from None
    method = _typed(payload, "method", (str,), "an HTTP method")
    if method is not None and method.upper() not in HTTP_METHODS:
        raise InvalidInput("payload.method", method, "must be one of " + ", ".join(HTTP_METHODS))
    headers = _typed(payload, "headers", (dict,), "an object of header names to values") or {}
    for name, value in headers.items():
        if not isinstance(value, str):
            raise InvalidInput(f"payload.headers.{name}", value, "must be a string")
    names = _typed(payload, "secret_headers", (list,), "a list of header names") or []
    if not all(isinstance(n, str) for n in names):
        raise InvalidInput("payload.secret_headers", names, "must be a list of header names")
    expected = _typed(payload, "expected_status", (int, list), "a status code or a list of them")
    if isinstance(expected, list) and not all(isinstance(s, int) for s in expected):
        raise InvalidInput("payload.expected_status", expected, "must be a list of status codes")
    timeout = _typed(payload, "timeout_seconds", (int, float), "a number of seconds > 0")
    if timeout is not None and not timeout > 0:
        raise InvalidInput("payload.timeout_seconds", timeout, "must be greater than 0")


def _reason(message: str, url: str) -> str:
    # netguard's message starts with "url '<url>': "; the field and value are named already.
    return message.removeprefix(f"url {url!r}: ")


def _command(payload: dict[str, Any], _allowed: tuple) -> None:
    argv = _typed(payload, "argv", (list,), "a non-empty list of strings (no shell)",
                  required=True)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise InvalidInput("payload.argv", argv, "must be a non-empty list of strings (no shell)")
    _typed(payload, "cwd", (str,), "a directory path")
    _typed(payload, "env", (dict,), "an object of variable names to values")


def _python(payload: dict[str, Any], _allowed: tuple) -> None:
    _typed(payload, "function", (str,), "the name a @job function was registered under")
    _typed(payload, "args", (list,), "a list of positional arguments")
    _typed(payload, "kwargs", (dict,), "an object of keyword arguments")


_CHECKS = {"sleep": _sleep, "http": _http, "command": _command, "python": _python}


def split_secrets(handler: str, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(payload with secret values masked, the secret values in the payload's shape)."""
    public = dict(payload)
    secret: dict[str, Any] = {}
    if handler == "http" and isinstance(payload.get("headers"), dict):
        named = {n.lower() for n in payload.get("secret_headers") or [] if isinstance(n, str)}
        headers = dict(payload["headers"])
        hidden = {k: v for k, v in headers.items() if k.lower() in SECRET_HEADERS | named}
        if hidden:
            secret["headers"] = hidden
            public["headers"] = {k: (MASK if k in hidden else v) for k, v in headers.items()}
    if isinstance(payload.get("secrets"), dict) and payload["secrets"]:
        secret["secrets"] = dict(payload["secrets"])
        public["secrets"] = dict.fromkeys(payload["secrets"], MASK)
    return public, secret


def keep_masked(secret: dict[str, Any], stored: dict[str, Any], where: str = "payload"
                ) -> dict[str, Any]:
    """The new secret values, where a "***" sent back means "keep the stored value"."""
    kept: dict[str, Any] = {}
    for name, value in secret.items():
        if isinstance(value, dict):
            # The stored value may have another shape (a string where an object is sent).
            inner = stored.get(name)
            kept[name] = keep_masked(value, inner if isinstance(inner, dict) else {},
                                     f"{where}.{name}")
        elif value == MASK:
            if name not in stored:
                raise InvalidInput(f"{where}.{name}", MASK, "no stored secret to keep; send the value")
            kept[name] = stored[name]
        else:
            kept[name] = value
    return kept
