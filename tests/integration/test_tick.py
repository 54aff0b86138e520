"""The tick against the real PostgreSQL and RabbitMQ: one run per due slot, every
claimed schedule advanced, publish failures left to the relay."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from urllib.parse import urlsplit

import aio_pika

from sundial.core.broker import Publisher, queue_name
from sundial.scheduler.relay import relay
from sundial.scheduler.tick import tick
from tests.faults import tcp_proxy
from tests.poison import insert_poison_schedules

LEASE_S = 30.0


async def make_job(pool, queue: str, name: str = "job", enabled: bool = True) -> int:
    return await pool.fetchval(
        "INSERT INTO jobs (name, handler, queue, enabled) VALUES ($1, 'noop', $2, $3) RETURNING id",
        name, queue, enabled)


async def make_interval_schedule(pool, job_id: int, every_s: float, *, behind_s: float,
                                 policy: str = "run_once", grace: float | None = None) -> int:
    """An interval schedule anchored `behind_s` seconds ago, next_run_at at its anchor."""
    return await pool.fetchval(
        """INSERT INTO schedules (job_id, kind, interval_seconds, start_at, next_run_at,
                                  misfire_policy, misfire_grace_seconds)
           VALUES ($1, 'interval', $2, now() - make_interval(secs => $3),
                   now() - make_interval(secs => $3), $4, $5) RETURNING id""",
        job_id, every_s, behind_s, policy, grace)


async def consume_ids(amqp_url: str, queue: str, expect: int, timeout: float = 10) -> list[int]:
    conn = await aio_pika.connect(amqp_url)
    ids: list[int] = []
    try:
        channel = await conn.channel()
        q = await channel.get_queue(queue_name(queue), ensure=True)
        deadline = asyncio.get_running_loop().time() + timeout
        while len(ids) < expect and asyncio.get_running_loop().time() < deadline:
            message = await q.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            ids.append(int(message.message_id))
    finally:
        await conn.close()
    return ids


async def test_tick_records_one_run_per_due_slot_and_advances_every_schedule(pool, queue):
    job = await make_job(pool, queue)
    on_time = [await make_interval_schedule(pool, job, 3600, behind_s=1) for _ in range(5)]
    catch_up = await make_interval_schedule(pool, job, 10, behind_s=35, policy="run_all",
                                            grace=3600)
    result = await tick(pool, batch_size=100, look_ahead_s=0, lease_s=LEASE_S)

    assert result.claimed == 6
    runs = await pool.fetch("SELECT schedule_id, scheduled_for FROM runs ORDER BY scheduled_for")
    per_schedule = {sid: [r["scheduled_for"] for r in runs if r["schedule_id"] == sid]
                    for sid in [*on_time, catch_up]}
    assert all(len(per_schedule[sid]) == 1 for sid in on_time)
    assert len(per_schedule[catch_up]) == 4, "run_all: slots at -35, -25, -15, -5 s"
    assert len(result.to_publish) == 9

    schedules = await pool.fetch("SELECT id, next_run_at, run_count, last_run_at, now() AS now "
                                 "FROM schedules")
    for s in schedules:
        assert s["next_run_at"] > s["now"], "next_run_at always ends in the future"
        assert s["run_count"] == len(per_schedule[s["id"]])
        assert s["last_run_at"] == max(per_schedule[s["id"]])
    # Nothing is due any more: a second tick claims nothing and creates nothing.
    again = await tick(pool, batch_size=100, look_ahead_s=0, lease_s=LEASE_S)
    assert (again.claimed, again.created) == (0, 0)


async def test_batches_drain_a_backlog_with_no_duplicate_slots(pool, queue):
    job = await make_job(pool, queue)
    await pool.execute(
        """INSERT INTO schedules (job_id, kind, interval_seconds, start_at, next_run_at)
           SELECT $1, 'interval', 3600, now() - interval '1 s', now() - interval '1 s'
           FROM generate_series(1, 250)""", job)
    results = await asyncio.gather(*(tick(pool, batch_size=40, look_ahead_s=0, lease_s=LEASE_S)
                                     for _ in range(3)))
    while any(r.full for r in results):
        results = [await tick(pool, batch_size=40, look_ahead_s=0, lease_s=LEASE_S)]
    counts = await pool.fetchrow(
        "SELECT count(*) AS runs, count(DISTINCT schedule_id) AS schedules FROM runs")
    assert counts["runs"] == counts["schedules"] == 250


async def test_scheduled_runs_take_their_jobs_priority(pool, queue):
    job = await make_job(pool, queue)
    await pool.execute("UPDATE jobs SET priority = 6 WHERE id = $1", job)
    await make_interval_schedule(pool, job, 3600, behind_s=1)
    assert (await tick(pool, batch_size=10, look_ahead_s=0, lease_s=LEASE_S)).created == 1
    assert await pool.fetchval("SELECT priority FROM runs") == 6


async def test_never_planned_schedule_gets_its_first_slot(pool, queue):
    job = await make_job(pool, queue)
    sid = await pool.fetchval(
        "INSERT INTO schedules (job_id, kind, cron) VALUES ($1, 'cron', '0 0 1 1 *') RETURNING id", job)
    result = await tick(pool, batch_size=10, look_ahead_s=0, lease_s=LEASE_S)
    assert result.created == 0
    row = await pool.fetchrow("SELECT next_run_at, is_active FROM schedules WHERE id = $1", sid)
    assert row["is_active"] and row["next_run_at"].month == 1 and row["next_run_at"].day == 1


async def test_once_schedule_fires_then_deactivates_and_disabled_jobs_skip(pool, queue):
    job = await make_job(pool, queue)
    off = await make_job(pool, queue, name="off", enabled=False)
    once = await pool.fetchval(
        "INSERT INTO schedules (job_id, kind, run_at, next_run_at) "
        "VALUES ($1, 'once', now() - interval '1 s', now() - interval '1 s') RETURNING id", job)
    paused_job = await make_interval_schedule(pool, off, 60, behind_s=1)
    await tick(pool, batch_size=10, look_ahead_s=0, lease_s=LEASE_S)
    row = await pool.fetchrow("SELECT is_active, next_run_at, run_count FROM schedules WHERE id = $1",
                              once)
    assert (row["is_active"], row["next_run_at"], row["run_count"]) == (False, None, 1)
    skipped = await pool.fetchrow("SELECT next_run_at > now() AS ahead, run_count FROM schedules "
                                  "WHERE id = $1", paused_job)
    assert skipped["ahead"] and skipped["run_count"] == 0


async def test_a_fault_while_planning_postpones_the_schedule_instead_of_setting_it_aside(
        pool, queue, monkeypatch):
    """A fault that is not a bad value (here the planning of one schedule raises) leaves
    that schedule active, retried a minute later; the others fire."""
    from sundial.scheduler import tick as tick_module

    job = await make_job(pool, queue)
    faulty = await make_interval_schedule(pool, job, 60, behind_s=1)
    healthy = await make_interval_schedule(pool, job, 60, behind_s=1)
    real_plan = tick_module._plan_row

    def plan(row, *args, **kwargs):
        if row["id"] == faulty:
            raise RuntimeError("zone database unreadable")
        return real_plan(row, *args, **kwargs)

    monkeypatch.setattr(tick_module, "_plan_row", plan)
    result = await tick(pool, batch_size=10, look_ahead_s=0, lease_s=LEASE_S)
    assert result.created == 1 and result.set_aside == 0
    row = await pool.fetchrow("SELECT is_active, set_aside_at, last_error, "
                              "next_run_at - now() AS wait FROM schedules WHERE id = $1", faulty)
    assert row["is_active"] and row["set_aside_at"] is None
    assert "RuntimeError: zone database unreadable" in row["last_error"]
    assert timedelta(seconds=55) < row["wait"] <= timedelta(seconds=60)
    assert await pool.fetchval("SELECT count(*) FROM runs WHERE schedule_id = $1", healthy) == 1

    monkeypatch.setattr(tick_module, "_plan_row", real_plan)
    await pool.execute("UPDATE schedules SET next_run_at = now() - interval '1 s' WHERE id = $1",
                       faulty)
    assert (await tick(pool, batch_size=10, look_ahead_s=0, lease_s=LEASE_S)).created == 1
    assert await pool.fetchval("SELECT last_error FROM schedules WHERE id = $1", faulty) is None


async def test_failed_publish_still_advances_and_the_relay_publishes_later(pool, queue, amqp_url):
    job = await make_job(pool, queue)
    sid = await make_interval_schedule(pool, job, 3600, behind_s=1)
    parts = urlsplit(amqp_url)
    async with tcp_proxy(parts.hostname, parts.port or 5672) as proxy:
        proxied = amqp_url.replace(f"{parts.hostname}:{parts.port or 5672}",
                                   f"127.0.0.1:{proxy.port}")
        publisher = Publisher(proxied, delivery_limit=5, connect_timeout_s=2)
        await proxy.cut()
        from sundial.core.outbox import publish_runs

        result = await tick(pool, batch_size=10, look_ahead_s=0, lease_s=LEASE_S)
        published = await publish_runs(pool, publisher, result.to_publish)
        assert published.published == [] and len(published.failed) == 1

        run = await pool.fetchrow("SELECT id, published_at, publish_lease_until FROM runs")
        assert run["published_at"] is None and run["publish_lease_until"] is None, \
            "a failed publish hands the run to the relay"
        schedule = await pool.fetchrow("SELECT next_run_at > now() AS ahead FROM schedules "
                                       "WHERE id = $1", sid)
        assert schedule["ahead"], "the schedule advanced although the broker was down"

        await proxy.restore()
        relayed = await relay(pool, publisher, batch_size=10, lease_s=LEASE_S)
        await publisher.close()
    assert relayed.published == [run["id"]]
    assert await pool.fetchval("SELECT published_at IS NOT NULL FROM runs") is True
    assert await consume_ids(amqp_url, queue, 1) == [run["id"]]


async def test_a_schedules_dispatch_trouble_clears_when_its_runs_publish_again(
        pool, queue, amqp_url):
    from sundial.core.outbox import publish_runs

    job = await make_job(pool, queue)
    healed = await make_interval_schedule(pool, job, 3600, behind_s=1)
    set_aside = await make_interval_schedule(pool, job, 3600, behind_s=1)
    untouched = await make_interval_schedule(pool, job, 3600, behind_s=1)
    result = await tick(pool, batch_size=10, look_ahead_s=0, lease_s=LEASE_S)
    await pool.execute("UPDATE schedules SET failure_count = 3, last_error = 'broker away'")
    await pool.execute("UPDATE schedules SET set_aside_at = now(), last_error = 'bad cron' "
                       "WHERE id = $1", set_aside)
    rows = [r for r in result.to_publish if r["schedule_id"] in (healed, set_aside)]
    publisher = Publisher(amqp_url, delivery_limit=5)
    try:
        assert len((await publish_runs(pool, publisher, rows)).published) == 2
    finally:
        await publisher.close()
    state = {r["id"]: (r["failure_count"], r["last_error"])
             for r in await pool.fetch("SELECT id, failure_count, last_error FROM schedules")}
    assert state == {healed: (0, None), set_aside: (3, "bad cron"), untouched: (3, "broker away")}


async def test_a_broker_that_stops_answering_fails_the_publish_by_its_deadline(
        pool, queue, amqp_url):
    """Connected, then stalled (sockets open, nothing forwarded): the confirms never come.
    The publish fails within the deadline, the runs go back to the relay, and once the
    broker answers again a fresh connection publishes them."""
    from sundial.core.outbox import publish_runs

    job = await make_job(pool, queue)
    await make_interval_schedule(pool, job, 3600, behind_s=1)
    parts = urlsplit(amqp_url)
    async with tcp_proxy(parts.hostname, parts.port or 5672) as proxy:
        proxied = amqp_url.replace(f"{parts.hostname}:{parts.port or 5672}",
                                   f"127.0.0.1:{proxy.port}")
        publisher = Publisher(proxied, delivery_limit=5, connect_timeout_s=2,
                              confirm_timeout_s=1.5)
        await publisher.connect()
        proxy.stall()
        result = await tick(pool, batch_size=10, look_ahead_s=0, lease_s=LEASE_S)
        started = time.monotonic()
        published = await publish_runs(pool, publisher, result.to_publish)
        took = time.monotonic() - started
        assert published.published == [] and len(published.failed) == 1
        assert "no confirm within 1.5 s" in str(published.first_error)
        assert took < 1.5 + 1.5, f"the publish took {took:.1f} s"
        assert await pool.fetchval("SELECT publish_lease_until IS NULL FROM runs")
        await proxy.restore()
        relayed = await relay(pool, publisher, batch_size=10, lease_s=LEASE_S)
        await publisher.close()
    assert relayed.published == [result.to_publish[0]["run_id"]]
    assert await consume_ids(amqp_url, queue, 1) == [result.to_publish[0]["run_id"]]


async def test_relay_leaves_runs_leased_by_a_live_publisher_alone(pool, queue, amqp_url):
    job = await make_job(pool, queue)
    await make_interval_schedule(pool, job, 3600, behind_s=1)
    result = await tick(pool, batch_size=10, look_ahead_s=0, lease_s=LEASE_S)
    assert len(result.to_publish) == 1
    publisher = Publisher(amqp_url, delivery_limit=5)
    try:
        relayed = await relay(pool, publisher, batch_size=10, lease_s=LEASE_S)
        assert relayed.published == [], "the tick's own publisher still holds the lease"
        # The publisher crashed: its lease expires and the relay takes the run.
        await pool.execute("UPDATE runs SET publish_lease_until = now() - interval '1 s'")
        relayed = await relay(pool, publisher, batch_size=10, lease_s=LEASE_S)
        assert relayed.published == [result.to_publish[0]["run_id"]]
    finally:
        await publisher.close()


async def test_jittered_runs_wait_for_their_time_in_the_outbox(pool, queue):
    jitter = 3.0
    job = await make_job(pool, queue)
    sid = await make_interval_schedule(pool, job, 3600, behind_s=0.01)
    await pool.execute("UPDATE schedules SET jitter_seconds = $2 WHERE id = $1", sid, jitter)
    await tick(pool, batch_size=10, look_ahead_s=0, lease_s=LEASE_S)
    run = await pool.fetchrow("SELECT scheduled_for, available_at FROM runs")
    assert run["scheduled_for"] <= run["available_at"] <= run["scheduled_for"] + timedelta(seconds=jitter)


async def test_a_run_handed_back_to_the_outbox_during_the_publish_is_not_marked(pool, queue, amqp_url):
    """The confirm of attempt 1 arrives after a worker already failed it fast and set it
    back to queued (attempt 2), or after a drain released it: marking it published would
    leave it queued forever, never relayed."""
    from sundial.core.outbox import publish_runs

    job = await make_job(pool, queue)
    await pool.execute(
        """INSERT INTO schedules (job_id, kind, interval_seconds, start_at, next_run_at)
           SELECT $1, 'interval', 3600, now() - interval '1 s', now() - interval '1 s'
           FROM generate_series(1, 3)""", job)
    result = await tick(pool, batch_size=10, look_ahead_s=0, lease_s=LEASE_S)
    retried, released, running = sorted(r["run_id"] for r in result.to_publish)
    await pool.execute("UPDATE runs SET status = 'queued', attempt = 2, publish_lease_until = NULL "
                       "WHERE id = $1", retried)
    await pool.execute("UPDATE runs SET publish_lease_until = NULL WHERE id = $1", released)
    await pool.execute("UPDATE runs SET status = 'running' WHERE id = $1", running)

    publisher = Publisher(amqp_url, delivery_limit=5)
    try:
        published = await publish_runs(pool, publisher, result.to_publish)
    finally:
        await publisher.close()
    assert sorted(published.published) == [retried, released, running]
    marked = {r["id"]: r["published_at"] is not None
              for r in await pool.fetch("SELECT id, published_at FROM runs")}
    assert marked == {retried: False, released: False, running: True}


async def test_a_schedule_that_cannot_be_planned_is_set_aside_and_the_others_go_on(pool, queue):
    job = await make_job(pool, queue)
    healthy = [await make_interval_schedule(pool, job, 3600, behind_s=1) for _ in range(3)]
    poison = await insert_poison_schedules(pool, job)
    healthy.append(await make_interval_schedule(pool, job, 3600, behind_s=1))

    started = asyncio.get_running_loop().time()
    result = await tick(pool, batch_size=100, look_ahead_s=0, lease_s=LEASE_S)
    took_s = asyncio.get_running_loop().time() - started

    assert (result.claimed, result.set_aside) == (len(healthy) + len(poison), len(poison))
    assert took_s < 2, f"one tick took {took_s:.1f} s"
    runs = await pool.fetch("SELECT schedule_id FROM runs")
    assert sorted(r["schedule_id"] for r in runs) == sorted(healthy)
    assert len(result.to_publish) == len(healthy)
    for sid, error in poison.items():
        row = await pool.fetchrow("SELECT * FROM schedules WHERE id = $1", sid)
        assert (row["is_active"], row["next_run_at"]) == (False, None), dict(row)
        assert row["set_aside_at"] is not None
        assert row["last_error"].startswith(f"schedule {sid}: {error}"), row["last_error"]
        assert row["last_error"].endswith(f"(PATCH /api/schedules/{sid}, or edit it in the "
                                          "dashboard)")
    ahead = await pool.fetchval("SELECT bool_and(next_run_at > now() AND is_active "
                                "AND set_aside_at IS NULL) FROM schedules WHERE id = ANY($1)",
                                healthy)
    assert ahead, "every healthy schedule advanced"
    # Set aside: no later tick claims the rows again.
    again = await tick(pool, batch_size=100, look_ahead_s=0, lease_s=LEASE_S)
    assert (again.claimed, again.set_aside) == (0, 0)


async def test_relay_publishes_batch_by_batch_and_no_batch_more_once_stopping(
        pool, queue, amqp_url):
    job = await make_job(pool, queue)
    await pool.execute(
        "INSERT INTO runs (job_id, scheduled_for, trigger, status) "
        "SELECT $1, now(), 'manual', 'queued' FROM generate_series(1, 25)", job)
    publisher = Publisher(amqp_url, delivery_limit=5)
    stopping = asyncio.Event()
    try:
        first = await relay(pool, publisher, batch_size=10, lease_s=LEASE_S, max_batches=2)
        assert len(first.published) == 20 and first.more, "stopped at max_batches: more"
        stopping.set()
        stopped = await relay(pool, publisher, batch_size=10, lease_s=LEASE_S,
                              stopping=stopping)
        assert stopped.published == [] and not stopped.more
        rest = await relay(pool, publisher, batch_size=10, lease_s=LEASE_S)
        assert len(rest.published) == 5 and not rest.more
    finally:
        await publisher.close()


async def test_a_paused_queues_runs_are_recorded_but_left_to_the_relay_until_resumed(
        pool, queue, amqp_url):
    held_job, free_job = await make_job(pool, queue, "held"), await make_job(pool, queue + "-x")
    held = await make_interval_schedule(pool, held_job, 3600, behind_s=1)
    await make_interval_schedule(pool, free_job, 3600, behind_s=1)
    await pool.execute("INSERT INTO queue_pauses (queue, paused_by) VALUES ($1, 'test')", queue)

    # The tick records the paused queue's slot and advances its schedule in the same
    # statement as the others, but does not lease its run: nothing of it to publish.
    result = await tick(pool, batch_size=10, look_ahead_s=0, lease_s=LEASE_S)
    assert result.created == 2
    assert [r["queue"] for r in result.to_publish] == [queue + "-x"]
    run = await pool.fetchrow("SELECT id, publish_lease_until FROM runs WHERE schedule_id = $1",
                              held)
    assert run["publish_lease_until"] is None
    assert await pool.fetchval("SELECT run_count = 1 AND last_run_at IS NOT NULL"
                               " AND next_run_at > now() FROM schedules WHERE id = $1", held)

    publisher = Publisher(amqp_url, delivery_limit=5)
    try:
        assert (await relay(pool, publisher, batch_size=10, lease_s=LEASE_S)).published == []
        await pool.execute("DELETE FROM queue_pauses")
        assert (await relay(pool, publisher, batch_size=10, lease_s=LEASE_S)).published == [
            run["id"]]
    finally:
        await publisher.close()
    assert await consume_ids(amqp_url, queue, 1) == [run["id"]]


async def test_every_queue_paused_leases_no_run(pool, queue):
    await make_interval_schedule(pool, await make_job(pool, queue), 3600, behind_s=1)
    await pool.execute("INSERT INTO queue_pauses (queue, paused_by) VALUES ('*', 'test')")
    result = await tick(pool, batch_size=10, look_ahead_s=0, lease_s=LEASE_S)
    assert result.created == 1 and result.to_publish == []
    assert await pool.fetchval("SELECT count(*) FROM runs WHERE publish_lease_until IS NULL") == 1


class CountingPool:
    """The pool, recording the statements sent through `fetchrow`."""

    def __init__(self, pool):
        self._pool, self.asked = pool, []

    def __getattr__(self, name):
        return getattr(self._pool, name)

    async def fetchrow(self, sql, *args):
        self.asked.append(sql)
        return await self._pool.fetchrow(sql, *args)


async def test_after_a_pass_that_claimed_the_next_follows_without_asking_when(
        db_url, amqp_url, queue):
    from sundial.scheduler import main
    from sundial.scheduler.settings import SchedulerSettings

    scheduler = main.Scheduler(SchedulerSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    await scheduler.start()
    try:
        pool = scheduler._pool = CountingPool(scheduler._pool)
        await make_interval_schedule(pool, await make_job(pool, queue), 3600, behind_s=1)
        asked = pool.asked
        # A pass that claimed: slots fall due during passes under load, so the next pass
        # starts almost at once, without the sleep-time query.
        assert await scheduler._tick_round() == main.DUE_DURING_PASS_S
        assert asked == []
        # A pass that found nothing asks, and sleeps until the next slot (an hour away:
        # the poll interval).
        assert await scheduler._tick_round() == scheduler.settings.poll_interval_s
        assert asked == [main.q("seconds_until_next_work")]
        assert await pool.fetchval("SELECT count(*) FROM runs") == 1
    finally:
        await scheduler.close()
