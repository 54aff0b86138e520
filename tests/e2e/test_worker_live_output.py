"""A running run's output is in its row while it runs: the worker writes the tail of what
it printed at each heartbeat (command jobs' stdout and stderr, in-process Python jobs'
prints and logs)."""

from __future__ import annotations

from tests.conftest import wait_for
from tests.e2e.test_worker import add_job, run_row, trigger, wait_final, worker_env


async def output_while_running(pool, run_id: int, text: str):
    """The run's row once its output holds `text` while it is still running."""
    async def seen():
        row = await run_row(pool, run_id)
        return row if row["status"] == "running" and text in (row["output"] or "") else None
    return await wait_for(seen, 30, what=f"{text!r} in the output of running run {run_id}")


async def command_run(pool, db_url, amqp_url, queue, processes, script: str) -> int:
    """A worker that runs command jobs, and a run of `sh -c script` on it."""
    processes(["worker"], worker_env(db_url, amqp_url, queue, WORKER_ALLOW_COMMANDS="true"))
    job = await add_job(pool, queue, "command", {"argv": ["sh", "-c", script]})
    [run_id] = await trigger(pool, amqp_url, job)
    return run_id


async def python_run(pool, db_url, amqp_url, queue, processes, function: str, go) -> int:
    """A worker that imports the test jobs, and a run of `function` waiting for `go`."""
    processes(["worker"], worker_env(db_url, amqp_url, queue,
                                     WORKER_IMPORTS="tests.e2e.test_worker_jobs"))
    job = await add_job(pool, queue, "python", {"function": function,
                                                "kwargs": {"go_file": str(go)}})
    [run_id] = await trigger(pool, amqp_url, job)
    return run_id


async def test_a_command_jobs_output_shows_while_it_runs(pool, db_url, amqp_url, queue,
                                                         processes, tmp_path) -> None:
    go = tmp_path / "go"
    run_id = await command_run(pool, db_url, amqp_url, queue, processes,
                               f"echo first line; echo to stderr >&2; "
                               f"while [ ! -e {go} ]; do sleep 0.05; done; echo last line")
    row = await output_while_running(pool, run_id, "to stderr")
    assert "first line" in row["output"] and "last line" not in row["output"]
    assert row["output_at"] is not None
    go.touch()
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded", row["error"]
    assert row["output"].endswith("last line\n") and "first line" in row["output"]


async def test_a_python_jobs_prints_and_logs_show_while_it_runs(pool, db_url, amqp_url, queue,
                                                                processes, tmp_path) -> None:
    go = tmp_path / "go"
    run_id = await python_run(pool, db_url, amqp_url, queue, processes, "talks_while_running", go)
    row = await output_while_running(pool, run_id, "halfway there")
    assert "step 1: started" in row["output"] and "WARNING reports: halfway there" in row["output"]
    go.touch()
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded", row["error"]
    assert "step 2: done" in row["output"]


async def test_output_that_utf_8_cannot_carry_is_escaped_not_fatal(pool, db_url, amqp_url, queue,
                                                                  processes, tmp_path) -> None:
    go = tmp_path / "go"
    run_id = await python_run(pool, db_url, amqp_url, queue, processes,
                              "logs_an_undecodable_file_name", go)
    row = await output_while_running(pool, run_id, "reading report-\\udcff.csv")
    go.touch()
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded", row["error"]
    assert "reading report-\\udcff.csv" in row["output"]


async def test_the_live_tail_is_bounded(pool, db_url, amqp_url, queue, processes,
                                        tmp_path) -> None:
    go = tmp_path / "go"
    run_id = await command_run(pool, db_url, amqp_url, queue, processes,
                               f"seq 1 30000; echo END-OF-BURST; "
                               f"while [ ! -e {go} ]; do sleep 0.05; done")
    row = await output_while_running(pool, run_id, "END-OF-BURST")
    assert len(row["output"]) == 65536 and row["output"].endswith("30000\nEND-OF-BURST\n")
    go.touch()
    await wait_final(pool, run_id)
