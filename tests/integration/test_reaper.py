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


async def test_a_run_no_worker_can_take_fails_after_the_bound_and_only_then(pool):
    """A queued run whose queue and handler no worker has offered for
    RUN_EXPIRE_WITHOUT_WORKER_SECONDS fails saying so, when the sweep looks at it; a run
    that a live worker could take waits on (a backlog is not a fault), as does a young one."""
    jobs = {}
    for name, queue, handler in (("lonely", "nobody", "noop"), ("served", "default", "noop"),
                                 ("wrong", "default", "command")):
        jobs[name] = await pool.fetchval(
            "INSERT INTO jobs (name, queue, handler) VALUES ($1, $2, $3) RETURNING id",
            name, queue, handler)
    await pool.execute(
        """INSERT INTO workers (id, host, pid, queues, handlers, last_heartbeat)
           VALUES ('w-live', 'h', 1, '{default}', '{noop,sleep}', now()),
                  ('w-gone', 'h', 2, '{nobody}', '{noop}', now() - interval '3 days')""")

    async def queued(job: str, age_s: float) -> int:
        return await pool.fetchval(
            """INSERT INTO runs (job_id, scheduled_for, trigger, published_at, created_at)
               VALUES ($1, now(), 'manual', now() - interval '1 hour',
                       now() - make_interval(secs => $2))
               RETURNING id""", jobs[job], age_s)

    old_lonely, young_lonely = await queued("lonely", 90000), await queued("lonely", 3600)
    old_served, old_wrong = await queued("served", 90000), await queued("wrong", 90000)

    result = await reap(pool, lease_s=60, offline_after_s=60, republish_after_s=300,
                        expire_without_worker_s=86400)
    assert result.expired == 2
    rows = {r["id"]: r for r in await pool.fetch("SELECT * FROM runs")}
    for run_id, queue, handler in ((old_lonely, "nobody", "noop"), (old_wrong, "default", "command")):
        assert rows[run_id]["status"] == "failed" and rows[run_id]["finished_at"] is not None
        assert rows[run_id]["error"].startswith(
            f"no worker that can take it (queue '{queue}', handler '{handler}') has been online "
            "for 24.0 h")
    for run_id in (young_lonely, old_served):
        assert rows[run_id]["status"] == "queued", "republished instead: it may still start"
        assert rows[run_id]["published_at"] is None

    # 0 turns the bound off.
    never = await queued("lonely", 90000)
    await reap(pool, lease_s=60, offline_after_s=60, republish_after_s=300)
    assert await pool.fetchval("SELECT status FROM runs WHERE id = $1", never) == "queued"
