"""A real `sundial worker` gives every run it takes an outcome: results the database would
refuse, results JSON cannot encode, a handler only a busy worker has."""

from __future__ import annotations

from sundial.core.db import create_pool
from sundial.worker.executor import Held, Outcome
from sundial.worker.recorder import Acks, Finished, Recorder
from tests.conftest import wait_for
from tests.e2e.test_worker import add_job, events, scheduler_env, trigger, wait_final, worker_env


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


async def test_a_result_over_worker_max_result_bytes_fails_the_run_naming_size_and_limit(
        pool, db_url, amqp_url, queue, processes):
    processes(["worker"], jobs_env(db_url, amqp_url, queue, WORKER_MAX_RESULT_BYTES=2000))
    big = await add_job(pool, queue, "python", {"function": "whoami",
                                                "kwargs": {"echo": {"text": "é" * 1500}}},
                        max_attempts=3)
    small = await add_job(pool, queue, "python", {"function": "whoami",
                                                  "kwargs": {"echo": {"text": "é" * 100}}})
    # A failed attempt's result counts too: its stdout goes over, the failure stays.
    failing = await add_job(pool, queue, "command", {"argv": [
        "sh", "-c", "head -c 3000 /dev/zero | tr '\\0' x; exit 3"]}, max_attempts=1)

    row = await wait_final(pool, (await trigger(pool, amqp_url, big))[0])
    assert row["status"] == "failed" and row["attempt"] == 1 and row["result"] is None
    # 1500 two-byte characters: the size is the JSON's UTF-8 bytes, not its characters.
    assert row["error"].startswith("the result takes 30"), row["error"]
    assert "bytes as JSON, more than WORKER_MAX_RESULT_BYTES (2000) allows" in row["error"]

    row = await wait_final(pool, (await trigger(pool, amqp_url, small))[0])
    assert row["status"] == "succeeded" and row["result"]["echo"] == {"text": "é" * 100}

    row = await wait_final(pool, (await trigger(pool, amqp_url, failing))[0])
    assert row["status"] == "failed" and "exit" in row["error"], row["error"]
    assert row["result"]["error"].startswith("the result takes 30"), row["result"]
    assert "WORKER_MAX_RESULT_BYTES (2000)" in row["result"]["error"]


async def test_a_run_waits_for_the_busy_worker_with_its_handler_instead_of_dying(
        pool, db_url, amqp_url, queue, processes):
    busy = await add_job(pool, queue, "sleep", {"seconds": 12})
    command = await add_job(pool, queue, "command", {"argv": ["true"]})
    able = processes(["worker"], jobs_env(db_url, amqp_url, queue, WORKER_CONCURRENCY=1))
    [sleeping] = await trigger(pool, amqp_url, busy)
    await wait_for(lambda: pool.fetchval("SELECT status = 'running' FROM runs WHERE id = $1",
                                         sleeping), 20, what="the able worker to be busy")
    unable = processes(["worker"], worker_env(db_url, amqp_url, queue))
    await wait_for(lambda: pool.fetchval("SELECT count(*) = 2 FROM workers"), 20,
                   what="the second worker to register")
    processes(["scheduler"], scheduler_env(db_url, amqp_url))  # its relay publishes again
    [run_id] = await trigger(pool, amqp_url, command)
    # Hand-backs while the able worker sleeps (their pause doubling from 1 s, capped at 16 s)
    # never count towards the delivery limit.
    row = await wait_final(pool, run_id, timeout=60)
    assert row["status"] == "succeeded", row["error"]
    assert row["worker_id"].endswith(f":{able.pid}")
    assert events(unable, "run.handler_elsewhere")
    assert (await wait_final(pool, sleeping))["status"] == "succeeded"


async def test_a_run_no_worker_of_its_queue_can_take_fails_at_once_instead_of_bouncing(
        pool, db_url, amqp_url, queue, processes):
    """A worker of another queue has the handler: it never gets this run's message, so the
    run fails with the fix in its error rather than going back to the outbox forever."""
    other = f"{queue}-other"
    processes(["worker"], jobs_env(db_url, amqp_url, other))   # commands allowed, other queue
    unable = processes(["worker"], worker_env(db_url, amqp_url, queue))
    await wait_for(lambda: pool.fetchval("SELECT count(*) = 2 FROM workers"), 20,
                   what="both workers to register")
    processes(["scheduler"], scheduler_env(db_url, amqp_url))
    command = await add_job(pool, queue, "command", {"argv": ["true"]})
    [run_id] = await trigger(pool, amqp_url, command)
    row = await wait_final(pool, run_id, timeout=15)
    assert row["status"] == "failed" and row["started_at"] is None
    assert "no online worker runs handler 'command'" in row["error"]
    assert "WORKER_ALLOW_COMMANDS" in row["error"]
    assert not events(unable, "run.handler_elsewhere")
