""""Run now" through the API: what it costs the database, and that it stays right.

A trigger without arguments is one INSERT (that finds the job itself, and says whether
its queue is paused) and, after the broker's confirm, the mark: two statements. Its
INSERT commits without waiting for the WAL flush, and the mark's commit, which waits for
it, comes before the answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from sundial.core.sql import q
from tests.integration.test_api import Api, noop_job, serving

NAMES = {q(name): name for name in ("insert_manual_run", "mark_published", "get_job",
                                    "paused_queues", "expire_idempotency_key",
                                    "release_publish_lease")}

# asyncpg's own look-ups of a type it meets for the first time on a connection.
ASYNCPG_OWN = ("typeinfo_tree", "current_setting('jit')", "set_config('jit'")


class Statements:
    """The statements the API's pool runs, by name where they are named queries."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[Any, ...]]] = []

    def __call__(self, record: asyncpg.connection.LoggedQuery) -> None:
        if not any(mark in record.query for mark in ASYNCPG_OWN):
            self.seen.append((NAMES.get(record.query, record.query), tuple(record.args or ())))

    def names(self) -> list[str]:
        return [name for name, _ in self.seen]

    def args(self, name: str) -> tuple[Any, ...]:
        [args] = [a for n, a in self.seen if n == name]
        return args


@pytest.fixture
async def watched(db_url: str, amqp_url: str) -> AsyncIterator[tuple[Api, Statements]]:
    async with serving(db_url, amqp_url) as api:
        statements = Statements()
        # Every connection the pool may hand out gets the logger (it stays on the
        # connection once released).
        size = api.pool.get_max_size()
        held = [await api.pool.acquire() for _ in range(size)]
        for conn in held:
            conn.add_query_logger(statements)
        for conn in held:
            await api.pool.release(conn)
        yield api, statements


async def test_a_trigger_without_arguments_is_one_insert_and_the_mark(
        watched: tuple[Api, Statements]) -> None:
    api, statements = watched
    await api.post("/api/jobs", json=noop_job("report", queue="nobody-listens"))
    await api.post("/api/jobs/report/trigger")  # the key is looked up and kept
    statements.seen.clear()

    answer = await api.post("/api/jobs/report/trigger")

    assert answer.status_code == 202
    assert statements.names() == ["insert_manual_run", "mark_published"], statements.seen
    assert statements.args("insert_manual_run")[-1] is True, "commits without waiting for the flush"
    run = await api.pool.fetchrow("SELECT r.status, r.published_at, j.name FROM runs r "
                                  "JOIN jobs j ON j.id = r.job_id WHERE r.id = $1",
                                  answer.json()["run_id"])
    assert (run["status"], run["name"]) == ("queued", "report") and run["published_at"]


async def test_with_a_key_the_trigger_is_a_transaction_that_waits_for_its_flush(
        watched: tuple[Api, Statements]) -> None:
    api, statements = watched
    await api.post("/api/jobs", json=noop_job("report", queue="nobody-listens"))
    await api.post("/api/jobs/report/trigger")
    statements.seen.clear()

    first = await api.post("/api/jobs/report/trigger", json={"idempotency_key": "k-1"})
    again = await api.post("/api/jobs/report/trigger", json={"idempotency_key": "k-1"})

    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["run_id"] == again.json()["run_id"]
    assert [n for n in statements.names() if n == "insert_manual_run"] == ["insert_manual_run"] * 2
    assert all(a[-1] is False for n, a in statements.seen if n == "insert_manual_run")
    assert "BEGIN;" in statements.names() and "COMMIT;" in statements.names()


async def test_the_insert_finds_the_job_by_id_or_name_as_a_lookup_does(
        watched: tuple[Api, Statements]) -> None:
    api, _ = watched
    first = (await api.post("/api/jobs", json=noop_job("first", queue="nobody-listens"))).json()
    # A job whose name is another job's id: the id wins, as everywhere.
    named = (await api.post("/api/jobs", json=noop_job(str(first["id"]),
                                                       queue="nobody-listens"))).json()
    by_id = (await api.post(f"/api/jobs/{first['id']}/trigger")).json()["run_id"]
    by_name = (await api.post("/api/jobs/first/trigger")).json()["run_id"]
    jobs = dict(await api.pool.fetch("SELECT id, job_id FROM runs"))
    assert jobs == {by_id: first["id"], by_name: first["id"]}
    assert named["id"] != first["id"]

    missing = await api.post("/api/jobs/nope/trigger")
    assert (missing.status_code, missing.json()["detail"]) == (404, "no job 'nope'")
    assert (await api.post("/api/jobs/424242/trigger")).status_code == 404
    assert await api.count("runs") == 2 and await api.count("audit_log WHERE target_type = 'run'") == 2


async def test_a_trigger_of_a_paused_queue_is_held_without_reading_the_pauses_again(
        watched: tuple[Api, Statements]) -> None:
    api, statements = watched
    await api.post("/api/jobs", json=noop_job("report", queue="reports"))
    assert (await api.post("/api/queues/reports/pause")).status_code == 200
    statements.seen.clear()

    run_id = (await api.post("/api/jobs/report/trigger")).json()["run_id"]

    assert statements.names() == ["insert_manual_run", "release_publish_lease"], statements.seen
    run = await api.pool.fetchrow("SELECT published_at, publish_lease_until FROM runs "
                                  "WHERE id = $1", run_id)
    assert run["published_at"] is None and run["publish_lease_until"] is None
