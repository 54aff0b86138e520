"""`http`: one HTTP request with httpx.

Payload: {"url": "https://...", "method": "POST", "headers": {...}, "json": {...} or
"body": "text", "expected_status": 200 or [200, 201] (default: any 2xx),
"timeout_seconds": 30, "follow_redirects": true, "max_body_bytes": 65536}.
Result: {"status": 200, "url": final URL, "body": the body's first max_body_bytes,
"truncated": bool, "max_body_bytes": the limit that applied}.

Only http and https. The target, and every redirect's target, must resolve to public
addresses unless WORKER_HTTP_ALLOWED_NETWORKS allows them (sundial.core.netguard). Each
hop's host is resolved once and the request connects to an address that check saw, never
to what the name answers later: the URL keeps the name for the Host header, the TLS
server name (SNI) and the certificate check. Each hop has a client of its own, so no
connection opened for one name or address carries another hop's request.

Credentials stay with the origin they were written for: once a redirect changes the
scheme, host or port, Authorization, Proxy-Authorization, Cookie and every header named
in `secret_headers` are dropped for that hop and all later ones.

The body is read as it arrives, and decoded here (gzip, deflate), up to
min(max_body_bytes, WORKER_HTTP_MAX_BODY_BYTES) bytes: the rest is never read, and
"truncated" says there was more.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from typing import Any

import httpx

from sundial.core.netguard import Address, checked_addresses
from sundial.core.pinned import pinned_request
from sundial.core.secrets import masked_url, same_origin
from sundial.worker.handlers import JobError, PayloadError, RunContext, field

MAX_REDIRECTS = 5
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ENCODINGS = "gzip, deflate"  # the content codings the worker decodes within the limit
# Raw bytes a compressed body may take beyond the limit before reading stops: a real
# compressed body is smaller than what it decodes to, plus a header.
RAW_SLACK_BYTES = 65536


@dataclass(frozen=True)
class Hop:
    """One request of a run: the first, or one a redirect asks for."""

    method: str
    url: httpx.URL
    headers: dict[str, str]
    content: dict[str, Any]

    def redirected(self, response: httpx.Response, dropped: frozenset[str]) -> Hop:
        """The request the redirect `response` asks for. Another origin gets none of the
        `dropped` headers (credentials), nor a Host header written for this one."""
        url = self.url.join(response.headers["location"])
        headers = self.headers
        if not same_origin(str(url), str(self.url)):
            headers = {k: v for k, v in headers.items() if k.lower() not in dropped | {"host"}}
        if response.status_code in (301, 302, 303) and self.method != "HEAD":
            return Hop("GET", url, headers, {})
        return Hop(self.method, url, headers, self.content)


async def run(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    url = field(payload, "url", str)
    method = field(payload, "method", str, "GET").upper()
    if method not in METHODS:
        raise PayloadError(f"payload.method {method!r} must be one of {', '.join(METHODS)}")
    headers = {str(k): str(v) for k, v in field(payload, "headers", dict, {}).items()}
    secret_names = frozenset(str(n).lower() for n in field(payload, "secret_headers", list, []))
    expected = field(payload, "expected_status", (int, list), None)
    timeout_s = float(field(payload, "timeout_seconds", (int, float), 30.0))
    follow = field(payload, "follow_redirects", bool, True)
    limit = int(field(payload, "max_body_bytes", int, 65536))
    if limit < 0:
        raise PayloadError(f"payload.max_body_bytes {limit} must be a number of bytes >= 0")
    limit = min(limit, ctx.settings.http_max_body_bytes)
    content: dict[str, Any] = {}
    if "json" in payload:
        content["json"] = payload["json"]
    elif "body" in payload:
        content["content"] = str(payload["body"]).encode()
    try:
        hop = Hop(method, httpx.URL(url), headers, content)
    except httpx.InvalidURL as exc:
        raise PayloadError(f"payload.url {masked_url(url)!r}: {exc}") from None

    allowed = ctx.settings.http_allowed_networks
    for _ in range(MAX_REDIRECTS + 1):
        addresses = await _guard(str(hop.url), allowed)
        async with _pinned(hop, addresses, timeout_s) as response:
            if not (follow and response.is_redirect):
                status = response.status_code
                body, truncated = await _read_bounded(response, limit)
                break
            hop = hop.redirected(response, CREDENTIAL_HEADERS | secret_names)
    else:
        raise JobError(f"more than {MAX_REDIRECTS} redirects, last to {masked_url(str(hop.url))}")

    # The URL as stored and shown: a password in it is a secret (runs.result and
    # runs.error are readable by viewers).
    shown = masked_url(str(hop.url))
    result = {"status": status, "url": shown, "body": body, "truncated": truncated,
              "max_body_bytes": limit}
    if not _status_ok(status, expected):
        raise JobError(f"{hop.method} {shown} answered {status}, expected "
                       f"{expected if expected is not None else '2xx'}", output=body, result=result)
    return result


async def _guard(url: str, allowed: Any) -> list[Address]:
    try:
        return await asyncio.to_thread(checked_addresses, url, allowed)
    except ValueError as exc:
        raise PayloadError(f"refused: {exc}") from None


def _pinned(hop: Hop, addresses: list[Address], timeout_s: float):
    """The response to `hop` (its body unread), from a connection to a checked address."""
    headers = httpx.Headers(hop.headers)
    headers.setdefault("Accept-Encoding", ENCODINGS)
    return pinned_request(hop.method, hop.url, headers, hop.content, addresses, timeout_s)


async def _read_bounded(response: httpx.Response, limit: int) -> tuple[str, bool]:
    """The body's first `limit` bytes, decoded, and whether there was more. Nothing past
    that is read, and a compressed body is inflated no further than that either, so one
    that expands to gigabytes costs what a plain one does."""
    decode = _decoder(response.headers.get("content-encoding", ""))
    data = bytearray()
    read = 0
    async for raw in response.aiter_raw():
        read += len(raw)
        # Room is >= 1 here: a zlib max_length of 0 would mean no limit at all.
        data += decode(raw, limit + 1 - len(data))
        if len(data) > limit or read > limit + RAW_SLACK_BYTES:
            return data[:limit].decode(errors="replace"), True
        if decode.done:
            break
    return data.decode(errors="replace"), False


class _Identity:
    done = False

    def __call__(self, raw: bytes, room: int) -> bytes:
        return raw[:room]


class _Inflate:
    """gzip, or deflate (zlib-wrapped, or raw as some servers send it), never more than
    `room` bytes out of one piece of the body."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | (16 if encoding == "gzip" else 0))
        self._started = False

    @property
    def done(self) -> bool:
        return self._zlib.eof

    def __call__(self, raw: bytes, room: int) -> bytes:
        try:
            try:
                out = self._zlib.decompress(raw, room)
            except zlib.error:
                if self.encoding != "deflate" or self._started:
                    raise
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                out = self._zlib.decompress(raw, room)
        except zlib.error as exc:
            raise JobError(f"the response body is not valid {self.encoding}: {exc}") from None
        self._started = True
        return out


def _decoder(content_encoding: str) -> _Identity | _Inflate:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return _Identity()
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _Inflate("deflate" if encoding == "deflate" else "gzip")
    raise JobError(f"the response's Content-Encoding {content_encoding!r} is not one the worker "
                   f"decodes ({ENCODINGS}); leave the Accept-Encoding header out of the job")


def _status_ok(status: int, expected: int | list[int] | None) -> bool:
    if expected is None:
        return 200 <= status < 300
    if isinstance(expected, int):
        return status == expected
    return status in expected
