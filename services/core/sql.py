"""Named queries: every `sql/queries/*.sql` file, split on `-- name: <name>` headers.

The sql/ folder is the package `sundial.sql`: it travels inside the wheel and is read
through importlib.resources, wherever Sundial is installed.

    -- name: claim_due_schedules
    -- Lock up to $1 due schedules for this tick.
    WITH due AS (...) ...

Loaded once into a dict and called by name with asyncpg's $1 placeholders.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable

_HEADER = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s*-*\s*$", re.MULTILINE)


def sql_dir() -> Traversable:
    """The sql/ folder (migrations/ and queries/), from the installed package."""
    return files("sundial.sql")


def sql_files(folder: Traversable) -> list[Traversable]:
    """The .sql files directly in `folder`, by name."""
    return sorted((f for f in folder.iterdir() if f.name.endswith(".sql") and f.is_file()),
                  key=lambda f: f.name)


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
    for path in sql_files(sql_dir() / "queries"):
        for name, body in parse_queries(path.read_text(encoding="utf-8"), str(path)).items():
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
