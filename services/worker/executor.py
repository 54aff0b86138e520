"""Execute one claimed run: the handler under the run's timeout, stoppable by a cancel
request, a lost lease or shutdown; then classify what happened as an `Outcome`."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from sundial.core.jsonb import printable
from sundial.worker.handlers import Handler, JobError, RunContext, current
from sundial.worker.live import LiveOutput
from sundial.worker.retry import backoff_s

MAX_ERROR_CHARS = 2000
MAX_OUTPUT_CHARS = 65536

# Why a run's execution was stopped from outside, and the kind of outcome it gets.
CANCELLED = "cancelled"   # the API asked (or a `replace` run took over)
RELEASE = "release"       # the worker is shutting down: queued again, attempt not counted
LOST = "lost"             # the run is no longer ours (rescued by the reaper): write nothing


@dataclass
class Outcome:
    """kind: succeeded | failed | timed_out | cancelled | retry | release | lost."""

    kind: str
    result: Any = None
    error: str | None = None
    output: str | None = None
    retry_in_s: float = 0.0

    def __post_init__(self) -> None:
        # PostgreSQL refuses NUL in text: a program's output may well hold one.
        self.error = _text(self.error)
        self.output = _text(self.output)


@dataclass(eq=False)
class Held:
    """A run this worker has claimed and not yet recorded; the heartbeat keeps it alive."""

    run_id: int
    attempt: int
    task: asyncio.Task | None = None
    stop_reason: str | None = None
    finished: bool = False
    alive_at: float = field(default_factory=time.monotonic)  # claimed or last heartbeat
    live: LiveOutput = field(default_factory=LiveOutput)     # written at each heartbeat

    @property
    def key(self) -> tuple[int, int]:
        return self.run_id, self.attempt

    def stop(self, reason: str) -> None:
        """Interrupt the handler; its outcome will be `reason`."""
        if self.stop_reason is None and self.task is not None and not self.task.done():
            self.stop_reason = reason
            self.task.cancel()


class UnstorableResult(Exception):
    """The result cannot be stored as JSON, found where the handler made it (a child
    process): the run fails without a retry, with this message as its error."""


@dataclass(frozen=True)
class Retry:
    max_attempts: int
    base_s: float
    cap_s: float
    rng: random.Random = field(default_factory=random.Random)


async def execute(held: Held, handler: Handler, payload: dict[str, Any], ctx: RunContext,
                  timeout_s: float, retry: Retry) -> Outcome:
    token = current.set(ctx)
    held.task = asyncio.create_task(handler(payload, ctx), name=f"run-{held.run_id}")
    current.reset(token)
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            value = await held.task
    except asyncio.CancelledError:
        if held.stop_reason is None:
            held.task.cancel()
            raise  # the worker itself is being torn down
        reason = held.stop_reason
        error = {CANCELLED: "cancelled while running", RELEASE: "worker shut down; run requeued",
                 LOST: "lease lost"}[reason]
        return Outcome(reason, error=error)
    except TimeoutError:
        if not deadline.expired():
            return _failure(TimeoutError("the handler raised TimeoutError"), ctx, retry)
        return Outcome("timed_out", error=f"timed out after {timeout_s:g}s")
    except UnstorableResult as exc:  # the same value every attempt: no retry
        return Outcome("failed", error=str(exc))
    except Exception as exc:
        return _failure(exc, ctx, retry)
    finally:
        held.finished = True
    try:
        return Outcome("succeeded", result=_jsonable(value, ctx.settings.max_result_bytes))
    except UnstorableResult as exc:  # the same value every attempt: no retry
        return Outcome("failed", error=str(exc))


def _failure(exc: BaseException, ctx: RunContext, retry: Retry) -> Outcome:
    message = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
    if isinstance(exc, JobError):
        output = exc.output
        try:
            result = _jsonable(exc.result, ctx.settings.max_result_bytes)
        except UnstorableResult as bad:
            result = {"error": str(bad)}
    else:
        output = "".join(traceback.format_exception(exc))
        result = None
    output = output[-MAX_OUTPUT_CHARS:] if output else None
    retryable = getattr(exc, "retryable", True)
    if retryable and ctx.attempt < retry.max_attempts:
        delay = backoff_s(ctx.attempt, retry.base_s, retry.cap_s, retry.rng)
        return Outcome("retry", result=result, error=message, output=output, retry_in_s=delay)
    return Outcome("failed", result=result, error=message, output=output)


def unstorable(exc: Exception) -> str:
    return (f"the result cannot be stored as JSON: {type(exc).__name__}: {exc}"
            [:MAX_ERROR_CHARS])


def _jsonable(value: Any, max_bytes: int) -> Any:
    """The value as jsonb can store it: anything else becomes its string, NUL becomes
    U+FFFD and NaN or infinity null (PostgreSQL refuses both). UnstorableResult when it
    cannot be, or its JSON takes more than `max_bytes` (WORKER_MAX_RESULT_BYTES)."""
    if value is None:
        return None
    try:
        clean = _clean(json.loads(json.dumps(value, default=str)))
        # What the database codec will do: fail here, not there.
        text = json.dumps(clean, allow_nan=False, ensure_ascii=False)
    except Exception as exc:
        raise UnstorableResult(unstorable(exc)) from None
    size = len(text.encode(errors="surrogatepass"))
    if size > max_bytes:
        raise UnstorableResult(
            f"the result takes {size} bytes as JSON, more than WORKER_MAX_RESULT_BYTES "
            f"({max_bytes}) allows: return less (an http job: a smaller max_body_bytes), "
            "or raise the worker's limit")
    return clean


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {_text(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _text(value: str | None) -> str | None:
    """Text as PostgreSQL takes it: NUL as U+FFFD, a lone surrogate as its escape."""
    return printable(value).replace("\x00", "\ufffd") if value else value
