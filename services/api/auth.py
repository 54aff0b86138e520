"""API keys and the role check every /api route passes through.

A key is `sdl_<prefix>_<secret>`: 48 bits of lookup prefix and 256 random bits of secret,
shown once. Only the prefix and the SHA-256 of the whole key are stored; SHA-256 suffices
for keys this random (no dictionary to attack), and the comparison is constant-time.

Roles: `viewer` reads (GET, HEAD), `admin` does everything. The check is a dependency of
the /api router itself, so a route added there is denied by default.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Literal

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import Forbidden, Unauthorized
from core.sql import q

Role = Literal["admin", "viewer"]
ROLES: tuple[str, ...] = ("admin", "viewer")
KEY_SCHEME = "sdl"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, name (the actor in audit_log) and role."""

    key_id: int | None
    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def new_key() -> tuple[str, str, str]:
    """(key, prefix, hash) for a fresh key."""
    prefix = secrets.token_hex(6)
    key = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, hash_key(key)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_prefix(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_SCHEME or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1]


async def authenticate(pool: asyncpg.Pool, key: str | None) -> Principal:
    """The principal of a key; Unauthorized naming the problem otherwise."""
    if not key:
        raise Unauthorized()
    prefix = parse_prefix(key)
    if prefix is None:
        raise Unauthorized("invalid API key")
    async with pool.acquire() as conn:
        row = await conn.fetchrow(q("find_api_key"), prefix)
        if row is None or not hmac.compare_digest(row["key_hash"], hash_key(key)):
            raise Unauthorized("invalid API key")
        if row["revoked"]:
            raise Unauthorized("this API key was revoked")
        if row["expired"]:
            raise Unauthorized("this API key has expired")
        if row["touch_due"]:
            await conn.execute(q("touch_api_key"), row["id"])
    return Principal(row["id"], row["name"], row["role"])


_bearer = HTTPBearer(auto_error=False, description="An API key from `sundial keys create`.")


async def principal(request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
                    ) -> Principal:
    """The caller, from `Authorization: Bearer <key>` (401 without a valid key)."""
    key = credentials.credentials if credentials else None
    return await authenticate(request.app.state.pool, key)


async def authorize(request: Request, who: Annotated[Principal, Depends(principal)]) -> None:
    """Viewers read; admins also write (403 otherwise)."""
    if request.method not in READ_METHODS and not who.is_admin:
        raise Forbidden(f"the {who.role} role may only read; this needs an admin key")


Caller = Annotated[Principal, Depends(principal)]
