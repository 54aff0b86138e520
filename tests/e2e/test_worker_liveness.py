"""Liveness of a real `sundial worker`: health, database outage, delivery limit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import ROOT, free_port, service_env, wait_for
from tests.e2e.test_worker import add_job, events, trigger, wait_final, worker_env
from tests.faults import tcp_proxy


async def test_health_file_and_healthcheck_events(pool, db_url, amqp_url, queue, processes,
                                                  tmp_path):
    env = worker_env(db_url, amqp_url, queue, HEALTH_DIR=str(tmp_path))
    worker = processes(["worker"], env)

    def healthcheck() -> int:
        return subprocess.run([sys.executable, "-m", "sundial", "healthcheck", "worker"],
                              env=env, cwd=ROOT, capture_output=True).returncode

    await wait_for(lambda: healthcheck() == 0, 10, what="a fresh heartbeat")
    job = await add_job(pool, queue, "noop")
    [run_id] = await trigger(pool, amqp_url, job)
    await wait_final(pool, run_id)
    beats = await wait_for(lambda: [e for e in events(worker, "healthcheck")
                                    if e["succeeded"] >= 1], 10, what="a healthcheck event")
    assert beats[-1]["claimed"] == 1 and beats[-1]["broker_connected"] is True
    worker.kill()
    # A dead worker's heartbeat goes stale: the check fails once the limit passes.
    os.utime(tmp_path / "sundial-worker.health", (0, 0))
    assert healthcheck() == 1


async def test_worker_rides_out_a_database_outage(pool, db_url, amqp_url, queue, processes):
    parts = urlsplit(db_url)
    async with tcp_proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        proxied = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
        worker = processes(["worker"], worker_env(proxied, amqp_url, queue))
        job = await add_job(pool, queue, "sleep", {"seconds": 2})
        [running] = await trigger(pool, amqp_url, job)
        await wait_for(lambda: pool.fetchval("SELECT status = 'running' FROM runs WHERE id = $1",
                                             running), 20, what="the run to start")
        await proxy.cut()
        [waiting] = await trigger(pool, amqp_url, job)
        await wait_for(lambda: events(worker, "worker.record_failed")
                       or events(worker, "worker.heartbeat_failed"), 15,
                       what="the worker to notice the outage")
        await proxy.restore()
        for run_id in (running, waiting):
            row = await wait_final(pool, run_id, timeout=40)
            assert row["status"] == "succeeded" and row["attempt"] == 1
        assert worker.alive()


async def test_worker_cut_off_from_the_database_stops_its_runs_before_they_are_rescued(
        pool, db_url, amqp_url, queue, processes):

    job = await add_job(pool, queue, "sleep", {"seconds": 60}, max_attempts=3)
    parts = urlsplit(db_url)
    async with tcp_proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        proxied = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
        first = processes(["worker"], worker_env(proxied, amqp_url, queue, RUN_LEASE_SECONDS=3))
        [run_id] = await trigger(pool, amqp_url, job)
        await wait_for(lambda: pool.fetchval("SELECT status = 'running' FROM runs WHERE id = $1",
                                             run_id), 20, what="the run to start")
        await proxy.cut()
        # Its heartbeats fail: before the lease can run out unseen, it stops the run itself.
        stopped = await wait_for(lambda: events(first, "run.lease_expired"), 15,
                                 what="the cut-off worker to stop its run")
        assert stopped[0]["run_id"] == run_id and stopped[0]["attempt"] == 1
        assert first.alive()


async def test_sigterm_while_waiting_for_the_broker_or_the_database_exits_0(
        db_url, amqp_url, queue, processes):
    # Nothing listens on these ports: the services wait, with backoff, for ever.
    nowhere = free_port()
    worker = processes(["worker"], worker_env(
        db_url, amqp_url.replace(f":{urlsplit(amqp_url).port}/", f":{nowhere}/"), queue))
    parts = urlsplit(db_url)
    scheduler = processes(["scheduler"], service_env(
        urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{nowhere}")), amqp_url))
    # Log files are appended to: only what these processes wrote counts.
    since = {p: p.log_path.stat().st_size for p in (worker, scheduler)}
    await wait_for(lambda: _logged(worker, since[worker], b"broker.connect_retry"), 20,
                   what="the worker to wait for the broker")
    await wait_for(lambda: _logged(scheduler, since[scheduler], b"db.connect_retry"), 20,
                   what="the scheduler to wait for the database")
    assert worker.stop(timeout=10) == 0
    assert scheduler.stop(timeout=10) == 0


async def _logged(process, since: int, event: bytes) -> bool:
    return event in process.log_path.read_bytes()[since:]


@pytest.mark.parametrize("service", ["scheduler", "worker"])
async def test_sigterm_while_the_process_is_still_loading_exits_0(
        db_url, amqp_url, queue, processes, service):
    """SIGTERM before the event loop runs (the imports take a few hundred ms) is noted
    and honoured once the service starts; run as `python -m sundial`, as here."""
    env = worker_env(db_url, amqp_url, queue) if service == "worker" else \
        service_env(db_url, amqp_url)
    for delay_s in (0.0, 0.15):
        process = processes([service], env)
        # From the moment the process catches SIGTERM (sundial._early, before the heavy
        # imports): until then Python itself is starting and the default action applies.
        await wait_for(lambda pid=process.pid: _catches_sigterm(pid), 10, interval=0.002,
                       what="the process to catch SIGTERM")
        await asyncio.sleep(delay_s)
        assert process.stop(timeout=10) == 0, f"SIGTERM {delay_s} s after it was caught"


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (SigCgt in /proc/<pid>/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt"))
    return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))
