"""Python jobs the worker tests run (imported by workers with WORKER_IMPORTS); no tests here."""

from __future__ import annotations

import time

from worker import job
from worker.handlers import current


@job("flaky")
def flaky(succeed_on_attempt: int) -> dict:
    """Fails until the given attempt, then succeeds (a sync job: runs in a thread)."""
    attempt = current.get().attempt
    if attempt < succeed_on_attempt:
        raise RuntimeError(f"attempt {attempt} fails on purpose")
    return {"attempt": attempt}


@job("always_fails")
async def always_fails() -> None:
    raise ValueError("this job always fails")


@job("busy")
def busy(seconds: float) -> dict:
    time.sleep(seconds)
    return {"slept_s": seconds}
