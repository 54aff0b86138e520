"""The SSRF guard the http handler (and the API, at job creation) relies on, and the
retry backoff rule."""

from __future__ import annotations

import random

import pytest

from sundial.core.netguard import check_url, parse_networks
from sundial.worker.retry import backoff_s


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
