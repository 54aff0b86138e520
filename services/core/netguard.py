"""SSRF guard: which URLs an http job may call.

A URL is refused unless its scheme is http or https and every address its host resolves
to is a public one, or lies in a network the operator allowed explicitly
(WORKER_HTTP_ALLOWED_NETWORKS). Loopback, private, link-local (cloud metadata),
shared, multicast, reserved and unspecified addresses are refused. IPv6 forms that carry
an IPv4 address (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64 64:ff9b::/96, 6to4,
Teredo) are judged by the IPv4 address inside; NAT64 local-use addresses (64:ff9b:1::/48)
are refused, as where their IPv4 address sits depends on the translator's prefix length.
Numeric hosts in anything but the dotted-quad form (2130706433, 0x7f.1, 017700000001) are
refused outright: resolvers accept them but they exist only to slip past filters.

The worker calls `checked_addresses` before each request and on each redirect, and
connects to one of the addresses it returns, never to what the name resolves to later (a
name may answer a public address to the check and a loopback one to the connection). The
API calls `check_url` when a job is created, so a bad target is refused early with a clear
message. `resolve` is the one place a name is looked up.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from sundial.core.secrets import DEFAULT_PORTS, masked_url

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = ("http", "https")
# Numeric host forms other than a dotted quad: decimal, hex, octal, or short forms.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.IGNORECASE)
_DOTTED_QUAD = re.compile(r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
                          r"(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$")


def parse_networks(value: str | Iterable[str]) -> tuple[Network, ...]:
    """Comma-separated CIDRs (or a list of them); raises ValueError naming a bad one."""
    items = value.split(",") if isinstance(value, str) else value
    networks = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not a network in CIDR form, e.g. 127.0.0.0/8") from None
    return tuple(networks)


# IPv6 forms whose last 32 bits are the IPv4 address a translator (or the host) calls:
# NAT64's well-known prefix, IPv4-translated (SIIT) and the deprecated IPv4-compatible form.
_EMBEDS_IPV4_LAST = tuple(ipaddress.IPv6Network(n)
                          for n in ("64:ff9b::/96", "::ffff:0:0:0/96", "::/96"))
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")


def _effective(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address):
        # :: and ::1 are the unspecified and loopback addresses, not IPv4-compatible ones.
        if int(address) > 1 and any(address in n for n in _EMBEDS_IPV4_LAST):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address.teredo is not None:
            return address.teredo[1]
    return address


def refusal(address: Address, allowed: Iterable[Network]) -> str | None:
    """Why the address may not be called, or None when it may."""
    # Only the address as written counts for an allowance: an IPv4-mapped, NAT64 or other
    # IPv6 form of an allowed IPv4 address is still refused (such forms exist to dodge filters).
    if any(address.version == n.version and address in n for n in allowed):
        return None
    if address in _NAT64_LOCAL_USE:
        return "a NAT64 local-use address"
    inner = _effective(address)
    if inner.is_global and not inner.is_multicast:
        return None
    for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(inner, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    return "not a public address"


def resolve(host: str, port: int) -> list[Address]:
    """The addresses `host` resolves to, each once, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0])
                              for info in infos))


def check_url(url: str, allowed_networks: Iterable[Network | str] = ()) -> None:
    """Raise ValueError (naming the URL and why) unless an http job may call `url`.

    Resolves the host (blocking: call it in a thread from async code).
    """
    checked_addresses(url, allowed_networks)


def checked_addresses(url: str, allowed_networks: Iterable[Network | str] = ()) -> list[Address]:
    """The addresses to connect to for `url`: every one its host resolves to, each allowed;
    ValueError (naming the URL and why) when any is not.

    Resolves the host once (blocking: call it in a thread from async code).
    """
    allowed = tuple(n if not isinstance(n, str) else parse_networks(n)[0] for n in allowed_networks)
    shown = masked_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
    except ValueError as exc:
        raise ValueError(f"url {shown!r}: {exc}") from None
    if parts.scheme not in ALLOWED_SCHEMES:
        raise ValueError(f"url {shown!r}: only http and https are allowed")
    host = parts.hostname
    if not host:
        raise ValueError(f"url {shown!r}: has no host")
    if _NUMERIC_HOST.match(host) and not _DOTTED_QUAD.match(host):
        raise ValueError(f"url {shown!r}: host {host!r} is an encoded IP address; "
                         "write it as a dotted quad")
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise ValueError(f"url {shown!r}: host {host!r} does not resolve ({exc})") from None
    for address in addresses:
        why = refusal(address, allowed)
        if why:
            raise ValueError(f"url {shown!r}: {host} resolves to {address}, {why}; allow it with "
                             "WORKER_HTTP_ALLOWED_NETWORKS if this is intended")
    return addresses
