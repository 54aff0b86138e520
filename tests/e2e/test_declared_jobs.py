"""A job declared in code, end to end: `sundial sync` writes it, the scheduler fires its
schedule, a worker runs the function; once code no longer declares it, a sync disables
it and its slots pass without runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, service_env, wait_for
from tests.e2e.test_worker import scheduler_env, worker_env

APP = '''
from sundial import current_run, job

@job("e2e.declared", every=1, queue={queue!r}, kwargs={{"greeting": "hello"}})
def declared(greeting):
    run = current_run()
    return {{"greeting": greeting, "job": run.job}}
'''


async def test_a_declared_schedule_fires_and_a_worker_runs_the_function(
        pool, db_url, amqp_url, queue, processes, tmp_path: Path) -> None:
    (tmp_path / "declared_app.py").write_text(APP.format(queue=queue))
    extra = {"PYTHONPATH": str(tmp_path), "WORKER_IMPORTS": "declared_app"}

    def sync() -> str:
        done = subprocess.run([sys.executable, "-m", "sundial", "sync"], cwd=ROOT, timeout=60,
                              env=service_env(db_url, amqp_url, **extra),
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "create job 'e2e.declared'" in sync()
    processes(["scheduler"], scheduler_env(db_url, amqp_url))
    processes(["worker"], worker_env(db_url, amqp_url, queue, **extra))

    run = await wait_for(lambda: pool.fetchrow(
        "SELECT r.* FROM runs r JOIN jobs j ON j.id = r.job_id WHERE j.name = 'e2e.declared' "
        "AND r.trigger = 'schedule' AND r.status = 'succeeded' LIMIT 1"), 30,
        what="a run of the declared schedule to succeed")
    assert run["result"] == {"greeting": "hello", "job": "e2e.declared"}
    assert run["schedule_id"] is not None

    # Removed from code: the next sync disables the job; its runs stay.
    (tmp_path / "declared_app.py").write_text("")
    assert "disable job 'e2e.declared'" in sync()
    synced_at = await pool.fetchval("SELECT now()")
    job = await pool.fetchrow("SELECT * FROM jobs WHERE name = 'e2e.declared'")
    assert job["enabled"] is False and job["undeclared_at"] is not None
    # The scheduler goes on passing its slots, without runs.
    await wait_for(lambda: pool.fetchval(
        "SELECT next_run_at > $1::timestamptz + interval '3 seconds' FROM schedules WHERE job_id = $2",
        synced_at, job["id"]), 30, what="the scheduler to pass slots of the disabled job")
    assert await pool.fetchval("SELECT count(*) FROM runs WHERE job_id = $1 AND trigger = "
                               "'schedule' AND scheduled_for > $2", job["id"], synced_at) == 0
    assert await pool.fetchval("SELECT count(*) FROM runs WHERE id = $1", run["id"]) == 1
