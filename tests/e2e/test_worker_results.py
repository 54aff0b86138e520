"""Results the database would refuse never stop a real `sundial worker` recording."""

from __future__ import annotations

from core.db import create_pool
from tests.e2e.test_worker import add_job, trigger, wait_final, worker_env
from worker.executor import Held, Outcome
from worker.recorder import Acks, Finished, Recorder


def jobs_env(db_url: str, amqp_url: str, queue: str, **extra: object) -> dict[str, str]:
    return worker_env(db_url, amqp_url, queue, WORKER_IMPORTS="tests.e2e.test_worker_jobs",
                      WORKER_ALLOW_COMMANDS="true", **extra)


async def test_nan_and_nul_in_results_are_stored_and_the_worker_goes_on(
        pool, db_url, amqp_url, queue, processes):
    processes(["worker"], jobs_env(db_url, amqp_url, queue))
    values = await add_job(pool, queue, "python", {"function": "unstorable_values"})
    nul = await add_job(pool, queue, "command", {"argv": ["printf", "a\\000b"]})
    noop = await add_job(pool, queue, "noop")

    [run_id] = await trigger(pool, amqp_url, values)
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded"
    assert row["result"] == {"x": None, "s": "a\ufffdb"}

    [run_id] = await trigger(pool, amqp_url, nul)
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded"
    assert row["result"]["stdout"] == "a\ufffdb"

    [run_id] = await trigger(pool, amqp_url, noop)
    assert (await wait_final(pool, run_id))["status"] == "succeeded"


async def test_a_refused_row_fails_its_run_and_the_rest_of_the_batch_is_written(pool, db_url):
    job = await add_job(pool, "q", "noop")
    runs = [await pool.fetchval(
        """INSERT INTO runs (job_id, scheduled_for, trigger, status, worker_id, started_at)
           VALUES ($1, now(), 'manual', 'running', 'w', now()) RETURNING id""", job)
        for _ in range(2)]
    bad, good = runs
    recorder_pool = await create_pool(db_url, min_size=1, max_size=2)
    try:
        recorder = Recorder(recorder_pool, "w", Acks(), {})
        # NaN as a handler might hand it over unsanitised: jsonb refuses it.
        await recorder._write([
            Finished(None, Held(bad, 1), Outcome("succeeded", result={"x": float("nan")})),
            Finished(None, Held(good, 1), Outcome("succeeded", result={"ok": True}))])
    finally:
        await recorder_pool.close()
    bad_row = await pool.fetchrow("SELECT * FROM runs WHERE id = $1", bad)
    assert bad_row["status"] == "failed"
    assert "the database refused this run's succeeded outcome" in bad_row["error"]
    good_row = await pool.fetchrow("SELECT * FROM runs WHERE id = $1", good)
    assert good_row["status"] == "succeeded" and good_row["result"] == {"ok": True}


async def test_a_result_json_cannot_encode_fails_the_run_with_a_clear_error(
        pool, db_url, amqp_url, queue, processes):
    processes(["worker"], jobs_env(db_url, amqp_url, queue))
    job = await add_job(pool, queue, "python", {"function": "not_json"}, max_attempts=3)
    [run_id] = await trigger(pool, amqp_url, job)
    row = await wait_final(pool, run_id)
    assert row["status"] == "failed" and row["attempt"] == 1
    assert row["error"].startswith("the result cannot be stored as JSON: TypeError: keys must be")
    noop = await add_job(pool, queue, "noop")
    [run_id] = await trigger(pool, amqp_url, noop)
    assert (await wait_final(pool, run_id))["status"] == "succeeded"
