"""A big history stays cheap: counts the database keeps (run_counts), the run list's
totals and time-bounded pages, heap-only heartbeats, and migration 0014 on a populated
table, applied outside a transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from sundial.api.service import TOTAL_COUNT_LIMIT
from sundial.core.migrate import discover, migrate, statements
from sundial.core.sql import q
from sundial.scheduler.reaper import delete_old_runs
from tests.integration.test_api import Api, insert_runs, noop_job, serving
from tests.integration.test_metrics import scrape


@pytest.fixture
async def api(db_url: str, amqp_url: str) -> AsyncIterator[Api]:
    async with serving(db_url, amqp_url) as api:
        yield api


async def kept(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, sum(n)::bigint AS n FROM run_counts "
                            "GROUP BY status HAVING sum(n) <> 0")
    return {r["status"]: r["n"] for r in rows}


async def counted(pool: asyncpg.Pool) -> dict[str, int]:
    return dict(await pool.fetch("SELECT status, count(*) FROM runs GROUP BY status"))


async def test_counts_follow_inserts_status_changes_heartbeats_deletes_and_truncate(
        api: Api) -> None:
    pool = api.pool
    for name in ("a", "b"):
        await api.post("/api/jobs", json=noop_job(name))
    jobs = {j["name"]: j["id"] for j in (await api.get("/api/jobs")).json()}
    await insert_runs(api, jobs["a"], "queued", 5)
    await insert_runs(api, jobs["a"], "succeeded", 3)
    running = await insert_runs(api, jobs["b"], "running", 4)
    await pool.execute("UPDATE runs SET worker_id = 'w1', heartbeat_at = now() "
                       "WHERE id = ANY($1)", running)
    assert await kept(pool) == await counted(pool) == {"queued": 5, "succeeded": 3, "running": 4}

    # A heartbeat changes no status: nothing is appended.
    rows_before = await pool.fetchval("SELECT count(*) FROM run_counts")
    await pool.execute(q("heartbeat_runs"), running, [1] * 4, "w1", [None] * 4)
    assert await pool.fetchval("SELECT count(*) FROM run_counts") == rows_before

    # Status changes, one by one and many at once; a run that ends in the status it had.
    await pool.execute(q("record_results"), "w1", running[:2], [1, 1], ["succeeded", "failed"],
                       [None, None], [None, None], [None, None], [0.0, 0.0])
    await pool.execute("UPDATE runs SET status = 'cancelled' WHERE status = 'queued'")
    await pool.execute("UPDATE runs SET status = status WHERE status = 'cancelled'")
    assert await kept(pool) == await counted(pool) == {
        "cancelled": 5, "succeeded": 4, "failed": 1, "running": 2}

    # Deletes: a job with its runs (the foreign key's cascade), then retention.
    await pool.execute("DELETE FROM jobs WHERE id = $1", jobs["b"])
    assert await kept(pool) == await counted(pool) == {"cancelled": 5, "succeeded": 3}
    await pool.execute("UPDATE runs SET created_at = now() - interval '40 days'")
    assert await delete_old_runs(pool, retention_days=30, batch_size=3) == 8
    assert await kept(pool) == await counted(pool) == {}

    # Folding keeps the sums and leaves one row per status.
    await insert_runs(api, jobs["a"], "dead", 2)
    await insert_runs(api, jobs["a"], "dead", 1)
    assert await pool.fetchval("SELECT count(*) FROM run_counts") > 1
    await pool.fetchval(q("compact_run_counts"))
    assert await pool.fetch("SELECT status, n FROM run_counts") == [("dead", 3)]

    await pool.execute("TRUNCATE runs")
    assert await kept(pool) == {}


async def test_stats_and_metrics_read_the_kept_counts(api: Api) -> None:
    await api.post("/api/jobs", json=noop_job("a"))
    job = (await api.get("/api/jobs/a")).json()["id"]
    await insert_runs(api, job, "succeeded", 7)
    await insert_runs(api, job, "failed", 2)
    await insert_runs(api, job, "timed_out", 1)
    await insert_runs(api, job, "queued", 3)
    stats = (await api.get("/api/stats")).json()["executions"]
    assert (stats["total"], stats["successful"], stats["failed"], stats["queued"],
            stats["running"]) == (13, 7, 3, 3, 0)
    samples = await scrape(api)
    assert samples[("sundial_runs", (("status", "succeeded"),))] == 7
    assert samples[("sundial_runs", (("status", "timed_out"),))] == 1
    # The counts, not the table: a count the triggers never saw is what is served.
    await api.pool.execute("INSERT INTO run_counts VALUES ('succeeded', 100)")
    assert (await api.get("/api/stats")).json()["executions"]["successful"] == 107
    assert (await scrape(api))[("sundial_runs", (("status", "succeeded"),))] == 107


async def test_run_list_totals_are_exact_by_status_and_bounded_otherwise(api: Api) -> None:
    await api.post("/api/jobs", json=noop_job("flood"))
    job = (await api.get("/api/jobs/flood")).json()["id"]
    await insert_runs(api, job, "succeeded", TOTAL_COUNT_LIMIT + 5)
    await insert_runs(api, job, "failed", 2)

    whole = (await api.get("/api/runs", params={"limit": 1})).json()
    assert (whole["total"], whole["total_exact"]) == (TOTAL_COUNT_LIMIT + 7, True)
    by_status = (await api.get("/api/runs", params={"status": "succeeded"})).json()
    assert (by_status["total"], by_status["total_exact"]) == (TOTAL_COUNT_LIMIT + 5, True)
    by_job = (await api.get("/api/runs", params={"job": "flood"})).json()
    assert (by_job["total"], by_job["total_exact"]) == (TOTAL_COUNT_LIMIT, False)
    few = (await api.get("/api/runs", params={"job": "flood", "status": "failed"})).json()
    assert (few["total"], few["total_exact"]) == (2, True)

    # A bulk action beyond the cap says "at least" when the count stopped at the bound.
    r = await api.post("/api/runs/retry", json={"job": "flood", "status": ["failed"],
                                                "dry_run": True})
    assert r.json()["matched"] == 2
    await api.pool.execute("UPDATE runs SET status = 'failed' WHERE status = 'succeeded'")
    r = await api.post("/api/runs/retry", json={"job": "flood", "dry_run": True})
    assert r.status_code == 422
    assert r.json()["detail"][0]["reason"].startswith(
        f"select at least {TOTAL_COUNT_LIMIT} runs, at least ")


async def test_a_time_bounded_list_pages_by_creation_time_without_gaps(api: Api) -> None:
    await api.post("/api/jobs", json=noop_job("a"))
    job = (await api.get("/api/jobs/a")).json()["id"]
    ids = await insert_runs(api, job, "succeeded", 12)
    # Creation times out of id order (a long transaction, a backfill): every hour back
    # from now, in a shuffled order of ids.
    now = datetime.now(UTC)
    hours = [5, 0, 7, 3, 11, 1, 9, 2, 10, 4, 6, 8]
    for run_id, h in zip(ids, hours, strict=True):
        await api.pool.execute("UPDATE runs SET created_at = $2 WHERE id = $1", run_id,
                               now - timedelta(hours=h, minutes=30))
    until = (now - timedelta(hours=1)).isoformat()
    seen, cursor = [], None
    while True:
        params = {"until": until, "limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await api.get("/api/runs", params=params)).json()
        assert page["total"] == 11 and page["total_exact"]
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    created = [r["created_at"] for r in seen]
    assert len(seen) == 11 and created == sorted(created, reverse=True)
    assert {r["id"] for r in seen} == set(ids) - {ids[1]}   # the one created 30 min ago


async def test_a_heartbeat_is_a_heap_only_update(api: Api) -> None:
    await api.post("/api/jobs", json=noop_job("a"))
    job = (await api.get("/api/jobs/a")).json()["id"]
    running = await insert_runs(api, job, "running", 3)
    await api.pool.execute("UPDATE runs SET worker_id = 'w1', heartbeat_at = now() "
                           "WHERE id = ANY($1)", running)
    counters = ("SELECT pg_stat_get_xact_tuples_updated('runs'::regclass), "
                "pg_stat_get_xact_tuples_hot_updated('runs'::regclass)")
    async with api.pool.acquire() as conn, conn.transaction():
        updated, hot = await conn.fetchrow(counters)
        beats = await conn.fetch(q("heartbeat_runs"), running, [1] * 3, "w1",
                                 ["some output"] * 3)
        assert len(beats) == 3
        after = await conn.fetchrow(counters)
    assert (after[0] - updated, after[1] - hot) == (3, 3)


def test_statements_are_cut_outside_quotes_comments_and_function_bodies() -> None:
    sql = ("-- a comment; with a semicolon\nCREATE TABLE t (x text DEFAULT ';');\n"
           "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;\n"
           "/* ; */ SELECT $$;$$, \"odd;name\" FROM t;\n-- trailing comment only\n")
    assert statements(sql) == [
        "-- a comment; with a semicolon\nCREATE TABLE t (x text DEFAULT ';');",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;",
        "/* ; */ SELECT $$;$$, \"odd;name\" FROM t;"]


async def test_migration_0014_applies_on_a_populated_table_outside_a_transaction(
        servers: tuple[str, str]) -> None:
    admin = await asyncpg.connect(servers[0])
    name = "sundial_t_run_history_0014"
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(servers[0].rsplit("/", 1)[0] + "/" + name)
    try:
        migrations = discover()
        [m14] = [m for m in migrations if m.version == 14]
        assert not m14.transactional
        assert await migrate(conn, [m for m in migrations if m.version < 14])
        await conn.execute("INSERT INTO jobs (name, handler) VALUES ('a', 'noop')")
        await conn.execute(
            "INSERT INTO runs (job_id, scheduled_for, trigger, status) "
            "SELECT (SELECT id FROM jobs), now(), 'manual', "
            "(ARRAY['succeeded', 'failed', 'queued'])[1 + g % 3] "
            "FROM generate_series(1, 3000) AS g")
        # An interrupted earlier attempt left its table behind, with a row: the statements
        # run again over it.
        await conn.execute("CREATE TABLE run_counts (status text NOT NULL, n bigint NOT NULL)")
        await conn.execute("INSERT INTO run_counts VALUES ('succeeded', 999)")
        assert await migrate(conn, [m for m in migrations if m.version <= 14]) == [14]
        assert dict(await conn.fetch("SELECT status, n FROM run_counts")) == {
            "succeeded": 1000, "failed": 1000, "queued": 1000}
        indexes = dict(await conn.fetch(
            "SELECT c.relname, i.indisvalid FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'runs'::regclass"))
        assert indexes["runs_running_worker"] and indexes["runs_status_id"]
        assert indexes["runs_created_id"] and indexes["runs_job_recent"]
        assert not {"runs_running", "runs_status", "runs_created", "runs_job_history"} \
            & set(indexes)
        assert await conn.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'runs'") \
            == ["fillfactor=90"]
        assert await migrate(conn, [m for m in migrations if m.version <= 14]) == []
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
