"""The form of an API key, apart from the HTTP check (sundial.api.auth), so that the admin
commands make and revoke keys without loading the web framework.

A key is `sdl_<prefix>_<secret>`: 48 bits of lookup prefix and 256 random bits of secret,
shown once. Only the prefix and the SHA-256 of the whole key are stored.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal

Role = Literal["admin", "viewer"]
ROLES: tuple[str, ...] = ("admin", "viewer")
KEY_SCHEME = "sdl"


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
