"""Real `sundial scheduler` processes against the real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from datetime import timedelta
from urllib.parse import urlsplit

import aio_pika
import asyncpg

from sundial.core.broker import declare_topology, queue_name
from tests.conftest import service_env, wait_for
from tests.faults import tcp_proxy


class Collector:
    """Consumes a run queue in the background, keeping every message id it sees."""

    def __init__(self, amqp_url: str, queue: str):
        self.amqp_url, self.queue = amqp_url, queue
        self.ids: list[int] = []
        self._conn: aio_pika.abc.AbstractConnection | None = None

    async def __aenter__(self) -> Collector:
        self._conn = await aio_pika.connect(self.amqp_url)
        channel = await self._conn.channel()
        await declare_topology(channel, [self.queue], delivery_limit=5)
        q = await channel.get_queue(queue_name(self.queue))

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            self.ids.append(int(message.message_id))
            await message.ack()

        await q.consume(on_message)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._conn is not None
        await self._conn.close()


async def setup_schedules(conn: asyncpg.Connection, queue: str, count: int,
                          every_s: float = 1.0, start_in_s: float = 2.0) -> None:
    job = await conn.fetchval(
        "INSERT INTO jobs (name, handler, queue) VALUES ('probe', 'noop', $1) RETURNING id", queue)
    await conn.execute(
        """INSERT INTO schedules (job_id, kind, interval_seconds, start_at, misfire_policy,
                                  misfire_grace_seconds)
           SELECT $1, 'interval', $2, date_trunc('second', now()) + make_interval(secs => $3),
                  'run_all', 3600
           FROM generate_series(1, $4)""", job, every_s, start_in_s, count)


async def assert_every_slot_has_exactly_one_run(conn: asyncpg.Connection, every_s: float,
                                                until_lag_s: float) -> int:
    """Per schedule: runs at start_at, start_at + every, ... with no gap, up to a slot
    no older than `until_lag_s`. Returns the number of runs."""
    rows = await conn.fetch(
        """SELECT s.id, s.start_at, now() AS now,
                  array_agg(r.scheduled_for ORDER BY r.scheduled_for) AS slots
           FROM schedules s LEFT JOIN runs r ON r.schedule_id = s.id
           GROUP BY s.id""")
    total = 0
    for row in rows:
        slots = [s for s in row["slots"] if s is not None]
        expected = [row["start_at"] + timedelta(seconds=every_s * k) for k in range(len(slots))]
        assert slots == expected, f"schedule {row['id']}: missing or extra slots"
        assert slots and row["now"] - slots[-1] <= timedelta(seconds=until_lag_s), \
            f"schedule {row['id']} fell behind: last slot {slots[-1] if slots else None}"
        total += len(slots)
    dup = await conn.fetchval("SELECT count(*) - count(DISTINCT (schedule_id, scheduled_for)) FROM runs")
    assert dup == 0
    return total


async def test_three_schedulers_fire_every_slot_exactly_once(db_url, amqp_url, queue, processes):
    conn = await asyncpg.connect(db_url)
    try:
        await setup_schedules(conn, queue, count=120)
        env = service_env(db_url, amqp_url, SCHEDULER_POLL_INTERVAL=1, SCHEDULER_BATCH_SIZE=50)
        async with Collector(amqp_url, queue) as collector:
            schedulers = [processes(["scheduler"], env) for _ in range(3)]
            await asyncio.sleep(22)
            codes = [p.stop() for p in schedulers]
            assert codes == [0, 0, 0], "SIGTERM finishes the pass and exits 0"
            total = await assert_every_slot_has_exactly_one_run(conn, 1.0, until_lag_s=8)
            assert total >= 120 * 18
            run_ids = {r["id"] for r in await conn.fetch("SELECT id FROM runs WHERE published_at IS NOT NULL")}
            await wait_for(lambda: len(collector.ids) >= len(run_ids), timeout=10,
                           what="every published run on the broker")
            assert len(collector.ids) == len(set(collector.ids)), "no message published twice"
            assert set(collector.ids) == run_ids, "every message matches a published run row"
            unpublished = await conn.fetchval("SELECT count(*) FROM runs WHERE published_at IS NULL")
            assert unpublished == 0
            busy = await conn.fetchval("SELECT count(*) FROM scheduler_instances WHERE dispatched > 0")
            assert busy >= 2, "several instances shared the work"
    finally:
        await conn.close()


async def test_sigkilled_scheduler_loses_nothing(db_url, amqp_url, queue, processes):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"seed={seed}")
    conn = await asyncpg.connect(db_url)
    try:
        await setup_schedules(conn, queue, count=40)
        env = service_env(db_url, amqp_url, SCHEDULER_POLL_INTERVAL=1, SCHEDULER_PUBLISH_LEASE=2)
        async with Collector(amqp_url, queue) as collector:
            steady = processes(["scheduler"], env)
            victim = processes(["scheduler"], env)
            deadline = time.monotonic() + 14
            kills = 0
            while time.monotonic() < deadline:
                await asyncio.sleep(rng.uniform(0.5, 2.0))
                victim.kill()
                kills += 1
                victim = processes(["scheduler"], env)
            victim.kill()
            assert steady.alive()
            # The survivor relays whatever the killed instances left behind.
            await wait_for(lambda: conn.fetchval(
                "SELECT count(*) = 0 FROM runs WHERE published_at IS NULL"), timeout=15,
                what="every run published")
            assert steady.stop() == 0
            await assert_every_slot_has_exactly_one_run(conn, 1.0, until_lag_s=8)
            run_ids = {r["id"] for r in await conn.fetch("SELECT id FROM runs")}
            await wait_for(lambda: set(collector.ids) >= run_ids, timeout=10,
                           what="every run on the broker")
            assert set(collector.ids) == run_ids, f"seed={seed}: messages match runs"
            assert kills >= 5
    finally:
        await conn.close()


async def test_broker_outage_keeps_schedules_advancing(db_url, amqp_url, queue, processes):
    parts = urlsplit(amqp_url)
    conn = await asyncpg.connect(db_url)
    try:
        await setup_schedules(conn, queue, count=5, start_in_s=1)
        async with tcp_proxy(parts.hostname, parts.port or 5672) as proxy:
            proxied = amqp_url.replace(parts.netloc.split("@")[-1], f"127.0.0.1:{proxy.port}")
            env = service_env(db_url, proxied, SCHEDULER_POLL_INTERVAL=1)
            scheduler = processes(["scheduler"], env)
            await wait_for(lambda: conn.fetchval(
                "SELECT count(*) > 0 FROM runs WHERE published_at IS NOT NULL"), timeout=15,
                what="first published run")
            await proxy.cut()
            cut_at = await conn.fetchval("SELECT now()")
            await asyncio.sleep(6)
            during = await conn.fetchrow(
                """SELECT count(*) FILTER (WHERE r.scheduled_for > $1) AS created,
                          count(*) FILTER (WHERE r.published_at IS NULL) AS unpublished
                   FROM runs r""", cut_at)
            assert during["created"] >= 5 * 4, "slots kept firing while the broker was down"
            assert during["unpublished"] > 0
            ahead = await conn.fetchval("SELECT bool_and(next_run_at > now() - interval '2 s') FROM schedules")
            assert ahead, "next_run_at kept advancing"
            failures = await conn.fetchval("SELECT sum(failure_count) FROM schedules")
            assert failures > 0, "publish failures are counted on the schedules"

            await proxy.restore()
            await wait_for(lambda: conn.fetchval(
                "SELECT count(*) = 0 FROM runs WHERE published_at IS NULL "
                "AND scheduled_for < now() - interval '1 s'"), timeout=40,
                what="the backlog published once the broker is back")
            assert scheduler.stop() == 0
        await assert_every_slot_has_exactly_one_run(conn, 1.0, until_lag_s=8)
        assert "scheduler.publish_failed" in scheduler.output()
    finally:
        await conn.close()


async def test_healthcheck_follows_the_heartbeat(db_url, amqp_url, processes, tmp_path):
    env = service_env(db_url, amqp_url, SCHEDULER_POLL_INTERVAL=1, HEALTH_DIR=tmp_path)
    check = processes(["healthcheck", "scheduler"], env)
    assert check.proc.wait(20) == 1, "no heartbeat yet: unhealthy"
    scheduler = processes(["scheduler"], env)
    await wait_for(lambda: (tmp_path / "sundial-scheduler.health").exists(), timeout=15,
                   what="heartbeat file")
    check = processes(["healthcheck", "scheduler"], env)
    assert check.proc.wait(20) == 0
    scheduler.signal(signal.SIGTERM)
    assert scheduler.proc.wait(20) == 0


async def test_a_forgotten_instance_reappears_with_its_next_status(db_url, amqp_url, processes):
    """An instance whose row was forgotten (it could not pass for FORGET_AFTER, e.g.
    a paused VM) shows again once it passes: never a running scheduler the status omits."""
    env = service_env(db_url, amqp_url, SCHEDULER_POLL_INTERVAL=0.5)
    processes(["scheduler"], env)
    conn = await asyncpg.connect(db_url)
    try:
        await wait_for(lambda: conn.fetchval(
            "SELECT count(*) = 1 FROM scheduler_instances WHERE ticks > 0"), timeout=30,
            what="a first pass")
        row = await conn.fetchrow("SELECT id, host, pid, tzdata FROM scheduler_instances")
        await conn.execute("DELETE FROM scheduler_instances")
        await wait_for(lambda: conn.fetchval("SELECT count(*) = 1 FROM scheduler_instances"),
                       timeout=10, what="the instance's row back")
        back = await conn.fetchrow("SELECT id, host, pid, tzdata, status FROM scheduler_instances")
        assert dict(back) == {**dict(row), "status": "running"}
    finally:
        await conn.close()


LOOPS_FAILING = ("reap", "relay", "retention", "status")


async def test_a_failing_loop_is_restarted_while_the_tick_fires(db_url, amqp_url, queue,
                                                               processes):
    """Every round of the reaper, the relay, retention and the status report raises (a
    fault point): each is logged and restarted with backoff, and the tick keeps firing
    every slot on time meanwhile."""
    conn = await asyncpg.connect(db_url)
    try:
        await setup_schedules(conn, queue, count=5, start_in_s=1)
        env = service_env(db_url, amqp_url, SCHEDULER_POLL_INTERVAL=1,
                          SUNDIAL_FAULT_RAISE_AT=",".join(LOOPS_FAILING))
        scheduler = processes(["scheduler"], env)
        await asyncio.sleep(9)
        assert scheduler.alive(), "a failing loop does not take the process down"
        await assert_every_slot_has_exactly_one_run(conn, 1.0, until_lag_s=3)
        assert await conn.fetchval("SELECT count(*) FROM runs") >= 5 * 6
        assert scheduler.stop() == 0
        output = scheduler.output()
        for loop in LOOPS_FAILING:
            restarts = output.count(f'"scheduler.{loop}_failed"')
            assert restarts >= 2, f"the {loop} loop failed {restarts} times: restarted?"
        assert '"retry_in_s"' in output
    finally:
        await conn.close()
