"""`http`: one HTTP request with httpx.

Payload: {"url": "https://...", "method": "POST", "headers": {...}, "json": {...} or
"body": "text", "expected_status": 200 or [200, 201] (default: any 2xx),
"timeout_seconds": 30, "follow_redirects": true, "max_body_bytes": 65536}.
Result: {"status": 200, "url": final URL, "body": first max_body_bytes, "truncated": bool}.

Only http and https. The target, and every redirect's target, must resolve to public
addresses unless WORKER_HTTP_ALLOWED_NETWORKS allows them (sundial.core.netguard).

Credentials stay with the origin they were written for: once a redirect changes the
scheme, host or port, Authorization, Proxy-Authorization, Cookie and every header named
in `secret_headers` are dropped for that hop and all later ones.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from sundial.core.netguard import check_url
from sundial.core.secrets import masked_url
from sundial.worker.handlers import JobError, PayloadError, RunContext, field

MAX_REDIRECTS = 5
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
DEFAULT_PORTS = {"http": 80, "https": 443}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def run(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    url = field(payload, "url", str)
    method = field(payload, "method", str, "GET").upper()
    if method not in METHODS:
        raise PayloadError(f"payload.method {method!r} must be one of {', '.join(METHODS)}")
    headers = {str(k): str(v) for k, v in field(payload, "headers", dict, {}).items()}
    secret_names = {str(n).lower() for n in field(payload, "secret_headers", list, [])}
    expected = field(payload, "expected_status", (int, list), None)
    timeout_s = float(field(payload, "timeout_seconds", (int, float), 30.0))
    follow = field(payload, "follow_redirects", bool, True)
    limit = int(field(payload, "max_body_bytes", int, 65536))
    content: dict[str, Any] = {}
    if "json" in payload:
        content["json"] = payload["json"]
    elif "body" in payload:
        content["content"] = str(payload["body"]).encode()

    allowed = ctx.settings.http_allowed_networks
    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            await _guard(url, allowed)
            request = client.build_request(method, url, headers=headers, **content)
            response = await client.send(request, stream=True)
            try:
                if follow and response.is_redirect and response.next_request is not None:
                    next_url = response.next_request.url
                    if _origin(next_url) != _origin(request.url):
                        headers = {k: v for k, v in headers.items()
                                   if k.lower() not in CREDENTIAL_HEADERS | secret_names}
                    url = str(next_url)
                    if response.status_code in (301, 302, 303) and method != "HEAD":
                        method, content = "GET", {}
                    continue
                body, truncated = await _read_bounded(response, limit)
            finally:
                await response.aclose()
            break
        else:
            raise JobError(f"more than {MAX_REDIRECTS} redirects, last to {masked_url(url)}")

    # The URL as stored and shown: a password in it is a secret (runs.result and
    # runs.error are readable by viewers).
    shown = masked_url(url)
    result = {"status": response.status_code, "url": shown, "body": body, "truncated": truncated}
    if not _status_ok(response.status_code, expected):
        raise JobError(f"{method} {shown} answered {response.status_code}, expected "
                       f"{expected if expected is not None else '2xx'}", output=body, result=result)
    return result


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme)


async def _guard(url: str, allowed: Any) -> None:
    try:
        await asyncio.to_thread(check_url, url, allowed)
    except ValueError as exc:
        raise PayloadError(f"refused: {exc}") from None


async def _read_bounded(response: httpx.Response, limit: int) -> tuple[str, bool]:
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data.extend(chunk[: limit + 1 - len(data)])
        if len(data) > limit:
            return data[:limit].decode(errors="replace"), True
    return data.decode(errors="replace"), False


def _status_ok(status: int, expected: int | list[int] | None) -> bool:
    if expected is None:
        return 200 <= status < 300
    if isinstance(expected, int):
        return status == expected
    return status in expected
