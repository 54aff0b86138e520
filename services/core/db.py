"""The asyncpg pool, with JSON codecs, and connection retry with backoff."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import asyncpg.exceptions._base as asyncpg_base
import tenacity

from sundial.core import jsonb
from sundial.core.logging import get_logger

log = get_logger("core.db")

# Errors that mean "the server is not there (yet)" rather than "the query is wrong".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    # A connection broken in the middle of an operation (server restart, terminated
    # backend) can surface as a client state error; the pool replaces the connection.
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    TimeoutError,
)


# asyncpg's refusal to encode an argument: an InterfaceError, yet no connection trouble.
CLIENT_DATA_ERROR = asyncpg_base.DataError

# SQLSTATE classes and codes that mean "not now" rather than "not this data": connection
# trouble (08), a transaction rolled back by a deadlock or serialization failure (40),
# insufficient resources (53), operator intervention such as a statement timeout or a
# shutdown (57), a system error (58), a read-only database after a failover (25006) and
# a lock not available (55P03). The same statement can succeed once they pass.
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_TRANSIENT_CODES = frozenset({"25006", "55P03"})


def is_transient(exc: BaseException) -> bool:
    """Whether waiting and trying the same statement again is right (the database is
    away or cannot do it now), as opposed to an error the data or the query causes."""
    if isinstance(exc, CLIENT_DATA_ERROR):
        return False  # a value the driver cannot encode (an InterfaceError): never passes
    if isinstance(exc, CONNECTION_ERRORS):
        return True
    state = getattr(exc, "sqlstate", None) if isinstance(exc, asyncpg.PostgresError) else None
    return isinstance(state, str) and (state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_CODES)


def _leaves_pool_when_read_only(method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def statement(self: FailoverConnection, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except asyncpg.ReadOnlySQLTransactionError as exc:
            await self.read_only(exc)
            raise
    return statement


class FailoverConnection(asyncpg.Connection):
    """A pooled connection that takes its pool's connections out of service when a
    statement fails read-only (SQLSTATE 25006): the host they reached cannot write (an
    old primary back after a failover, read-only or as a standby; a standby reached
    without `target_session_attrs=read-write`). Each is closed when released, or replaced
    at its next acquire, so the next acquire connects afresh and `target_session_attrs`
    picks the host that can write. The error still reaches the caller, which waits it
    out like any transient one (`is_transient`) and tries again on the new connection."""

    pool: asyncpg.Pool | None = None  # set by the pool's init; a lone connection has none
    _expired = False

    async def read_only(self, exc: BaseException) -> None:
        if self.pool is None or self._expired:
            return  # once per connection: its siblings went with it the first time
        self._expired = True
        log.warning("db.read_only_host", error=repr(exc), server_pid=self.get_server_pid(),
                    action="every connection of the pool replaced")
        await self.pool.expire_connections()

    execute = _leaves_pool_when_read_only(asyncpg.Connection.execute)
    executemany = _leaves_pool_when_read_only(asyncpg.Connection.executemany)
    fetch = _leaves_pool_when_read_only(asyncpg.Connection.fetch)
    fetchval = _leaves_pool_when_read_only(asyncpg.Connection.fetchval)
    fetchrow = _leaves_pool_when_read_only(asyncpg.Connection.fetchrow)
    fetchmany = _leaves_pool_when_read_only(asyncpg.Connection.fetchmany)


def replacements(pool: asyncpg.Pool) -> int:
    """How many times the pool's connections were taken out of service (a read-only host,
    `FailoverConnection`). A connection of one's own (LISTEN) opened before the count
    changed may be on the old host too: replace it."""
    return pool._generation  # asyncpg's count of expire_connections()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=jsonb.dumps, decoder=jsonb.loads,
                                  schema="pg_catalog")


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """A connection goes back to the pool as it is, without a reset round trip: asyncpg
    has already rolled back any open transaction and dropped its listeners, and Sundial
    never changes session state (settings, LISTEN, session advisory locks) on a pooled
    connection; those get a connection of their own (`connect`)."""


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("db.connect_retry", attempt=state.attempt_number, error=repr(exc),
                wait_s=round(state.next_action.sleep, 2) if state.next_action else None)


def connect_retrying(max_wait_s: float = 30.0, attempts: int | None = None):
    """A tenacity decorator: exponential backoff on connection errors only."""
    stop = tenacity.stop_after_attempt(attempts) if attempts else tenacity.stop_never
    return tenacity.retry(
        retry=tenacity.retry_if_exception_type(CONNECTION_ERRORS),
        wait=tenacity.wait_exponential_jitter(multiplier=0.2, max=max_wait_s, jitter=0.5),
        stop=stop,
        before_sleep=_log_retry,
        reraise=True,
    )


def waiting_out(event: str, max_wait_s: float = 10.0) -> tenacity.AsyncRetrying:
    """Retry while the database cannot do it now (`is_transient`), with exponential
    backoff and an `event` warning before each wait; any other error is raised at once.

        async for attempt in waiting_out("worker.db_unavailable"):
            with attempt:
                return await pool.fetchval(...)
    """
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(event, attempt=state.attempt_number, error=repr(exc),
                    retry_in_s=round(state.next_action.sleep, 2) if state.next_action else None)

    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=tenacity.wait_exponential_jitter(multiplier=0.2, max=max_wait_s, jitter=0.2),
        stop=tenacity.stop_never,
        before_sleep=before_sleep,
        reraise=True,
    )


# Every session: no JIT compilation. Sundial's statements are short; with a big history a
# query's estimated cost passes jit_above_cost and compiling took 0.5-2 s on every call
# of a statement that runs in milliseconds (the queues' queued counts at 1M runs).
SESSION_SETTINGS = {"jit": "off"}


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10,
                      attempts: int | None = None, **kwargs: Any) -> asyncpg.Pool:
    """A pool, waiting with backoff until PostgreSQL answers (forever unless `attempts`).
    Its connections leave it when one reaches a host that cannot write
    (`FailoverConnection`)."""

    @connect_retrying(attempts=attempts)
    async def _create() -> asyncpg.Pool:
        async def init(conn: FailoverConnection) -> None:
            conn.pool = pool
            await _init_connection(conn)

        settings = {**SESSION_SETTINGS, **kwargs.pop("server_settings", {})}
        pool = asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=init,
                                   reset=_keep_session, connection_class=FailoverConnection,
                                   server_settings=settings, **kwargs)
        return await pool

    return await _create()


async def connect(dsn: str, *, attempts: int | None = None) -> asyncpg.Connection:
    """One connection (e.g. for LISTEN), with the same codecs and retry as the pool."""

    @connect_retrying(attempts=attempts)
    async def _connect() -> asyncpg.Connection:
        conn = await asyncpg.connect(dsn, server_settings=SESSION_SETTINGS)
        try:
            await _init_connection(conn)
        except BaseException:
            conn.terminate()  # failed or cancelled half-way: not left open
            raise
        return conn

    return await _connect()
