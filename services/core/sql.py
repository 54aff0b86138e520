"""Named queries: every `sql/queries/*.sql` file, split on `-- name: <name>` headers.

    -- name: claim_due_schedules
    -- Lock up to $1 due schedules for this tick.
    WITH due AS (...) ...

Loaded once into a dict and called by name with asyncpg's $1 placeholders.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

_HEADER = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s*-*\s*$", re.MULTILINE)


def sql_dir() -> Path:
    """The sql/ folder: $SUNDIAL_SQL_DIR, else the one beside the source tree."""
    override = os.environ.get("SUNDIAL_SQL_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "sql"


def parse_queries(text: str, source: str = "<string>") -> dict[str, str]:
    queries: dict[str, str] = {}
    matches = list(_HEADER.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end():end].strip()
        name = match["name"]
        if name in queries:
            raise ValueError(f"{source}: query {name!r} is defined twice")
        if not body:
            raise ValueError(f"{source}: query {name!r} is empty")
        queries[name] = body
    return queries


@cache
def queries() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((sql_dir() / "queries").glob("*.sql")):
        for name, body in parse_queries(path.read_text(), str(path)).items():
            if name in found:
                raise ValueError(f"{path}: query {name!r} is also defined in another file")
            found[name] = body
    return found


def q(name: str) -> str:
    """The SQL text of the named query."""
    try:
        return queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} under {sql_dir() / 'queries'}") from None
