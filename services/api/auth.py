"""API keys and the role check every /api route passes through.

A key is `sdl_<prefix>_<secret>`: 48 bits of lookup prefix and 256 random bits of secret,
shown once (sundial.api.keys makes them). Only the prefix and the SHA-256 of the whole key
are stored; SHA-256 suffices for keys this random (no dictionary to attack), and the
comparison is constant-time.

Roles: `viewer` reads (GET, HEAD), `admin` does everything. The check is a dependency of
the /api router itself, so a route added there is denied by default.

A verified key is remembered for a few seconds (`KeyCache`), so most requests need no
lookup. Every change to a key is announced by the database (migration 0003) and empties
the cache at once; while the API is not listening for those, nothing is remembered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sundial.api.errors import Forbidden, Unauthorized
from sundial.api.keys import Role, hash_key, parse_prefix
from sundial.core.db import CONNECTION_ERRORS, connect
from sundial.core.logging import get_logger
from sundial.core.sql import q

log = get_logger("api.auth")

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The NOTIFY channel of migration 0003: a key was changed, revoked or deleted.
KEYS_CHANNEL = "sundial_api_keys"
RELISTEN_PAUSE_S = 1.0
# How often the listening connection proves it still hears (a ping sent through the
# pool must come back on it), and how long the ping may take.
CHECK_EVERY_S = 5.0
PING_TIMEOUT_S = 2.0
PING = "ping"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, name (the actor in audit_log) and role."""

    key_id: int | None
    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class KeyCache:
    """Keys verified in the last `ttl_s` seconds (never past their expiry), by hash.

    Only while `follow` listens for the database's announcements of key changes: each
    one empties the cache, and so does losing the connection that hears them. A lookup
    that started before an announcement is not remembered (`generation`).
    """

    def __init__(self, ttl_s: float):
        self.ttl_s = ttl_s
        self.listening = False
        self.generation = 0
        self._keys: dict[str, tuple[Principal, float]] = {}

    def get(self, digest: str) -> Principal | None:
        entry = self._keys.get(digest)
        if entry is None or not self.listening:
            return None
        if time.monotonic() >= entry[1]:
            del self._keys[digest]
            return None
        return entry[0]

    def put(self, digest: str, who: Principal, *, generation: int,
            expires_in_s: float | None, asked_at: float) -> None:
        """Remember a key looked up at `asked_at` (monotonic), when `generation` was current."""
        if not self.listening or generation != self.generation:
            return
        lifetime = self.ttl_s if expires_in_s is None else min(self.ttl_s, expires_in_s)
        if lifetime > 0:
            self._keys[digest] = (who, asked_at + lifetime)

    def clear(self) -> None:
        self._keys.clear()
        self.generation += 1

    async def follow(self, dsn: str, pool: asyncpg.Pool) -> None:
        """LISTEN for key changes for as long as it runs, reconnecting after a loss.

        A connection can die without the socket saying so: every few seconds a ping
        sent through the pool must come back on it, or it counts as lost.
        """
        if self.ttl_s <= 0:
            return
        while True:
            try:
                await self._listen(dsn, pool)
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                log.warning("api.keys_listen_failed", error=repr(exc))
            except Exception:
                log.exception("api.keys_listen_failed")
            await asyncio.sleep(RELISTEN_PAUSE_S)

    async def _listen(self, dsn: str, pool: asyncpg.Pool) -> None:
        heard = asyncio.Event()

        def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            heard.set()
            if payload != PING:
                self.clear()

        conn = await connect(dsn)
        closed = asyncio.Event()
        conn.add_termination_listener(lambda _conn: closed.set())
        try:
            await conn.add_listener(KEYS_CHANNEL, on_notify)
            self.clear()
            self.listening = True
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closed.wait(), min(CHECK_EVERY_S, self.ttl_s / 2))
                if closed.is_set():
                    break
                heard.clear()
                try:
                    async with asyncio.timeout(PING_TIMEOUT_S):
                        await pool.execute("SELECT pg_notify($1, $2)", KEYS_CHANNEL, PING)
                        await heard.wait()
                except TimeoutError:
                    break
            log.warning("api.keys_listen_lost", cache="off until listening again")
        finally:
            self.listening = False
            self.clear()
            with contextlib.suppress(*CONNECTION_ERRORS):
                await conn.close(timeout=1)


async def authenticate(pool: asyncpg.Pool, key: str | None, cache: KeyCache) -> Principal:
    """The principal of a key (remembered, or looked up); Unauthorized naming the problem
    otherwise."""
    if not key:
        raise Unauthorized()
    prefix = parse_prefix(key)
    if prefix is None:
        raise Unauthorized("invalid API key")
    digest = hash_key(key)
    if (who := cache.get(digest)) is not None:
        return who
    generation, asked_at = cache.generation, time.monotonic()
    async with pool.acquire() as conn:
        row = await conn.fetchrow(q("find_api_key"), prefix)
        if row is None or not hmac.compare_digest(row["key_hash"], digest):
            raise Unauthorized("invalid API key")
        if row["revoked"]:
            raise Unauthorized("this API key was revoked")
        if row["expired"]:
            raise Unauthorized("this API key has expired")
        if row["touch_due"]:
            await conn.execute(q("touch_api_key"), row["id"])
    who = Principal(row["id"], row["name"], row["role"])
    cache.put(digest, who, generation=generation, expires_in_s=row["expires_in_s"],
              asked_at=asked_at)
    return who


_bearer = HTTPBearer(auto_error=False, description="An API key from `sundial keys create`.")


async def principal(request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
                    ) -> Principal:
    """The caller, from `Authorization: Bearer <key>` (401 without a valid key)."""
    key = credentials.credentials if credentials else None
    who = await authenticate(request.app.state.pool, key, request.app.state.key_cache)
    request.state.key_name = who.name  # for the access log (sundial.api.access)
    return who


async def authorize(request: Request, who: Annotated[Principal, Depends(principal)]) -> None:
    """Viewers read; admins also write (403 otherwise)."""
    if request.method not in READ_METHODS and not who.is_admin:
        raise Forbidden(f"the {who.role} role may only read; this needs an admin key")


Caller = Annotated[Principal, Depends(principal)]
