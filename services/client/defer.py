"""`defer`: a run written in the caller's own database transaction.

The run row (and its audit row, actor "client" unless told) is written on the caller's
connection, with the statements and the checks of the API's trigger (sundial.core.enqueue,
sundial.api.arguments): it exists when their transaction commits, and a rollback leaves
nothing. A NOTIFY in the same transaction wakes the schedulers on commit, and their outbox
relay publishes the run. Works on asyncpg connections and on psycopg 3 ones (the
`sundial[psycopg]` extra), sync and async.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from sundial.api.arguments import DEFAULT_MAX_PAYLOAD_BYTES, PayloadRules, trigger_steps
from sundial.api.schemas import TriggerBody
from sundial.api.service import parse_id
from sundial.client.http import Run
from sundial.core.enqueue import (
    Enqueued,
    Statement,
    Steps,
    drive,
    drive_sync,
    run_on_asyncpg,
)
from sundial.core.errors import InvalidInput
from sundial.core.netguard import parse_networks

ACTOR = "client"
ACTION = "job.defer"
MISSING_KEY = "no encryption_key was given to defer (pass the workers' ENCRYPTION_KEY)"


async def defer(conn: Any, job: str | int, payload: dict[str, Any] | None = None, *,
                mode: str | None = None, idempotency_key: str | None = None,
                priority: int | None = None, encryption_key: str | None = None,
                allowed_networks: Iterable[str] = (),
                max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
                actor: str = ACTOR) -> Run:
    """Queue a run of `job` (id or name) in the transaction open on `conn`, an asyncpg
    connection (or pool connection) or a psycopg AsyncConnection. Arguments as the API's
    trigger: `payload` merged into the job's (`mode="replace"`: the whole payload),
    `idempotency_key` (a repeat within 24 hours returns the first run, `replayed`),
    `priority` 0-9. Raises InvalidInput naming the field, NotFound for no such job."""
    steps = _steps(job, payload, mode, idempotency_key, priority, encryption_key,
                   allowed_networks, max_payload_bytes, actor)
    if _is_psycopg(conn):
        from psycopg import AsyncRawCursor
        from psycopg.rows import dict_row

        async with AsyncRawCursor(conn, row_factory=dict_row) as cur:
            async def execute(step: Statement) -> Any:
                await cur.execute(step.sql, step.args)
                return await cur.fetchone() if cur.description else None

            return _run(await drive(steps, execute))
    return _run(await run_on_asyncpg(conn, steps))


def defer_sync(conn: Any, job: str | int, payload: dict[str, Any] | None = None, *,
               mode: str | None = None, idempotency_key: str | None = None,
               priority: int | None = None, encryption_key: str | None = None,
               allowed_networks: Iterable[str] = (),
               max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
               actor: str = ACTOR) -> Run:
    """`defer` on a psycopg (sync) Connection, in its current transaction."""
    from psycopg import RawCursor
    from psycopg.rows import dict_row

    steps = _steps(job, payload, mode, idempotency_key, priority, encryption_key,
                   allowed_networks, max_payload_bytes, actor)
    with RawCursor(conn, row_factory=dict_row) as cur:
        def execute(step: Statement) -> Any:
            cur.execute(step.sql, step.args)
            return cur.fetchone() if cur.description else None

        return _run(drive_sync(steps, execute))


def _run(queued: Enqueued) -> Run:
    return Run(queued.run_id, queued.status, queued.replayed)


def _is_psycopg(conn: Any) -> bool:
    return type(conn).__module__.split(".")[0] == "psycopg"


def _steps(job: str | int, payload: dict[str, Any] | None, mode: str | None,
           key: str | None, priority: int | None, encryption_key: str | None,
           allowed_networks: Iterable[str], max_payload_bytes: int, actor: str) -> Steps:
    body = _body(payload, mode, key, priority)
    try:
        networks = parse_networks(allowed_networks)
    except ValueError as exc:
        raise InvalidInput("allowed_networks", list(allowed_networks), str(exc)) from None
    rules = PayloadRules(encryption_key, max_payload_bytes, networks, MISSING_KEY)
    return trigger_steps(rules, job, parse_id(job), body, actor, ACTION, lease_s=None)


def _body(payload: dict[str, Any] | None, mode: str | None, key: str | None,
          priority: int | None) -> TriggerBody:
    """The arguments, checked as the API checks a trigger's body."""
    given = {"payload": payload, "mode": mode, "idempotency_key": key, "priority": priority}
    try:
        return TriggerBody.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "arguments"
        raise InvalidInput(field, err.get("input"), err["msg"].removeprefix("Value error, ")
                           ) from None
