"""The retry rule: exponential backoff from the job's retry_backoff_seconds, capped at
retry_backoff_max_seconds, with jitter so failed runs do not come back in lockstep."""

from __future__ import annotations

import random


def backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before the attempt after `attempt` (1-based): base * 2^(attempt-1),
    capped, then scaled by a random factor in [0.8, 1.2] and capped again."""
    delay = min(cap_s, base_s * 2 ** min(attempt - 1, 62))
    return min(cap_s, delay * (rng or random).uniform(0.8, 1.2))
