"""The seams on aiormq internals that core.broker relies on: fails when a new aiormq
version moves them (aiormq's minor version is pinned for this reason)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiormq
from pamqp.commands import Connection

from sundial.core.broker import watch_blocking


async def test_blocked_and_unblocked_notices_reach_the_callbacks() -> None:
    underlay = aiormq.Connection("amqp://guest:guest@127.0.0.1:1/")
    connection = SimpleNamespace(transport=SimpleNamespace(connection=underlay))
    seen: list[str | None] = []
    watch_blocking(connection, seen.append, lambda: seen.append(None))

    # What aiormq's reader calls for the two frames on channel 0.
    await underlay._Connection__handle_connection_blocked(
        Connection.Blocked(reason="low on memory"))
    ready = asyncio.ensure_future(underlay.ready())
    underlay.connected.set()
    await asyncio.sleep(0.01)
    assert not ready.done(), "aiormq itself still holds the connection while blocked"
    await underlay._Connection__handle_connection_unblocked(Connection.Unblocked())
    await asyncio.wait_for(ready, 1)
    assert seen == ["low on memory", None]


def test_the_reader_looks_the_handlers_up_on_the_connection() -> None:
    """watch_blocking replaces the handlers on the instance: aiormq's reader must look
    them up there at each frame (not keep references taken earlier)."""
    import inspect

    reader = inspect.getsource(aiormq.Connection._Connection__reader)
    assert "await self.__handle_connection_blocked(frame)" in reader
    assert "await self.__handle_connection_unblocked(frame)" in reader
