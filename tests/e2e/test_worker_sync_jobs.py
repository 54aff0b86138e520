"""Sync Python jobs run in child processes of a real `sundial worker`: a timeout, a cancel
request or a shutdown past its grace kills the job's process, a process that dies fails
only its own run, and the job sees its run through current_run()."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.conftest import wait_for
from tests.e2e.test_worker import add_job, events, run_row, trigger, wait_final, worker_env

# The most threads asyncio.to_thread has (the default executor's): one more overrunning
# job than this starved every sync job after them while sync jobs ran in threads.
DEFAULT_EXECUTOR_THREADS = min(32, (os.cpu_count() or 1) + 4)


def jobs_env(db_url: str, amqp_url: str, queue: str, **extra: object) -> dict[str, str]:
    return worker_env(db_url, amqp_url, queue, WORKER_IMPORTS="tests.e2e.test_worker_jobs",
                      **extra)


def exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def job_pid(pid_file: Path) -> int:
    """The pid the sleeping job wrote, once it has started."""
    text = await wait_for(lambda: pid_file.exists() and pid_file.read_text(), 20,
                          what="the job to write its pid")
    return int(text)


async def test_a_sync_job_past_its_timeout_is_killed(pool, db_url, amqp_url, queue, processes,
                                                    tmp_path):
    worker = processes(["worker"], jobs_env(db_url, amqp_url, queue))
    pid_file = tmp_path / "pid"
    job = await add_job(pool, queue, "python", {"function": "sleeps_with_pid",
                                                "args": [str(pid_file), 300]}, timeout_seconds=1)
    [run_id] = await trigger(pool, amqp_url, job)
    row = await wait_final(pool, run_id)
    assert row["status"] == "timed_out" and "timed out after 1s" in row["error"]
    pid = await job_pid(pid_file)
    assert pid != worker.pid, "the job ran in a process of its own"
    await wait_for(lambda: not exists(pid), 10, what=f"the job's process {pid} to be gone")
    assert worker.alive()


async def test_overrunning_sync_jobs_do_not_starve_the_next_one(pool, db_url, amqp_url, queue,
                                                               processes, tmp_path):
    overrunning = DEFAULT_EXECUTOR_THREADS + 1
    processes(["worker"], jobs_env(db_url, amqp_url, queue, WORKER_CONCURRENCY=overrunning + 1,
                                   WORKER_SYNC_PROCESSES=2))
    sleeper = await add_job(pool, queue, "python", {"function": "sleeps_with_pid",
                                                    "args": [str(tmp_path / "pid"), 300]},
                            timeout_seconds=1)
    stuck = await trigger(pool, amqp_url, sleeper, count=overrunning)
    for run_id in stuck:
        assert (await wait_final(pool, run_id))["status"] == "timed_out"
    quick = await add_job(pool, queue, "python", {"function": "whoami", "args": [{}]},
                          timeout_seconds=15)
    [run_id] = await trigger(pool, amqp_url, quick)
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded", row["error"]
    assert row["result"]["run_id"] == run_id


async def test_a_cancelled_sync_job_is_killed(pool, db_url, amqp_url, queue, processes, tmp_path):
    worker = processes(["worker"], jobs_env(db_url, amqp_url, queue))
    pid_file = tmp_path / "pid"
    job = await add_job(pool, queue, "python", {"function": "sleeps_with_pid",
                                                "args": [str(pid_file), 300]})
    [run_id] = await trigger(pool, amqp_url, job)
    pid = await job_pid(pid_file)
    await pool.execute("UPDATE runs SET cancel_requested = true WHERE id = $1", run_id)
    assert (await wait_final(pool, run_id, timeout=10))["status"] == "cancelled"
    await wait_for(lambda: not exists(pid), 10, what=f"the job's process {pid} to be gone")
    killed = events(worker, "sync_process.killed")
    assert [(e["pid"], e["run_id"]) for e in killed] == [(pid, run_id)]


async def test_a_shutdown_past_its_grace_kills_the_sync_job(pool, db_url, amqp_url, queue,
                                                           processes, tmp_path):
    worker = processes(["worker"], jobs_env(db_url, amqp_url, queue, WORKER_SHUTDOWN_GRACE=1))
    pid_file = tmp_path / "pid"
    job = await add_job(pool, queue, "python", {"function": "sleeps_with_pid",
                                                "args": [str(pid_file), 300]})
    [run_id] = await trigger(pool, amqp_url, job)
    pid = await job_pid(pid_file)
    worker.signal(signal.SIGTERM)
    assert worker.proc.wait(20) == 0
    assert not exists(pid)
    row = await run_row(pool, run_id)
    assert row["status"] == "queued" and row["attempt"] == 1


async def test_a_sync_job_whose_process_dies_fails_its_run_and_the_worker_goes_on(
        pool, db_url, amqp_url, queue, processes):
    worker = processes(["worker"], jobs_env(db_url, amqp_url, queue))
    exits = await add_job(pool, queue, "python", {"function": "exits", "args": [1]},
                          max_attempts=1)
    killed = await add_job(pool, queue, "python", {"function": "kills_itself"}, max_attempts=1)
    whoami = await add_job(pool, queue, "python", {"function": "whoami", "args": [{}]})

    [run_id] = await trigger(pool, amqp_url, exits)
    row = await wait_final(pool, run_id)
    assert row["status"] == "failed"
    assert row["error"] == "ProcessExited: the job's process exited with code 1"

    [run_id] = await trigger(pool, amqp_url, killed)
    row = await wait_final(pool, run_id)
    assert row["status"] == "failed"
    assert row["error"].startswith("ProcessExited: the job's process exited with signal 9 "
                                   "(SIGKILL"), row["error"]

    [run_id] = await trigger(pool, amqp_url, whoami)
    assert (await wait_final(pool, run_id))["status"] == "succeeded"
    assert worker.alive()


async def test_current_run_in_a_sync_job_is_its_run(pool, db_url, amqp_url, queue, processes):
    worker = processes(["worker"], jobs_env(db_url, amqp_url, queue))
    job = await add_job(pool, queue, "python",
                        {"function": "whoami", "kwargs": {"echo": {"day": "2024-06-01", "n": [1]}}})
    name = await pool.fetchval("SELECT name FROM jobs WHERE id = $1", job)
    first, second = await trigger(pool, amqp_url, job, count=2)
    for run_id in (first, second):
        row = await wait_final(pool, run_id)
        assert row["status"] == "succeeded", row["error"]
        result = row["result"]
        assert (result["run_id"], result["job"], result["attempt"]) == (run_id, name, 1)
        assert result["echo"] == {"day": "2024-06-01", "n": [1]}
        assert result["pid"] != worker.pid, "the job ran in a process of its own"


async def test_errors_raised_in_a_sync_job_keep_their_meaning(pool, db_url, amqp_url, queue,
                                                            processes):
    processes(["worker"], jobs_env(db_url, amqp_url, queue))
    refused = await add_job(pool, queue, "python", {"function": "refuses_payload"},
                            max_attempts=3)
    [run_id] = await trigger(pool, amqp_url, refused)
    row = await wait_final(pool, run_id)
    assert (row["status"], row["attempt"]) == ("failed", 1), "a PayloadError is not retried"
    assert row["error"] == "PayloadError: day must not be empty"
    assert row["output"] == "checked the payload" and row["result"] == {"day": ""}

    flaky = await add_job(pool, queue, "python", {"function": "flaky", "args": [5]},
                          max_attempts=1)
    [run_id] = await trigger(pool, amqp_url, flaky)
    row = await wait_final(pool, run_id)
    assert row["error"] == "RuntimeError: attempt 1 fails on purpose"
    assert "Traceback" in row["output"] and "in flaky" in row["output"]


async def test_a_sync_job_dies_with_its_killed_worker(pool, db_url, amqp_url, queue, processes,
                                                     tmp_path):
    """A worker killed by SIGKILL cannot stop its children: the kernel does (Linux), so the
    job never runs on beside the retry another worker starts."""
    worker = processes(["worker"], jobs_env(db_url, amqp_url, queue))
    pid_file = tmp_path / "pid"
    job = await add_job(pool, queue, "python", {"function": "sleeps_with_pid",
                                                "args": [str(pid_file), 300]})
    await trigger(pool, amqp_url, job)
    pid = await job_pid(pid_file)
    assert pid != worker.pid, "the job ran in a process of its own"
    worker.kill()
    await wait_for(lambda: not exists(pid), 10, what=f"the job's process {pid} to be gone")


async def test_sync_jobs_run_in_threads_when_asked(pool, db_url, amqp_url, queue, processes):
    worker = processes(["worker"], jobs_env(db_url, amqp_url, queue, WORKER_SYNC_PROCESSES=0))
    job = await add_job(pool, queue, "python", {"function": "whoami", "args": [{}]})
    [run_id] = await trigger(pool, amqp_url, job)
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded", row["error"]
    assert (row["result"]["run_id"], row["result"]["pid"]) == (run_id, worker.pid)


async def test_a_sync_job_sees_the_workers_variables_its_process_did_not_start_with(
        pool, db_url, amqp_url, queue, processes):
    """DATABASE_URL reaches the job's os.environ through the pipe, after the process made
    itself non-dumpable: it is not in the environment the process started with, which a
    command job of the same user could read from /proc while the process starts."""
    processes(["worker"], jobs_env(db_url, amqp_url, queue))
    job = await add_job(pool, queue, "python",
                        {"function": "environment", "kwargs": {"name": "DATABASE_URL"}})
    [run_id] = await trigger(pool, amqp_url, job)
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded", row["error"]
    assert row["result"] == {"value": db_url, "started_with": False}
