"""`sleep`: waits, then succeeds; for tests and benchmarks.

Payload: {"seconds": 1.5}. Result: {"slept_s": 1.5}.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sundial.worker.handlers import PayloadError, RunContext, field


async def run(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    seconds = float(field(payload, "seconds", (int, float), 1.0))
    if seconds < 0:
        raise PayloadError(f"payload.seconds must be >= 0, not {seconds}")
    await asyncio.sleep(seconds)
    return {"slept_s": seconds}
