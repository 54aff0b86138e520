"""sundial.api.auth.KeyCache: what it remembers, for how long, and what it refuses to keep."""

from __future__ import annotations

import time

from sundial.api.auth import KeyCache, Principal

WHO = Principal(1, "ops", "admin")


def listening_cache(ttl_s: float = 60.0) -> KeyCache:
    cache = KeyCache(ttl_s)
    cache.listening = True
    return cache


def remember(cache: KeyCache, digest: str = "h", *, expires_in_s: float | None = None,
             asked_s_ago: float = 0.0, generation: int | None = None) -> None:
    cache.put(digest, WHO, generation=cache.generation if generation is None else generation,
              expires_in_s=expires_in_s, asked_at=time.monotonic() - asked_s_ago)


def test_a_verified_key_is_remembered_while_listening() -> None:
    cache = listening_cache()
    remember(cache)
    assert cache.get("h") == WHO
    cache.listening = False
    assert cache.get("h") is None


def test_a_lookup_older_than_an_announced_change_is_not_kept() -> None:
    """Read, then a change is announced, then the read result arrives: it may be stale."""
    cache = listening_cache()
    before = cache.generation
    cache.clear()  # the announcement
    remember(cache, generation=before)
    assert cache.get("h") is None


def test_kept_no_longer_than_its_expiry_or_the_ttl_counted_from_the_lookup() -> None:
    cache = listening_cache(ttl_s=60.0)
    remember(cache, "valid", expires_in_s=30.0, asked_s_ago=29.0)
    remember(cache, "expired", expires_in_s=30.0, asked_s_ago=31.0)
    remember(cache, "ttl over", asked_s_ago=61.0)
    remember(cache, "gone", expires_in_s=-1.0)
    assert cache.get("valid") == WHO
    assert cache.get("expired") is None and cache.get("ttl over") is None
    assert cache.get("gone") is None


def test_nothing_is_kept_while_not_listening_or_with_ttl_0() -> None:
    cache = KeyCache(60.0)
    remember(cache)
    cache.listening = True
    assert cache.get("h") is None
    off = listening_cache(ttl_s=0)
    remember(off)
    assert off.get("h") is None
