"""api.auth.KeyCache: what it remembers, for how long, and what it refuses to keep."""

from __future__ import annotations

import time

from api.auth import KeyCache, Principal

WHO = Principal(1, "ops", "admin")


def listening_cache(ttl_s: float = 60.0) -> KeyCache:
    cache = KeyCache(ttl_s)
    cache.listening = True
    return cache


def test_a_verified_key_is_remembered_while_listening() -> None:
    cache = listening_cache()
    cache.put("h", WHO, generation=cache.generation, expires_in_s=None)
    assert cache.get("h") == WHO
    cache.listening = False
    assert cache.get("h") is None


def test_a_lookup_older_than_an_announced_change_is_not_kept() -> None:
    """Read, then a change is announced, then the read result arrives: it may be stale."""
    cache = listening_cache()
    before = cache.generation
    cache.clear()  # the announcement
    cache.put("h", WHO, generation=before, expires_in_s=None)
    assert cache.get("h") is None


def test_not_kept_past_its_expiry_or_the_ttl() -> None:
    cache = listening_cache(ttl_s=60.0)
    cache.put("soon", WHO, generation=cache.generation, expires_in_s=0.05)
    cache.put("gone", WHO, generation=cache.generation, expires_in_s=-1.0)
    assert cache.get("soon") == WHO and cache.get("gone") is None
    time.sleep(0.06)
    assert cache.get("soon") is None
    off = listening_cache(ttl_s=0)
    off.put("h", WHO, generation=off.generation, expires_in_s=None)
    assert off.get("h") is None


def test_nothing_is_kept_while_not_listening() -> None:
    cache = KeyCache(60.0)
    cache.put("h", WHO, generation=cache.generation, expires_in_s=None)
    cache.listening = True
    assert cache.get("h") is None
