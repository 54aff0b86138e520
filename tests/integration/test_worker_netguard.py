"""The SSRF guard the http handler (and the API, at job creation) relies on, the http
handler against a DNS that changes its answer between lookups, and the retry backoff rule."""

from __future__ import annotations

import random
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from sundial.core import pinned
from sundial.core.netguard import check_url, parse_networks
from sundial.worker.handlers import PayloadError, RunContext
from sundial.worker.handlers import http as http_handler
from sundial.worker.retry import backoff_s
from sundial.worker.settings import WorkerSettings
from tests.e2e.test_worker_handlers import _Recording


@pytest.mark.parametrize("url, reason", [
    ("ftp://example.com/x", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("http:///nohost", "has no host"),
    ("http://127.0.0.1/", "loopback"),
    ("http://localhost:8080/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://10.0.0.5/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:169.254.169.254]/", "link-local"),
    ("http://2130706433/", "encoded IP address"),
    ("http://0x7f000001/", "encoded IP address"),
    ("http://017700000001/", "encoded IP address"),
    ("http://127.1/", "encoded IP address"),
    ("http://0.0.0.0/", "address"),
    ("http://100.64.0.1/", "address"),
])
def test_refused_targets(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_url(url, ())


IPV4_IN_IPV6 = {
    "NAT64": "64:ff9b::{}",
    "NAT64 local-use": "64:ff9b:1::{}",
    "IPv4-compatible": "::{}",
    "IPv4-translated": "::ffff:0:{}",
}
EMBEDDED = {"127.0.0.1": "loopback", "10.0.0.5": "private", "169.254.169.254": "link-local"}


@pytest.mark.parametrize("form", IPV4_IN_IPV6)
@pytest.mark.parametrize("embedded", EMBEDDED)
def test_ipv6_forms_carrying_a_non_public_ipv4_address_are_refused(form: str, embedded: str,
                                                                   ) -> None:
    address = IPV4_IN_IPV6[form].format(embedded)
    reason = "NAT64 local-use" if form == "NAT64 local-use" else EMBEDDED[embedded]
    with pytest.raises(ValueError, match=reason):
        check_url(f"http://[{address}]:8080/", ())
    # Allowing the IPv4 network does not allow its IPv6 forms.
    with pytest.raises(ValueError, match=reason):
        check_url(f"http://[{address}]:8080/", parse_networks(f"{embedded}/32"))


def test_nat64_form_of_a_public_address_passes() -> None:
    # What a DNS64 resolver hands an IPv6-only host for a public name.
    check_url("http://[64:ff9b::93.184.216.34]/", ())


def test_public_addresses_pass() -> None:
    check_url("https://93.184.216.34/path?q=1", ())
    check_url("http://[2606:2800:220:1:248:1893:25c8:1946]:8080/", ())


def test_allowed_networks_open_exactly_those_addresses() -> None:
    allowed = parse_networks("127.0.0.1/32, 10.0.0.0/8")
    check_url("http://127.0.0.1:9000/hook", allowed)
    check_url("http://10.20.30.40/", allowed)
    with pytest.raises(ValueError, match="loopback"):
        check_url("http://127.0.0.2/", allowed)
    with pytest.raises(ValueError, match="loopback"):
        check_url("http://[::ffff:127.0.0.1]/", allowed)


def test_bad_network_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not a network"):
        parse_networks("10.0.0.0/33")


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    delays = [backoff_s(attempt, 10, 3600, rng) for attempt in (1, 2, 3, 4)]
    for attempt, delay in enumerate(delays, start=1):
        assert 0.8 * 10 * 2 ** (attempt - 1) <= delay <= 1.2 * 10 * 2 ** (attempt - 1)
    assert backoff_s(30, 10, 60, rng) <= 60
    assert len({round(backoff_s(1, 10, 3600, rng), 6) for _ in range(20)}) > 1


# --- DNS rebinding -------------------------------------------------------------------------
# The allowed listener is on 127.0.0.2 (WORKER_HTTP_ALLOWED_NETWORKS=127.0.0.2/32); the
# "secret" one, on the same port of 127.0.0.1, stands for a loopback service an attacker
# wants to reach by making its name answer the allowed address first and 127.0.0.1 next.


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names ending in .rebind.test answer 127.0.0.2 the first time each is looked up
    and 127.0.0.1 ever after, for every resolver in the process (the guard's or a
    library's); the list notes each lookup."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list:
        name = host.decode() if isinstance(host, bytes) else host
        if not isinstance(name, str) or not name.endswith(".rebind.test"):
            return real(host, port, *args, **kwargs)
        address = "127.0.0.1" if name in lookups else "127.0.0.2"
        lookups.append(name)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                 (address, int(port or 0)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def _serve(host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), _Recording)
    server.seen, server.redirects = [], {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def listeners() -> Iterator[tuple[ThreadingHTTPServer, ThreadingHTTPServer]]:
    """(allowed on 127.0.0.2, secret on 127.0.0.1), both on one port."""
    for _ in range(20):
        allowed = _serve("127.0.0.2", 0)
        try:
            secret = _serve("127.0.0.1", allowed.server_address[1])
            break
        except OSError:  # the port is taken on 127.0.0.1: another one
            allowed.shutdown()
            allowed.server_close()
    yield allowed, secret
    for server in (allowed, secret):
        server.shutdown()
        server.server_close()


def run_http(payload: dict[str, Any], **settings: Any) -> Any:
    ctx = RunContext(WorkerSettings(**settings), run_id=1, job_id=1, job="http", attempt=1,
                     max_attempts=1)
    return http_handler.run(payload, ctx)


PINNED = {"WORKER_HTTP_ALLOWED_NETWORKS": "127.0.0.2/32"}
CREDENTIALS = {"Authorization": "Bearer s3cret"}


async def test_the_request_goes_to_the_address_checked_not_to_a_later_answer(
        rebinding_dns: list[str], listeners: tuple) -> None:
    allowed, secret = listeners
    port = allowed.server_address[1]
    result = await run_http({"url": f"http://api.rebind.test:{port}/hook",
                             "headers": CREDENTIALS}, **PINNED)
    assert result["status"] == 200 and result["url"] == f"http://api.rebind.test:{port}/hook"
    assert secret.seen == []
    [(path, headers)] = allowed.seen
    assert path == "/hook" and headers["authorization"] == "Bearer s3cret"
    assert headers["host"] == f"api.rebind.test:{port}"
    assert rebinding_dns == ["api.rebind.test"]  # looked up once, the answer used


async def test_each_redirect_hop_goes_to_the_address_its_check_saw(
        rebinding_dns: list[str], listeners: tuple) -> None:
    allowed, secret = listeners
    port = allowed.server_address[1]
    allowed.redirects = {"/start": f"http://hop.rebind.test:{port}/landing"}
    result = await run_http({"url": f"http://127.0.0.2:{port}/start"}, **PINNED)
    assert result["status"] == 200 and result["url"] == f"http://hop.rebind.test:{port}/landing"
    assert [path for path, _ in allowed.seen] == ["/start", "/landing"]
    assert allowed.seen[1][1]["host"] == f"hop.rebind.test:{port}"
    assert secret.seen == []
    assert rebinding_dns == ["hop.rebind.test"]


async def test_a_name_that_rebinds_between_hops_is_refused_at_the_hop(
        rebinding_dns: list[str], listeners: tuple) -> None:
    allowed, secret = listeners
    port = allowed.server_address[1]
    allowed.redirects = {"/start": "/next"}  # same origin: checked again, answers 127.0.0.1
    with pytest.raises(PayloadError, match=r"refused: .*resolves to 127\.0\.0\.1, a loopback"):
        await run_http({"url": f"http://same.rebind.test:{port}/start",
                        "headers": CREDENTIALS}, **PINNED)
    assert [path for path, _ in allowed.seen] == ["/start"]
    assert secret.seen == []


def _certificate(name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate (PEM) valid for `name` only, and its key (PEM)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


async def test_https_to_a_pinned_address_checks_the_certificate_against_the_name(
        rebinding_dns: list[str], listeners: tuple, tmp_path, monkeypatch) -> None:
    allowed, secret = listeners
    port = allowed.server_address[1]
    cert, key = _certificate("tls.rebind.test")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    names: list[str | None] = []
    server_side.sni_callback = lambda _conn, name, _ctx: names.append(name)
    allowed.socket = server_side.wrap_socket(allowed.socket, server_side=True)
    monkeypatch.setattr(pinned, "tls_context", lambda: ssl.create_default_context(
        cadata=cert.decode()))

    result = await run_http({"url": f"https://tls.rebind.test:{port}/hook",
                             "headers": CREDENTIALS}, **PINNED)
    assert result["status"] == 200
    assert names == ["tls.rebind.test"]  # the name as TLS server name, not 127.0.0.2
    [(path, headers)] = allowed.seen
    assert path == "/hook" and headers["host"] == f"tls.rebind.test:{port}"
    assert secret.seen == []

    # A certificate is valid for its names only: another name at the same address fails.
    with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
        await run_http({"url": f"https://other.rebind.test:{port}/hook"}, **PINNED)
    assert len(allowed.seen) == 1
