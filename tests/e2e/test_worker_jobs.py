"""Python jobs the worker tests run (imported by workers with WORKER_IMPORTS); no tests here."""

from __future__ import annotations

import time

from sundial import current_run, job


@job("flaky")
def flaky(succeed_on_attempt: int) -> dict:
    """Fails until the given attempt, then succeeds (a sync job: runs in a thread)."""
    attempt = current_run().attempt
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


@job("unstorable_values")
def unstorable_values() -> dict:
    """Values PostgreSQL refuses in jsonb: NaN and a NUL character."""
    return {"x": float("nan"), "s": "a\x00b"}


@job("not_json")
def not_json() -> dict:
    """A result JSON cannot encode at all: a tuple as a key."""
    return {(1, 2): 3}
