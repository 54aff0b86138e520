"""Python jobs the worker tests run (imported by workers with WORKER_IMPORTS); no tests here."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from sundial import PayloadError, current_run, job


@job("flaky")
def flaky(succeed_on_attempt: int) -> dict:
    """Fails until the given attempt, then succeeds (a sync job: runs in a thread)."""
    attempt = current_run().attempt
    if attempt < succeed_on_attempt:
        raise RuntimeError(f"attempt {attempt} fails on purpose")
    return {"attempt": attempt}


@job("always_fails")
async def always_fails() -> None:
    raise ValueError("this job always fails")


@job("busy")
def busy(seconds: float) -> dict:
    time.sleep(seconds)
    return {"slept_s": seconds}


@job("unstorable_values")
def unstorable_values() -> dict:
    """Values PostgreSQL refuses in jsonb: NaN and a NUL character."""
    return {"x": float("nan"), "s": "a\x00b"}


@job("not_json")
def not_json() -> dict:
    """A result JSON cannot encode at all: a tuple as a key."""
    return {(1, 2): 3}


@job("sleeps_with_pid")
def sleeps_with_pid(pid_file: str, seconds: float) -> dict:
    """Writes the pid of the process it runs in, then sleeps."""
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    return {"slept_s": seconds}


@job("exits")
def exits(code: int) -> None:
    """Ends its process at once, as a C extension calling exit() would."""
    os._exit(code)


@job("kills_itself")
def kills_itself() -> None:
    """Dies by SIGKILL, as the out-of-memory killer would kill it."""
    os.kill(os.getpid(), signal.SIGKILL)


@job("whoami")
def whoami(echo: dict) -> dict:
    run = current_run()
    return {"run_id": run.run_id, "job": run.job, "attempt": run.attempt, "pid": os.getpid(),
            "echo": echo}


@job("refuses_payload")
def refuses_payload() -> None:
    raise PayloadError("day must not be empty", output="checked the payload", result={"day": ""})


@job("environment")
def environment(name: str) -> dict:
    """What the job sees of a variable, and whether its process started with it (what
    /proc/<pid>/environ shows to other processes of the user)."""
    with open("/proc/self/environ", "rb") as f:
        started_with = [v.split(b"=", 1)[0].decode() for v in f.read().split(b"\0") if v]
    return {"value": os.environ.get(name), "started_with": name in started_with}


@job("talks_while_running")
async def talks_while_running(go_file: str) -> dict:
    """Prints and logs, then waits for `go_file` to exist, then prints again."""
    import asyncio
    import logging

    print("step 1: started")
    logging.getLogger("reports").warning("halfway there")
    # Polls a file another process creates: an Event cannot cross processes.
    while not os.path.exists(go_file):  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.05)
    print("step 2: done")
    return {"ok": True}


@job("logs_an_undecodable_file_name")
async def logs_an_undecodable_file_name(go_file: str) -> dict:
    """Logs a file name that is not UTF-8 (os.fsdecode keeps its bad byte as a lone
    surrogate), then waits for `go_file` to exist."""
    import asyncio
    import logging

    logging.getLogger("reports").warning("reading %s", os.fsdecode(b"report-\xff.csv"))
    while not os.path.exists(go_file):  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.05)
    return {"ok": True}
