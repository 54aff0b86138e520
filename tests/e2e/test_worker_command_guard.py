"""What a `command` job may run, and what its program sees, with a real `sundial worker`:
argv[0] found on WORKER_COMMAND_PATH only, WORKER_COMMAND_ALLOWLIST matched against that
program and able to pin its arguments, an environment holding none of the worker's."""

from __future__ import annotations

import shutil
from pathlib import Path

from cryptography.fernet import Fernet

from tests.e2e.test_worker import add_job, trigger, wait_final, worker_env


def fake_program(folder: Path, name: str, marker: Path) -> Path:
    """An executable `name` in `folder` that leaves `marker` behind when it runs."""
    folder.mkdir(exist_ok=True)
    program = folder / name
    program.write_text(f"#!/bin/sh\ntouch {marker}\necho fake\n")
    program.chmod(0o755)
    return program


async def test_a_program_sees_none_of_the_workers_variables(pool, db_url, amqp_url, queue,
                                                            processes):
    key = Fernet.generate_key().decode()
    env = worker_env(db_url, amqp_url, queue, WORKER_ALLOW_COMMANDS="true",
                     WORKER_COMMAND_ALLOWLIST="env", ENCRYPTION_KEY=key,
                     DEPLOY_TOKEN="token-of-the-worker", LANG="C.UTF-8", TZ="Europe/Paris")
    processes(["worker"], env)
    job = await add_job(pool, queue, "command", {"argv": ["env"], "env": {"REPORT": "daily"}})
    [run_id] = await trigger(pool, amqp_url, job)
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded", row["error"]
    seen = dict(line.split("=", 1) for line in row["result"]["stdout"].splitlines())
    assert seen == {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": env["HOME"],
                    "LANG": "C.UTF-8", "TZ": "Europe/Paris", "REPORT": "daily"}
    for secret in (key, db_url, amqp_url, "token-of-the-worker"):
        assert secret not in row["result"]["stdout"]


async def test_a_job_cannot_choose_the_program_through_path_or_the_loader(
        pool, db_url, amqp_url, queue, processes, tmp_path):
    """A job's PATH or LD_PRELOAD is refused; a plain `echo` entry runs the echo found on
    WORKER_COMMAND_PATH, not one earlier on the worker's own PATH nor one named by path."""
    marker = tmp_path / "ran"
    fake = fake_program(tmp_path / "bin", "echo", marker)
    env = worker_env(db_url, amqp_url, queue, WORKER_ALLOW_COMMANDS="true",
                     WORKER_COMMAND_ALLOWLIST="echo")
    env["PATH"] = f"{fake.parent}:{env['PATH']}"
    processes(["worker"], env)
    plain = await add_job(pool, queue, "command", {"argv": ["echo", "a", "b"]})
    by_path = await add_job(pool, queue, "command",
                            {"argv": ["echo", "hi"], "env": {"PATH": str(fake.parent)}})
    preload = await add_job(pool, queue, "command",
                            {"argv": ["echo", "hi"], "env": {"LD_PRELOAD": "/tmp/evil.so"}})
    absolute = await add_job(pool, queue, "command", {"argv": [str(fake), "hi"]})

    [run_id] = await trigger(pool, amqp_url, plain)
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded" and row["result"]["stdout"] == "a b\n", row["error"]
    for job, field in ((by_path, "PATH"), (preload, "LD_PRELOAD")):
        [run_id] = await trigger(pool, amqp_url, job)
        row = await wait_final(pool, run_id)
        assert row["status"] == "failed" and row["attempt"] == 1
        assert f"payload.env '{field}'" in row["error"], row["error"]
        assert row["result"] is None, "the program ran"
    [run_id] = await trigger(pool, amqp_url, absolute)
    row = await wait_final(pool, run_id)
    assert row["status"] == "failed" and "not in WORKER_COMMAND_ALLOWLIST" in row["error"]
    assert not marker.exists(), "the job ran another program than the allowed echo"


async def test_find_pinned_to_fixed_arguments_runs_only_those(pool, db_url, amqp_url, queue,
                                                              processes, tmp_path):
    (tmp_path / "a.old").write_text("")
    (tmp_path / "keep.txt").write_text("")
    pinned = ["find", str(tmp_path), "-name", "*.old", "-delete"]
    env = worker_env(db_url, amqp_url, queue, WORKER_ALLOW_COMMANDS="true",
                     WORKER_COMMAND_ALLOWLIST=f"echo,{' '.join(pinned)}",
                     DEPLOY_TOKEN="token-of-the-worker")
    processes(["worker"], env)
    escape = await add_job(pool, queue, "command",
                           {"argv": ["find", str(tmp_path), "-exec", "env", ";"]})
    options = await add_job(pool, queue, "command",
                            {"argv": pinned, "env": {"POSIXLY_CORRECT": "1"}})
    exact = await add_job(pool, queue, "command", {"argv": pinned})

    [run_id] = await trigger(pool, amqp_url, escape)
    row = await wait_final(pool, run_id)
    assert row["status"] == "failed" and row["result"] is None
    found = shutil.which("find", path="/usr/local/bin:/usr/bin:/bin")
    assert f"allows {found} only as: find" in row["error"], row["error"]
    [run_id] = await trigger(pool, amqp_url, options)
    row = await wait_final(pool, run_id)
    assert row["status"] == "failed" and "may not set its environment" in row["error"]
    assert (tmp_path / "a.old").exists()
    [run_id] = await trigger(pool, amqp_url, exact)
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded", row["error"]
    assert not (tmp_path / "a.old").exists() and (tmp_path / "keep.txt").exists()

