"""What each handler's payload must look like, and which of its fields are secret.

Checked when a job is written, so a job that cannot work is refused with a 422 naming
the field instead of failing at every run. The worker's handlers stay the authority on
execution; these checks mirror their documented payloads.

Limits (any handler): at most MAX_DEPTH levels of nested objects and lists, and
API_MAX_PAYLOAD_BYTES as JSON; text is valid Unicode without NUL, numbers are finite
(PostgreSQL's jsonb can hold nothing else).

Secret fields: an http job's `Authorization`, `Proxy-Authorization` and `Cookie` headers,
any header named in `secret_headers`, the password of its `url` (`https://user:pw@host/`),
and every value under `secrets` (any handler). They are stored encrypted in
jobs.secret_payload, in the payload's own shape, and their places in jobs.payload hold
"***"; the worker merges them back (sundial.core.secrets).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from sundial.core.commandguard import check_payload
from sundial.core.errors import InvalidInput
from sundial.core.jsonb import MAX_DEPTH
from sundial.core.netguard import check_url
from sundial.core.secrets import MASK, masked_url, same_origin, url_password, with_password

SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_HTTP_BODY_BYTES = 1024 * 1024
MAX_HTTP_TIMEOUT_S = 7 * 86400


def validate(handler: str, payload: dict[str, Any], *, max_bytes: int,
             allowed_networks: Iterable[Any] = ()) -> None:
    """Raise InvalidInput naming the payload field that cannot work with `handler`.

    Blocking for http (the SSRF guard resolves the host): call it in a thread.
    """
    _check_values(payload, "payload", 1)
    size = len(json.dumps(payload, separators=(",", ":")).encode())
    if size > max_bytes:
        raise InvalidInput("payload", f"{size} bytes", f"is too large; at most {max_bytes} bytes")
    check = _CHECKS.get(handler)
    if check is not None:
        check(payload, tuple(allowed_networks))
    secrets = payload.get("secrets")
    if secrets is not None and not isinstance(secrets, dict):
        raise InvalidInput("payload.secrets", secrets, "must be an object of secret values")


def _check_values(value: Any, where: str, depth: int) -> None:
    """Refuse what jsonb cannot hold (NUL, a lone surrogate, NaN, infinities) and nesting
    deeper than MAX_DEPTH (a response could not show it)."""
    if isinstance(value, str):
        reason = unstorable_text(value)
        if reason:
            raise InvalidInput(where, value, reason)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(where, value, "must be a finite number (JSON has no NaN or Infinity)")
    elif isinstance(value, dict | list):
        if depth > MAX_DEPTH:
            raise InvalidInput("payload", f"more than {MAX_DEPTH} levels",
                               f"is nested too deeply (at {where[:120]}); at most {MAX_DEPTH} "
                               "levels of objects and lists")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                _check_values(key, f"{where}.{key}", depth)
                _check_values(item, f"{where}.{key}", depth + 1)
            else:
                _check_values(item, f"{where}[{key}]", depth + 1)


def unstorable_text(text: str) -> str | None:
    """Why PostgreSQL cannot store `text`, if it cannot."""
    if "\x00" in text:
        return "must not contain NUL characters"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode text (it has a lone surrogate such as \\ud800)"
    return None


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
    if timeout is not None and not 0 < timeout <= MAX_HTTP_TIMEOUT_S:
        raise InvalidInput("payload.timeout_seconds", timeout,
                           f"must be greater than 0 and at most {MAX_HTTP_TIMEOUT_S}")
    limit = _typed(payload, "max_body_bytes", (int,), "a whole number of bytes")
    if limit is not None and not 0 <= limit <= MAX_HTTP_BODY_BYTES:
        raise InvalidInput("payload.max_body_bytes", limit,
                           f"must be between 0 and {MAX_HTTP_BODY_BYTES} (1 MiB)")
    _typed(payload, "follow_redirects", (bool,), "true or false")


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
    check_payload(payload)


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
    if handler == "http" and isinstance(payload.get("url"), str) and url_password(payload["url"]):
        secret["url"] = payload["url"]
        public["url"] = masked_url(payload["url"])
    if isinstance(payload.get("secrets"), dict) and payload["secrets"]:
        secret["secrets"] = dict(payload["secrets"])
        public["secrets"] = dict.fromkeys(payload["secrets"], MASK)
    return public, secret


def keep_masked(secret: dict[str, Any], stored: dict[str, Any], where: str = "payload"
                ) -> dict[str, Any]:
    """The new secret values, where a "***" sent back means "keep the stored value" (for a
    URL: its stored password)."""
    kept: dict[str, Any] = {}
    for name, value in secret.items():
        if isinstance(value, dict):
            # The stored value may have another shape (a string where an object is sent).
            inner = stored.get(name)
            kept[name] = keep_masked(value, inner if isinstance(inner, dict) else {},
                                     f"{where}.{name}")
        elif value == MASK or (isinstance(value, str) and url_password(value) == MASK):
            old = stored.get(name)
            if value != MASK:  # a URL sent back with its password masked
                password = url_password(old) if isinstance(old, str) else None
                if password is not None and not same_origin(old, value):
                    raise InvalidInput(f"{where}.{name}", masked_url(value),
                                       "the stored password belongs to another scheme, host "
                                       "or port; send the password with the new URL")
                old = None if password is None else with_password(value, password)
            if old is None:
                raise InvalidInput(f"{where}.{name}", masked_url(value),
                                   "no stored secret to keep; send the value")
            kept[name] = old
        else:
            kept[name] = value
    return kept

