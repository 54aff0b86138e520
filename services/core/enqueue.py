"""A manual run written in a transaction that is given: the statements shared by the API
(trigger, retry) and the client's `defer`, which runs them in the caller's transaction.

The steps are a generator of statements, so that one piece of logic serves every driver
(asyncpg here, psycopg in sundial.client): the driver executes each statement it is
handed and sends back the first row or None; a `Blocking` step is a call the driver makes
(in a thread where it has an event loop to keep free). Every statement uses PostgreSQL's
$1 placeholders, and JSON travels as text, so that a connection without Sundial's jsonb
codec (the caller's own) binds the same values as the API's pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sundial.core import jsonb
from sundial.core.errors import NotFound
from sundial.core.outbox import WAKEUP_CHANNEL
from sundial.core.sql import q

# A trigger's idempotency key finds the run it made for this long (docs/api.md).
IDEMPOTENCY_WINDOW_S = 24 * 3600


@dataclass
class RunArguments:
    """What a manual run brings of its own: payload (secret fields masked) and the
    encrypted secret fields (None: the job's payload at start), priority (None: the
    job's), idempotency key."""

    payload: dict[str, Any] | None = None
    secret_payload: str | None = None
    priority: int | None = None
    key: str | None = None


@dataclass(frozen=True)
class Statement:
    sql: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Blocking:
    """A call that may block (the SSRF check of an http payload resolves its host)."""

    call: Callable[..., Any]
    args: tuple[Any, ...] = ()


@dataclass
class Enqueued:
    """The run made (`row`: what its message needs), or the run an idempotency key found
    (`replayed`; `row` has its id and status)."""

    run_id: int
    status: str
    replayed: bool
    row: dict[str, Any] = field(default_factory=dict)


Step = Statement | Blocking
Steps = Generator[Step, Any, Enqueued]


def enqueue_steps(job_id: int | None, actor: str, action: str, details: Mapping[str, Any],
                  run: RunArguments, *, lease_s: float | None,
                  job_name: str | None = None) -> Steps:
    """Write a manual run of job `job_id` and its audit row; with `job_name` (and no
    idempotency key), of the job with that id or else that name, as get_job finds it: the
    insert looks the job up itself. `lease_s`: how long the caller keeps it to publish it
    itself (publish_runs); None leaves it to the scheduler's relay, which the NOTIFY wakes
    when the transaction commits. With an idempotency key already used for the job, the
    run that has it (nothing is written).

    Written alone (writes_alone: one statement, a publisher that publishes it), the run
    commits without waiting for its WAL flush, and the caller must not answer before
    publish_runs has returned: a commit after it waits for the flush, and so makes the run
    durable too (WAL is flushed in order). Its marking published, or its lease released;
    or, before them, the worker's claim or any other change of the run. Nothing is told of
    the run before then; a database crash in between loses a run nobody was told of, and
    its message, if sent, finds no run and is dead-lettered."""
    name = str(job_id) if job_name is None else job_name
    if run.key is not None:
        yield Statement(q("expire_idempotency_key"), (job_id, run.key, IDEMPOTENCY_WINDOW_S))
    payload = None if run.payload is None else jsonb.dumps(run.payload)
    row = yield Statement(q("insert_manual_run"), (
        job_id, actor, lease_s, action, jsonb.dumps(dict(details)), name, payload,
        run.secret_payload, run.key, run.priority, writes_alone(run.key, lease_s=lease_s)))
    if row is None:
        first = None if run.key is None else (
            yield Statement(q("find_keyed_run"), (job_id, run.key)))
        if first is None:
            raise NotFound(f"no job {job_id}" if job_name is None else f"no job {job_name!r}")
        return Enqueued(first["id"], first["status"], True, dict(first))
    if lease_s is None:
        yield wake_statement("manual")
    return Enqueued(row["run_id"], "queued", False, dict(row))


def writes_alone(key: str | None, *, lease_s: float | None) -> bool:
    """Whether enqueue_steps writes with its one INSERT (no idempotency key `key` to
    expire or look up, no NOTIFY): a statement is a transaction of its own, so a caller that has
    none open need not open one (BEGIN and COMMIT are two round trips)."""
    return key is None and lease_s is not None


def wake_statement(reason: str) -> Statement:
    """Wake every scheduler (on commit of the transaction it runs in)."""
    return Statement("SELECT pg_notify($1, $2)", (WAKEUP_CHANNEL, reason))


async def drive(steps: Steps, execute: Callable[[Statement], Awaitable[Any]]) -> Enqueued:
    """Run the steps with an async driver: `execute` runs one statement and returns its
    first row or None; a blocking call runs in a thread."""
    result: Any = None
    try:
        while True:
            step = steps.send(result)
            if isinstance(step, Blocking):
                result = await asyncio.to_thread(step.call, *step.args)
            else:
                result = await execute(step)
    except StopIteration as done:
        return done.value


def drive_sync(steps: Steps, execute: Callable[[Statement], Any]) -> Enqueued:
    """Run the steps with a sync driver."""
    result: Any = None
    try:
        while True:
            step = steps.send(result)
            result = step.call(*step.args) if isinstance(step, Blocking) else execute(step)
    except StopIteration as done:
        return done.value


async def run_on_asyncpg(conn: Any, steps: Steps) -> Enqueued:
    """Run the steps on an asyncpg connection (in its transaction, if one is open)."""
    return await drive(steps, lambda step: conn.fetchrow(step.sql, *step.args))
