"""Scenario 15: a three-node RabbitMQ cluster (on this machine, tests/chaos/cluster.py)
loses, under load, the node that leads the runs' quorum queue. The scheduler and the
worker name all three nodes in RABBITMQ_URL; they connect to the first and move on when
it goes. No slot is lost or doubled, no run is stuck or left unpublished."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from sundial.core.broker import queue_name
from tests.chaos import cluster
from tests.chaos.checker import check, violations
from tests.chaos.stack import (
    freeze,
    interval_schedules,
    probe_job,
    scheduler_env,
    seeded,
    worker_env,
)
from tests.chaos.test_outages import flowing
from tests.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600),
              pytest.mark.skipif(not cluster.available(),
                                 reason="needs Debian's rabbitmq-server (apt-get install "
                                        "rabbitmq-server)")]


async def test_losing_the_quorum_queue_leader_loses_no_run(db_url, queue, processes):
    seed, rng = seeded()
    conn = await asyncpg.connect(db_url)
    try:
        with cluster.three_node_cluster() as rabbit:
            job = await probe_job(conn, queue)
            await interval_schedules(conn, job, 10, every_s=1)
            scheduler = processes(["scheduler"], scheduler_env(db_url, rabbit.url))
            worker = processes(["worker"], worker_env(db_url, rabbit.url, queue))
            await flowing(conn, await conn.fetchval("SELECT now()"), 60, "start")
            assert rabbit.members(queue_name(queue)) == 3, "the quorum queue spans the cluster"

            await asyncio.sleep(rng.uniform(1, 4))     # under load
            leader = rabbit.queue_leader(queue_name(queue))
            assert leader is not None
            print(f"seed={seed} killing the leader {leader.name} (port {leader.port})")
            leader.kill()

            await flowing(conn, await conn.fetchval("SELECT now()"), 60,
                          "the leader's node was lost")
            await wait_for(lambda: rabbit.queue_leader(queue_name(queue)) not in (None, leader),
                           60, interval=1, what="a new leader elected")
            await asyncio.sleep(rng.uniform(2, 5))     # more load on the two nodes left
            assert scheduler.alive() and worker.alive(), "rode it out without a restart"
            await freeze(conn)
            counts = await check(conn, rabbit.alive()[0].url, seed=seed)
            moved = [p.output().count('"event": "broker.node_connected"')
                     for p in (scheduler, worker)]
            print(f"seed={seed} node connections (scheduler, worker)={moved}")
            # Stopped while their broker is still there: SIGTERM ends them cleanly.
            assert scheduler.stop() == 0 and worker.stop() == 0
        assert not violations(counts), f"seed={seed}: {violations(counts)}"
    finally:
        await conn.close()
