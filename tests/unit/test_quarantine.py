"""A run taken over from a dead worker executes alone: after the runs in progress; runs
that arrive while it waits or executes are not admitted (they start elsewhere)."""

from __future__ import annotations

import asyncio

from sundial.worker.quarantine import Quarantine


async def test_a_suspect_waits_for_running_runs_and_no_run_is_admitted_meanwhile():
    q = Quarantine()
    order: list[str] = []
    assert q.admit()                                   # an ordinary run in progress

    async def suspect() -> None:
        await q.enter_alone()
        order.append("suspect starts")
        assert not q.admit()                           # nothing starts beside it
        await asyncio.sleep(0.01)
        order.append("suspect ends")
        q.leave_alone()

    waiting = asyncio.create_task(suspect())
    await asyncio.sleep(0.01)
    assert order == []                                 # it waits for the run in progress
    assert not q.admit()                               # which a newcomer does not prolong
    order.append("ordinary ends")
    q.leave()
    await waiting
    assert order == ["ordinary ends", "suspect starts", "suspect ends"]
    assert q.admit()                                   # admitted again once it is done


async def test_suspects_take_turns():
    q = Quarantine()
    inside: list[int] = []
    most = 0

    async def suspect(n: int) -> None:
        nonlocal most
        await q.enter_alone()
        inside.append(n)
        most = max(most, len(inside))
        await asyncio.sleep(0.01)
        inside.remove(n)
        q.leave_alone()

    await asyncio.gather(*(suspect(n) for n in range(3)))
    assert most == 1
    assert q.admit()


async def test_a_cancelled_suspect_lets_ordinary_runs_go_on():
    q = Quarantine()
    assert q.admit()
    waiting = asyncio.create_task(q.enter_alone())
    await asyncio.sleep(0.01)
    assert not q.admit()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert q.admit()                                   # not refused behind a gone suspect
    q.leave()
    q.leave()
    await asyncio.wait_for(q.enter_alone(), 1)         # and the turn was given back
    q.leave_alone()
