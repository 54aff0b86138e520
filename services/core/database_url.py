"""DATABASE_URL: a postgresql:// URL with one host, or several for high availability.

    postgresql://user:pass@db:5432/sundial
    postgresql://user:pass@db1:5432,db2:5432/sundial?target_session_attrs=read-write

asyncpg tries the hosts in order and keeps the first whose session matches
`target_session_attrs`. Sundial writes on every connection, so several hosts need
`read-write` (or `primary`): with `any` a connection could land on a standby and never
write. `check_database_url` refuses what asyncpg would only refuse at the first connect
(or never), naming the part that is wrong and the fix; every settings class uses it.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, unquote, urlsplit

EXAMPLE = ("postgresql://user:pass@host:5432/sundial, several hosts as postgresql://user:pass@"
           "db1:5432,db2:5432/sundial?target_session_attrs=read-write")

# The values asyncpg accepts (asyncpg.connect_utils.SessionAttribute, SSLMode).
CHOICES = {
    "target_session_attrs": ("any", "primary", "standby", "prefer-standby", "read-write",
                             "read-only"),
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
}
# What several hosts need: a session that can write.
WRITABLE = ("read-write", "primary")

_HOST = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>[^:]*))?")


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{where} port {text!r} must be a number 1-65535")
    return int(text)


def hosts(url: str) -> list[tuple[str, int | None]]:
    """(host, port or None) for each host of the URL's comma-separated host list."""
    hostspec = urlsplit(url).netloc.rpartition("@")[2]
    if not hostspec:
        return []
    found = []
    for n, item in enumerate(hostspec.split(","), 1):
        match = _HOST.fullmatch(item)
        host = unquote(match["host"]) if match else ""
        if not host:
            raise ValueError(f"host {n} of {hostspec!r} is empty or malformed: write "
                             "host[:port], several separated by commas")
        port = match["port"]
        found.append((host, None if port is None else _port(port, f"host {host!r}")))
    return found


def check_database_url(url: str, environ: dict[str, str] | None = None) -> str:
    """The URL unchanged, or ValueError naming the bad part and what to write instead."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("must start with postgresql://")
    found = hosts(url)
    try:
        query = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True))
    except ValueError:
        # Not shown: the query may hold the password (password=...).
        raise ValueError("the query must be name=value pairs joined by & (write a & or = "
                         "inside a value as %26 or %3D)") from None
    for name, allowed in CHOICES.items():
        if name in query and query[name] not in allowed:
            raise ValueError(f"{name} {query[name]!r} must be one of {', '.join(allowed)}")
    for port in filter(None, query.get("port", "").split(",")):
        _port(port, "the port parameter's")
    environ = os.environ if environ is None else environ
    attrs = query.get("target_session_attrs") or environ.get("PGTARGETSESSIONATTRS") or "any"
    if len(found) > 1 and attrs not in WRITABLE:
        raise ValueError(f"{len(found)} hosts with target_session_attrs {attrs!r}: add "
                         "?target_session_attrs=read-write so that every connection goes to "
                         "the host that can write")
    return url
