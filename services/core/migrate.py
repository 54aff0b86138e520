"""`sundial migrate`: apply pending sql/migrations/NNNN_name.sql in order, once each.

Safe to run twice or from two processes at once: a session advisory lock serialises
runners, and each migration is applied and recorded in one transaction. A migration whose
first line is `-- sundial: no transaction` is applied one statement at a time instead,
each in its own transaction (what CREATE INDEX CONCURRENTLY needs, so a big table keeps
taking writes while its index builds), and recorded after its last statement: its
statements must be safe to run again after an interruption (IF EXISTS, OR REPLACE). The services wait
at start-up until every migration of their release is applied (`wait_until_migrated`), so
they may start before the migration (a Kubernetes Job, the compose `migrate` service).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from urllib.parse import unquote, urlsplit

import asyncpg
import tenacity

from sundial.core.db import is_transient
from sundial.core.errors import MigrationError
from sundial.core.logging import get_logger
from sundial.core.sql import sql_dir, sql_files

log = get_logger("core.migrate")

# "sundial" in ASCII: the advisory lock key every migrator takes.
MIGRATION_LOCK_KEY = 0x73756E6469616C
LOCK_POLL_S = 0.05
_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


NO_TRANSACTION = "-- sundial: no transaction"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def transactional(self) -> bool:
        return self.sql.partition("\n")[0].strip() != NO_TRANSACTION

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(folder: Traversable | None = None) -> list[Migration]:
    folder = folder or sql_dir() / "migrations"
    found: dict[int, Migration] = {}
    for path in sql_files(folder):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        version = int(match["version"])
        if version in found:
            raise MigrationError(f"{path.name}: version {version:04d} is used twice")
        found[version] = Migration(version, match["name"], path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply what is pending; return the versions applied by this call."""
    migrations = discover() if migrations is None else migrations
    applied_now: list[int] = []
    await _take_lock(conn)
    try:
        await conn.execute(_BOOKKEEPING)
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        done = {r["version"]: r for r in rows}
        for m in migrations:
            if m.version in done:
                if done[m.version]["checksum"] != m.checksum:
                    log.warning("migration.changed_after_apply", version=m.version, name=m.name)
                continue
            try:
                await _apply(conn, m)
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"migration {m.version:04d}_{m.name}: {exc}") from exc
            log.info("migration.applied", version=m.version, name=m.name)
            applied_now.append(m.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now


async def _take_lock(conn: asyncpg.Connection) -> None:
    """The migrators' advisory lock, waited for here rather than in a statement: a session
    waiting inside `pg_advisory_lock` holds a snapshot, which a CREATE INDEX CONCURRENTLY
    of the runner holding the lock waits for: each would wait for the other."""
    # ASYNC110: the lock lives in the database, so there is no event to wait on: poll it.
    while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY):  # noqa: ASYNC110
        await asyncio.sleep(LOCK_POLL_S)


async def _apply(conn: asyncpg.Connection, m: Migration) -> None:
    record = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
    if m.transactional:
        async with conn.transaction():
            await conn.execute(m.sql)
            await conn.execute(record, m.version, m.name, m.checksum)
        return
    for statement in statements(m.sql):
        await conn.execute(statement)
    await conn.execute(record, m.version, m.name, m.checksum)


_TOKEN = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|"
                    r"(\$[A-Za-z_0-9]*\$)|;", re.S)


def statements(sql: str) -> list[str]:
    """`sql` cut at each `;` outside comments, quotes and dollar-quoted bodies."""
    out: list[str] = []
    start = pos = 0
    while (match := _TOKEN.search(sql, pos)) is not None:
        pos = match.end()
        if match[1]:        # a dollar quote: skip to its closing tag
            close = sql.find(match[1], pos)
            if close < 0:
                raise MigrationError(f"unterminated {match[1]} quote")
            pos = close + len(match[1])
        elif match[0] == ";":
            out.append(sql[start:pos])
            start = pos
    out.append(sql[start:])
    return [s.strip() for s in out if _TOKEN.sub(lambda m: "" if m[0].startswith(("--", "/*"))
                                                 else m[0], s).strip()]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def ensure_database(dsn: str) -> bool:
    """Create the database named in `dsn` if it does not exist (for first runs).

    Returns True when it was created. Needs a role allowed to CREATE DATABASE.
    """
    name = unquote(urlsplit(dsn).path.lstrip("/")) or "postgres"
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    admin = await asyncpg.connect(dsn, database="postgres")
    try:
        await admin.execute(f"CREATE DATABASE {quote_ident(name)}")
    except asyncpg.DuplicateDatabaseError:
        return False
    finally:
        await admin.close()
    log.info("database.created", database=name)
    return True


async def pending(conn: asyncpg.Connection | asyncpg.Pool) -> list[Migration]:
    """The migrations of this release that the database has not applied."""
    migrations = discover()
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations")
    except asyncpg.UndefinedTableError:
        return migrations
    applied = {r["version"] for r in rows}
    return [m for m in migrations if m.version not in applied]


def _names(migrations: list[Migration]) -> list[str]:
    return [f"{m.version:04d}_{m.name}" for m in migrations]


def describe(missing: list[Migration]) -> str:
    return f"the database lacks migration(s) {', '.join(_names(missing))}: run `sundial migrate`"


async def check_migrated(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    """MigrationError naming what is missing (for commands that must not wait)."""
    missing = await pending(conn)
    if missing:
        raise MigrationError(describe(missing))


def _log_waiting(state: tenacity.RetryCallState) -> None:
    wait_s = round(state.next_action.sleep, 1) if state.next_action else None
    outcome = state.outcome
    if outcome is not None and outcome.failed:
        log.warning("db.connect_retry", error=repr(outcome.exception()), wait_s=wait_s)
        return
    log.warning("database.not_migrated", missing=_names(outcome.result() if outcome else []),
                fix="run `sundial migrate` (the migrate Job or compose service)", wait_s=wait_s)


async def wait_until_migrated(pool: asyncpg.Pool, max_wait_s: float = 15.0) -> None:
    """Return once every migration of this release is applied; until then, log
    `database.not_migrated` (what is missing) and look again with backoff. Database
    trouble meanwhile (core.db.is_transient) is waited out the same way."""
    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_result(bool) | tenacity.retry_if_exception(is_transient),
        wait=tenacity.wait_exponential(multiplier=0.5, max=max_wait_s),
        before_sleep=_log_waiting, reraise=True)
    await retrying(pending, pool)
