"""The reaper rescues runs by heartbeat age only, gives runs whose message may be lost a
fresh one, and marks silent workers offline."""

from sundial.scheduler.reaper import delete_old_runs, reap


async def insert_running(pool, *, heartbeat_age_s: float, attempt: int, max_attempts: int) -> int:
    job = await pool.fetchval(
        "INSERT INTO jobs (name, handler) VALUES ('j' || gen_random_uuid(), 'sleep') RETURNING id")
    return await pool.fetchval(
        """INSERT INTO runs (job_id, scheduled_for, trigger, status, attempt, max_attempts,
                             started_at, heartbeat_at, worker_id, published_at)
           VALUES ($1, now() - interval '1 hour', 'manual', 'running', $2, $3,
                   now() - interval '1 hour', now() - make_interval(secs => $4), 'w1', now())
           RETURNING id""", job, attempt, max_attempts, heartbeat_age_s)


async def test_stale_runs_are_requeued_or_failed_and_fresh_ones_left_alone(pool):
    # Started an hour ago but heartbeating: long runs are never rescued by elapsed time.
    fresh = await insert_running(pool, heartbeat_age_s=1, attempt=1, max_attempts=3)
    retry = await insert_running(pool, heartbeat_age_s=120, attempt=1, max_attempts=3)
    last = await insert_running(pool, heartbeat_age_s=120, attempt=3, max_attempts=3)
    result = await reap(pool, lease_s=60, offline_after_s=60, republish_after_s=300)
    assert (result.requeued, result.failed) == (1, 1)

    rows = {r["id"]: r for r in await pool.fetch("SELECT * FROM runs")}
    assert rows[fresh]["status"] == "running"
    assert rows[retry]["status"] == "queued" and rows[retry]["attempt"] == 2
    assert rows[retry]["published_at"] is None, "the relay publishes the requeued run"
    assert "stopped heartbeating" in rows[retry]["error"]
    assert rows[last]["status"] == "failed" and rows[last]["attempt"] == 3
    assert rows[last]["finished_at"] is not None


async def test_silent_workers_go_offline_and_long_gone_workers_and_schedulers_are_forgotten(pool):
    await pool.execute(
        """INSERT INTO workers (id, host, pid, last_heartbeat, status) VALUES
           ('alive', 'h', 1, now(), 'online'),
           ('silent', 'h', 2, now() - interval '5 minutes', 'online'),
           ('gone', 'h', 3, now() - interval '2 days', 'offline'),
           ('stopped', 'h', 4, now() - interval '1 hour', 'offline')""")
    await pool.execute(
        """INSERT INTO scheduler_instances (id, host, pid, started_at, last_tick_at, status)
           VALUES ('ticking', 'h', 5, now() - interval '3 days', now(), 'running'),
                  ('killed', 'h', 6, now() - interval '3 days', now() - interval '2 days',
                   'running')""")
    result = await reap(pool, lease_s=60, offline_after_s=60, republish_after_s=300,
                        forget_after_s=86400)
    assert result.workers_offline == 1 and result.forgotten == 2
    status = dict(await pool.fetch("SELECT id, status FROM workers"))
    assert status == {"alive": "online", "silent": "offline", "stopped": "offline"}
    assert [r["id"] for r in await pool.fetch("SELECT id FROM scheduler_instances")] == ["ticking"]


async def test_retention_deletes_only_old_finished_runs(pool):
    job = await pool.fetchval("INSERT INTO jobs (name, handler) VALUES ('r', 'noop') RETURNING id")
    await pool.execute(
        """INSERT INTO runs (job_id, scheduled_for, trigger, status, created_at) VALUES
           ($1, now(), 'manual', 'succeeded', now() - interval '40 days'),
           ($1, now(), 'manual', 'queued', now() - interval '40 days'),
           ($1, now(), 'manual', 'failed', now() - interval '2 days')""", job)
    assert await delete_old_runs(pool, retention_days=30, batch_size=1) == 1
    assert sorted(r["status"] for r in await pool.fetch("SELECT status FROM runs")) == ["failed", "queued"]


async def test_runs_published_long_ago_and_never_started_get_fresh_messages_less_and_less_often(
        pool):
    job = await pool.fetchval("INSERT INTO jobs (name, handler) VALUES ('u', 'noop') RETURNING id")

    async def queued(published_s_ago: float | None, republished: int = 0) -> int:
        return await pool.fetchval(
            """INSERT INTO runs (job_id, scheduled_for, trigger, published_at, republished)
               VALUES ($1, now(), 'manual', now() - make_interval(secs => $2), $3)
               RETURNING id""", job, published_s_ago, republished)

    recent = await queued(100)
    lost = await queued(400)
    unpublished = await queued(None)
    twice = await queued(1000, republished=2)    # due after 4 x 300 s: not yet
    thrice = await queued(3000, republished=3)   # due after 8 x 300 s: now
    running = await insert_running(pool, heartbeat_age_s=1, attempt=1, max_attempts=1)
    await pool.execute("UPDATE runs SET published_at = now() - interval '1 hour' WHERE id = $1",
                       running)

    result = await reap(pool, lease_s=60, offline_after_s=60, republish_after_s=300)
    assert result.republished == 2
    rows = {r["id"]: r for r in await pool.fetch("SELECT * FROM runs")}
    for run_id in (lost, thrice):
        assert rows[run_id]["published_at"] is None, "back in the outbox"
        assert rows[run_id]["status"] == "queued" and rows[run_id]["attempt"] == 1
    assert rows[lost]["republished"] == 1 and rows[thrice]["republished"] == 4
    for run_id in (recent, twice, running):
        assert rows[run_id]["published_at"] is not None
    assert rows[unpublished]["published_at"] is None and rows[unpublished]["republished"] == 0
    assert rows[running]["status"] == "running"


async def test_retention_runs_in_one_scheduler_at_a_time(pool):
    job = await pool.fetchval("INSERT INTO jobs (name, handler) VALUES ('o', 'noop') RETURNING id")
    await pool.execute(
        """INSERT INTO runs (job_id, scheduled_for, trigger, status, created_at)
           SELECT $1, now(), 'manual', 'succeeded', now() - interval '40 days'
           FROM generate_series(1, 25)""", job)
    async with pool.acquire() as other, other.transaction():
        # Another instance is deleting: this one leaves it alone.
        assert await other.fetchval(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('sundial.retention', 0))")
        assert await delete_old_runs(pool, retention_days=30, batch_size=10) == 0
    assert await delete_old_runs(pool, retention_days=30, batch_size=10) == 25
    assert await pool.fetchval("SELECT count(*) FROM runs") == 0
