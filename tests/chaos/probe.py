"""Probe jobs for the fault-injection scenarios, loaded by workers with
WORKER_IMPORTS=tests.chaos.probe.

`chaos.probe` records each execution in `probe_executions` (created by the scenario)
just before returning, the closest a python handler gets to the run's completion: the
worker writes results in its own batched transaction after the handler returns, so the
handler cannot join it. One row per (run, attempt, worker process): a second execution
of an attempt is a double execution, unless the process of the first was killed (a
worker that takes over a dead worker's attempt runs it again at the same attempt).
"""

from __future__ import annotations

import asyncio
import os

import asyncpg

from sundial import current_run, job

PROBE_TABLE = """
CREATE TABLE IF NOT EXISTS probe_executions (
    run_id      bigint      NOT NULL,
    attempt     integer     NOT NULL,
    executions  integer     NOT NULL DEFAULT 1,
    pid         integer     NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, attempt, pid)
)"""

RECORD = """
INSERT INTO probe_executions (run_id, attempt, pid) VALUES ($1, $2, $3)
ON CONFLICT (run_id, attempt, pid)
DO UPDATE SET executions = probe_executions.executions + 1"""


@job("chaos.probe")
async def probe(seconds: float = 0.0) -> dict:
    run = current_run()
    await asyncio.sleep(seconds)
    conn = await asyncpg.connect(os.environ["DATABASE_URL"], timeout=5)
    try:
        await conn.execute(RECORD, run.run_id, run.attempt, os.getpid())
    finally:
        await conn.close()
    return {"probe": run.run_id, "attempt": run.attempt}


@job("chaos.suicide")
async def suicide() -> None:
    """A job that kills its own worker process, as a segfaulting extension would (async: a
    sync job runs in a child process, whose death fails only its run)."""
    os._exit(17)
