"""A run taken over from a dead worker runs alone: after the runs in progress, before
the runs that arrive while it waits."""

from __future__ import annotations

import asyncio

from sundial.worker.quarantine import Quarantine


async def test_a_suspect_waits_for_running_runs_and_new_runs_wait_for_it():
    q = Quarantine()
    order: list[str] = []
    await q.enter()                                    # an ordinary run in progress

    async def suspect() -> None:
        await q.enter_alone()
        order.append("suspect starts")
        await asyncio.sleep(0.01)
        order.append("suspect ends")
        await q.leave_alone()

    async def newcomer() -> None:
        await q.enter()
        order.append("newcomer starts")
        await q.leave()

    waiting = asyncio.create_task(suspect())
    await asyncio.sleep(0.01)
    late = asyncio.create_task(newcomer())
    await asyncio.sleep(0.01)
    assert order == []                                 # both wait: the suspect for the run
    order.append("ordinary ends")
    await q.leave()
    await asyncio.gather(waiting, late)
    assert order == ["ordinary ends", "suspect starts", "suspect ends", "newcomer starts"]


async def test_a_cancelled_suspect_lets_ordinary_runs_go_on():
    q = Quarantine()
    await q.enter()
    waiting = asyncio.create_task(q.enter_alone())
    await asyncio.sleep(0.01)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await asyncio.wait_for(q.enter(), 1)               # not blocked behind a gone suspect
