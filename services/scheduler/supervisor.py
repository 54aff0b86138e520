"""Loops of their own, supervised: each concern of the scheduler (tick, relay, reaper,
retention, status, healthcheck log) is one coroutine in a named task, round after round.

A round that fails is logged (its loop's event, with the traceback when the error is
not database or broker trouble) and tried again with exponential backoff (tenacity, the
one retry mechanism); the other loops go on meanwhile, so the process never goes deaf.
A fatal error (`ConfigError`: retrying cannot fix it) stops every loop cleanly and is
raised from `run`, so the process exits non-zero. `stop` lets each loop finish the
round in progress (a loop marked `cancel_on_stop` is cut off instead).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field

import tenacity

from sundial.core.broker import BROKER_ERRORS
from sundial.core.db import is_transient
from sundial.core.errors import ConfigError
from sundial.core.logging import get_logger

log = get_logger("scheduler")

FATAL: tuple[type[BaseException], ...] = (ConfigError,)


class Outage(Exception):
    """A round could not do its work because a server could not (e.g. the broker took no
    runs): expected now and then, logged without a traceback."""


def is_trouble(exc: BaseException) -> bool:
    """Database or broker trouble, logged without a traceback; anything else (a bug, a
    statement PostgreSQL refuses) is logged with it."""
    return isinstance(exc, (Outage, *BROKER_ERRORS)) or is_transient(exc)
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0


@dataclass(eq=False)
class Loop:
    """One concern: `round` does its work once and returns the seconds until the next
    round; `wakeup` set starts the next round at once."""
    name: str
    round: Callable[[], Awaitable[float]]
    failed_event: str
    first_in_s: float = 0.0
    cancel_on_stop: bool = False
    on_backoff: Callable[[BaseException, float], None] | None = None   # error, backoff s
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, Exception) and not isinstance(exc, FATAL)


class Supervisor:
    def __init__(self, loops: Sequence[Loop], *, backoff_initial_s: float = BACKOFF_INITIAL_S,
                 backoff_max_s: float = BACKOFF_MAX_S):
        self.loops = list(loops)
        self.stopping = asyncio.Event()
        self._wait = tenacity.wait_exponential_jitter(multiplier=backoff_initial_s,
                                                      max=backoff_max_s, jitter=backoff_initial_s)
        self._tasks: dict[str, asyncio.Task] = {}

    def stop(self) -> None:
        self.stopping.set()
        for loop in self.loops:
            loop.wakeup.set()
            task = self._tasks.get(loop.name)
            if loop.cancel_on_stop and task is not None:
                task.cancel()

    async def run(self) -> None:
        """Every loop until `stop`; raises the fatal error that stopped them, if one did."""
        self._tasks = {loop.name: asyncio.create_task(self._keep_running(loop), name=loop.name)
                       for loop in self.loops}
        if self.stopping.is_set():
            self.stop()
        done, _ = await asyncio.wait(self._tasks.values(), return_when=asyncio.FIRST_EXCEPTION)
        fatal = next((t.exception() for t in done if not t.cancelled() and t.exception()), None)
        if fatal is not None:
            self.stop()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if fatal is not None:
            raise fatal

    async def _keep_running(self, loop: Loop) -> None:
        retrying = self._retrying(loop)
        await self._sleep(loop.first_in_s, loop.wakeup)
        while not self.stopping.is_set():
            loop.wakeup.clear()
            try:
                delay = await retrying(self._round, loop)
            except FATAL as exc:
                log.error("scheduler.fatal", loop=loop.name, error=str(exc))
                raise
            except Exception as exc:
                # The last failure, not retried because the scheduler is stopping.
                log.error(loop.failed_event, loop=loop.name, error=repr(exc),
                          stopping=self.stopping.is_set(), exc_info=not is_trouble(exc))
                return
            await self._sleep(delay, loop.wakeup)

    async def _round(self, loop: Loop) -> float:
        if self.stopping.is_set():
            return 0.0
        return await loop.round()

    def _retrying(self, loop: Loop) -> tenacity.AsyncRetrying:
        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait_s = state.next_action.sleep if state.next_action else 0.0
            fields = {"loop": loop.name, "attempt": state.attempt_number, "error": repr(exc),
                      "retry_in_s": round(wait_s, 2)}
            if exc is not None and not is_trouble(exc):
                fields["exc_info"] = exc   # a bug, not an outage: with its traceback
            log.error(loop.failed_event, **fields)
            if loop.on_backoff is not None and exc is not None:
                loop.on_backoff(exc, wait_s)

        return tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(_retryable),
            wait=self._wait,
            stop=lambda _state: self.stopping.is_set(),
            sleep=lambda seconds: self._sleep(seconds, None),
            before_sleep=before_sleep,
            reraise=True,
        )

    async def _sleep(self, seconds: float, wakeup: asyncio.Event | None) -> None:
        """Until `seconds` pass, `wakeup` is set or the scheduler stops."""
        if seconds <= 0 or self.stopping.is_set():
            return
        with suppress(TimeoutError):
            await asyncio.wait_for((wakeup or self.stopping).wait(), timeout=seconds)
