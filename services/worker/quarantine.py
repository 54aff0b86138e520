"""Runs taken over from a worker that died run alone.

A run whose worker died while executing it may be what killed it. So a taken-over run
(a suspect) starts only once no other run executes in this worker, and no run starts
while it executes: if it kills this worker too, no bystander dies with it and has its
delivery counted. Suspects go first: while one waits, new runs wait behind it.
"""

from __future__ import annotations

import asyncio


class Quarantine:
    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._running = 0          # ordinary runs executing
        self._alone = False        # a suspect executing
        self._waiting = 0          # suspects waiting to run alone

    async def enter(self) -> None:
        """Before an ordinary run executes."""
        if not self._alone and not self._waiting:
            self._running += 1     # the usual case, without the lock (one event loop)
            return
        async with self._changed:
            await self._changed.wait_for(lambda: not self._alone and not self._waiting)
            self._running += 1

    async def leave(self) -> None:
        self._running -= 1
        if self._waiting:
            async with self._changed:
                self._changed.notify_all()

    async def enter_alone(self) -> None:
        """Before a suspect executes: once nothing else does."""
        async with self._changed:
            self._waiting += 1
            try:
                await self._changed.wait_for(lambda: not self._alone and not self._running)
            finally:
                self._waiting -= 1
                self._changed.notify_all()
            self._alone = True

    async def leave_alone(self) -> None:
        async with self._changed:
            self._alone = False
            self._changed.notify_all()
