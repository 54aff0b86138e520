"""A paused queue loses nothing: real `sundial scheduler` and `sundial worker` processes.

A message sent before the pause reaches a worker, which hands its run back to the outbox;
the schedule's slots keep getting runs, held unpublished; on resume every one of them runs.
"""

from __future__ import annotations

import pytest

from sundial.api.service import Service
from sundial.api.settings import ApiSettings
from tests.conftest import wait_for
from tests.e2e.test_worker import add_job, events, publish, scheduler_env, worker_env


@pytest.mark.timeout(180)
async def test_a_paused_queue_holds_every_run_and_resume_runs_them_all(
        pool, db_url, amqp_url, queue, processes) -> None:
    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    job = await add_job(pool, queue, "noop")
    early = await pool.fetchval("INSERT INTO runs (job_id, scheduled_for, trigger) "
                                "VALUES ($1, now(), 'manual') RETURNING id", job)
    await publish(pool, amqp_url, [early])  # on the broker before the pause
    await svc.pause_queue("ops", queue)

    worker = processes(["worker"], worker_env(db_url, amqp_url, queue))
    await wait_for(lambda: any(e.get("run_id") == early for e in events(worker, "run.paused")),
                   timeout=60, what="the worker to hand the run back")
    row = await pool.fetchrow("SELECT status, published_at, started_at FROM runs WHERE id = $1",
                              early)
    assert (row["status"], row["published_at"], row["started_at"]) == ("queued", None, None)

    # A schedule every second: its slots get runs, all held in the outbox.
    await pool.execute("INSERT INTO schedules (job_id, kind, interval_seconds, start_at) "
                       "VALUES ($1, 'interval', 1, now())", job)
    processes(["scheduler"], scheduler_env(db_url, amqp_url))

    async def held() -> bool:
        runs = await pool.fetch("SELECT status, published_at FROM runs WHERE schedule_id "
                                "IS NOT NULL")
        assert all(r["status"] == "queued" and r["published_at"] is None for r in runs), runs
        return len(runs) >= 3
    await wait_for(held, timeout=60, what="three slots held by the pause")

    await svc.resume_queue("ops", queue)
    waiting = [r["id"] for r in await pool.fetch("SELECT id FROM runs")]

    async def all_ran() -> bool:
        statuses = await pool.fetch("SELECT status FROM runs WHERE id = ANY($1)", waiting)
        return all(r["status"] == "succeeded" for r in statuses)
    await wait_for(all_ran, timeout=60, what="every held run to succeed after the resume")
    slots = await pool.fetchval("SELECT count(*) FROM runs WHERE schedule_id IS NOT NULL")
    assert slots == await pool.fetchval("SELECT count(DISTINCT scheduled_for) FROM runs "
                                        "WHERE schedule_id IS NOT NULL"), "one run per slot"
