"""The http handler reads a response body no further than its limit, however large the
body or however far a compressed one expands; real listeners send 100 MB."""

from __future__ import annotations

import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sundial.worker.handlers import JobError
from tests.integration.test_worker_netguard import run_http

BIG = 100 * 1024 * 1024
CHUNK = b"x" * 65536
LOOPBACK = {"WORKER_HTTP_ALLOWED_NETWORKS": "127.0.0.1/32"}


def _gzipped_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1024 * 1024)
    return b"".join([*(packer.compress(zeros) for _ in range(size // len(zeros))),
                     packer.flush()])


TEXT = b"hello, compressed world\n" * 1000
ENCODED = {  # path: (Content-Encoding, body)
    "/gzip-text": ("gzip", zlib.compress(TEXT, wbits=zlib.MAX_WBITS | 16)),
    "/deflate-text": ("deflate", zlib.compress(TEXT)),
    "/raw-deflate-text": ("deflate", zlib.compress(TEXT, wbits=-zlib.MAX_WBITS)),
    "/broken-gzip": ("gzip", b"this is not gzip"),
    "/brotli": ("br", b"\x0b\x02\x80hello\x03"),
}


class _Big(BaseHTTPRequestHandler):
    """/plain: 100 MB of "x"; /gzip: 100 MB of zeros, gzip-compressed (about 100 KB); the
    paths of ENCODED. Notes in `server.sent` how many bytes it managed to send."""

    def do_GET(self) -> None:
        encoding, body = ENCODED.get(self.path, ("gzip", self.server.gzipped))
        plain = self.path == "/plain"
        self.send_response(200)
        self.send_header("Content-Length", str(BIG if plain else len(body)))
        if not plain:
            self.send_header("Content-Encoding", encoding)
        self.end_headers()
        try:
            if not plain:
                self.wfile.write(body)
                self.server.sent = len(body)
            else:
                while self.server.sent < BIG:
                    self.wfile.write(CHUNK)
                    self.server.sent += len(CHUNK)
        except OSError:  # the client went away
            pass
        finally:
            self.server.done.set()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def gzipped() -> bytes:
    return _gzipped_zeros(BIG)


@pytest.fixture
def big_server(gzipped: bytes) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Big)
    server.sent, server.done, server.gzipped = 0, threading.Event(), gzipped
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


async def test_a_100_mb_body_is_read_no_further_than_the_worker_limit(big_server) -> None:
    # A job may say more than the API allows (written by SQL, or an older API):
    # WORKER_HTTP_MAX_BODY_BYTES still bounds what the worker reads.
    result = await run_http({"url": f"{big_server.url}/plain", "max_body_bytes": 10 * BIG},
                            WORKER_HTTP_MAX_BODY_BYTES=1048576, **LOOPBACK)
    assert big_server.done.wait(10)
    assert result["truncated"] is True and result["max_body_bytes"] == 1048576
    assert result["body"] == "x" * 1048576
    # What the socket buffers took besides: far from the 100 MB on offer.
    assert big_server.sent < 20 * 1024 * 1024, big_server.sent


async def test_a_small_body_that_expands_to_100_mb_costs_no_more_memory(big_server) -> None:
    tracemalloc.start()
    try:
        result = await run_http({"url": f"{big_server.url}/gzip", "max_body_bytes": 65536},
                                **LOOPBACK)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result["truncated"] is True and result["body"] == "\0" * 65536
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes while reading a 64 KiB body"


async def test_the_job_limit_applies_below_the_worker_limit(big_server) -> None:
    small = await run_http({"url": f"{big_server.url}/plain", "max_body_bytes": 5}, **LOOPBACK)
    assert small["body"] == "xxxxx" and small["truncated"] is True
    assert small["max_body_bytes"] == 5


@pytest.mark.parametrize("path", ["/gzip-text", "/deflate-text", "/raw-deflate-text"])
async def test_a_compressed_body_within_the_limit_is_decoded_whole(big_server, path: str) -> None:
    result = await run_http({"url": f"{big_server.url}{path}"}, **LOOPBACK)
    assert result["body"] == TEXT.decode() and result["truncated"] is False


@pytest.mark.parametrize("path, error", [
    ("/broken-gzip", "the response body is not valid gzip"),
    ("/brotli", "Content-Encoding 'br' is not one the worker decodes"),
])
async def test_a_body_the_worker_cannot_decode_fails_the_attempt_saying_why(
        big_server, path: str, error: str) -> None:
    with pytest.raises(JobError, match=error):
        await run_http({"url": f"{big_server.url}{path}"}, **LOOPBACK)
