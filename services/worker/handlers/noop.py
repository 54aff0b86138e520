"""`noop`: does nothing and succeeds; for tests, benchmarks and smoke checks.

Payload: anything (ignored). Result: {"ok": true}.
"""

from __future__ import annotations

from typing import Any

from sundial.worker.handlers import RunContext


async def run(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    return {"ok": True}
