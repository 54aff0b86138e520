"""The scheduler's loop supervisor: a failing loop is restarted with backoff while the
others go on; a fatal error stops every loop (each finishing its round) and is raised."""

from __future__ import annotations

import asyncio

import pytest

from sundial.core.errors import ConfigError
from sundial.scheduler.supervisor import Loop, Supervisor


class Counting:
    """A loop round that counts, and raises `error` from round `fail_from` on."""

    def __init__(self, every_s: float = 0.01, fail_from: int | None = None,
                 error: Exception | None = None, round_s: float = 0.0):
        self.rounds = self.finished = 0
        self.every_s, self.fail_from, self.error, self.round_s = every_s, fail_from, error, round_s

    async def __call__(self) -> float:
        self.rounds += 1
        if self.fail_from is not None and self.rounds >= self.fail_from:
            raise self.error or RuntimeError("boom")
        await asyncio.sleep(self.round_s)
        self.finished += 1
        return self.every_s


async def test_a_failing_loop_is_retried_with_growing_backoff_while_the_others_go_on():
    steady, failing = Counting(), Counting(fail_from=1)
    backoffs: list[float] = []
    supervisor = Supervisor([
        Loop("steady", steady, "test.steady_failed"),
        Loop("failing", failing, "test.failing_failed",
             on_backoff=lambda _exc, seconds: backoffs.append(seconds)),
    ], backoff_initial_s=0.02, backoff_max_s=0.2)
    running = asyncio.create_task(supervisor.run())
    await asyncio.sleep(0.6)
    supervisor.stop()
    await asyncio.wait_for(running, 5)
    assert steady.finished >= 20, "the steady loop kept going"
    assert failing.rounds >= 4, "the failing loop was restarted"
    assert backoffs[1] > backoffs[0] and max(backoffs) <= 0.2 + 0.02


async def test_a_fatal_error_stops_every_loop_and_is_raised():
    steady = Counting(round_s=0.05)
    fatal = Counting(fail_from=3, error=ConfigError("SETTING 'x': must be a number"))
    supervisor = Supervisor([Loop("steady", steady, "test.steady_failed"),
                             Loop("fatal", fatal, "test.fatal_failed")])
    with pytest.raises(ConfigError, match="SETTING 'x'"):
        await asyncio.wait_for(supervisor.run(), 5)
    assert fatal.rounds == 3, "a fatal error is not retried"
    assert supervisor.stopping.is_set()
    assert steady.rounds == steady.finished, "the other loop finished its round and stopped"


async def test_stop_lets_a_round_finish_or_cuts_off_a_loop_marked_so():
    slow, cut = Counting(round_s=0.3), Counting(round_s=30)
    supervisor = Supervisor([Loop("slow", slow, "test.slow_failed"),
                             Loop("cut", cut, "test.cut_failed", cancel_on_stop=True)])
    running = asyncio.create_task(supervisor.run())
    await asyncio.sleep(0.1)
    supervisor.stop()
    await asyncio.wait_for(running, 5)
    assert (slow.rounds, slow.finished) == (1, 1)
    assert (cut.rounds, cut.finished) == (1, 0)


def test_trouble_is_told_from_a_bug() -> None:
    import asyncpg
    from aiormq.exceptions import AMQPConnectionError

    from sundial.scheduler.supervisor import Outage, is_trouble

    assert is_trouble(Outage("the broker took no runs"))
    assert is_trouble(AMQPConnectionError("refused"))
    assert is_trouble(asyncpg.ReadOnlySQLTransactionError("read-only"))
    assert not is_trouble(asyncpg.UndefinedColumnError("no such column"))
    assert not is_trouble(TypeError("a bug"))
