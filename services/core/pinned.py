"""HTTP requests to an address the SSRF guard checked (sundial.core.netguard), never to
what the name resolves to later: http jobs and webhook notifications both call out this
way.

The URL keeps the host name for the Host header, the TLS server name (SNI) and the
certificate check; the connection goes to one of the checked addresses. Each request has
a client of its own, so no connection opened for one name or address carries another's.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from sundial.core.netguard import Address


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One context for every request: certificates verified against certifi's authorities
    (SSL_CERT_FILE and SSL_CERT_DIR are ignored, as every other proxy or TLS variable
    is) and against the URL's host name."""
    return httpx.create_ssl_context(trust_env=False)


@asynccontextmanager
async def pinned_request(method: str, url: httpx.URL, headers: httpx.Headers | Mapping[str, str],
                         content: Mapping[str, Any], addresses: list[Address], timeout_s: float,
                         ) -> AsyncIterator[httpx.Response]:
    """The response (its body unread) from a connection to the first of `addresses` that
    accepts one; `content` is httpx's json= or content= argument."""
    headers = httpx.Headers(headers)
    headers.setdefault("Host", url.netloc.decode("ascii"))
    server_name = url.raw_host.decode("ascii")
    async with httpx.AsyncClient(timeout=timeout_s, verify=tls_context(), trust_env=False) as client:
        for tried, address in enumerate(addresses, start=1):
            request = client.build_request(
                method, url.copy_with(host=str(address)), headers=headers,
                extensions={"sni_hostname": server_name}, **content)
            try:
                response = await client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout):  # the next checked address
                if tried == len(addresses):
                    raise
                continue
            try:
                yield response
            finally:
                await response.aclose()
            return
