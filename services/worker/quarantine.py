"""Runs taken over from a worker that died execute alone in this worker.

A run whose worker died while executing it may be what killed it. So a taken-over run (a
suspect) executes only while no other run executes in this worker process: if it kills
this worker too, no bystander dies with it and has its delivery counted.

What that costs, and no more:
- a suspect waits for the runs already executing here to end and their results to be
  written and acked, and suspects take turns;
- while a suspect waits or executes, no other run starts here: an ordinary run is not
  claimed at all (`admit` says no), so it stays `queued` and goes back to the outbox for
  any worker of its queue. Nothing waits in this worker as `running`, and the runs this
  worker cannot start meanwhile start elsewhere.
"""

from __future__ import annotations

import asyncio


class Quarantine:
    def __init__(self) -> None:
        self._ordinary = 0              # ordinary runs admitted: being claimed or executing
        self._suspects = 0              # suspects waiting for their turn or executing
        self._turn = asyncio.Lock()     # held by the suspect that waits for quiet or executes
        self._quiet = asyncio.Event()   # set while no ordinary run is admitted
        self._quiet.set()

    def admit(self) -> bool:
        """Before an ordinary run is claimed: True (call `leave` once it has ended, or was
        not claimed after all), or False while a suspect waits or executes."""
        if self._suspects:
            return False
        self._ordinary += 1
        self._quiet.clear()
        return True

    def leave(self) -> None:
        self._ordinary -= 1
        if not self._ordinary:
            self._quiet.set()

    async def enter_alone(self) -> None:
        """Before a suspect executes: once no other run does (call `leave_alone` after)."""
        self._suspects += 1
        try:
            await self._turn.acquire()
        except BaseException:
            self._suspects -= 1
            raise
        try:
            await self._quiet.wait()
        except BaseException:
            self.leave_alone()
            raise

    def leave_alone(self) -> None:
        self._suspects -= 1
        self._turn.release()
