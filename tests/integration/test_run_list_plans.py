"""The run list on a seeded history (bench/history_seed.py): every filter's pages are the
runs a plain reading of the filters selects, in the same order, and the filters the
dashboard uses read a bounded number of buffers, however rare the status or the queue's
share of the runs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import asyncpg

from bench import history_seed
from sundial.api.service import SESSION_SETTINGS, TOTAL_COUNT_LIMIT
from sundial.core.sql import q

CAP = TOTAL_COUNT_LIMIT + 1


def _args(*, job=None, schedule=None, statuses=None, since=None, until=None, cursor=None,
          limit=50, queue=None) -> tuple:
    """list_runs' arguments as the service binds them (limit + 1 rows: the next page's
    cursor)."""
    return (job, schedule, statuses, since, until, cursor, limit + 1, queue, CAP)


async def _connect(db_url: str) -> asyncpg.Connection:
    # A session as the API's pool makes them.
    return await asyncpg.connect(db_url, server_settings={"jit": "off", **SESSION_SETTINGS})


async def test_every_filter_pages_the_runs_it_selects_in_order(db_url: str) -> None:
    await history_seed.history(db_url, 30_000, days=60, jobs=40)
    conn = await _connect(db_url)
    try:
        now = await conn.fetchval("SELECT now()")
        job, schedule = await conn.fetchrow(
            "SELECT job_id, schedule_id FROM runs WHERE schedule_id IS NOT NULL "
            "GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1")
        # Creation times out of id order for a few runs (a long transaction, a backfill).
        await conn.execute("UPDATE runs SET created_at = created_at - interval '3 days' "
                           "WHERE id % 997 = 0")
        runs = await conn.fetch("SELECT r.id, r.job_id, r.schedule_id, r.status, r.created_at, "
                                "j.queue FROM runs r JOIN jobs j ON j.id = r.job_id")
        cases = [
            {}, {"statuses": ["dead"]}, {"statuses": ["failed", "timed_out", "dead"]},
            {"statuses": ["succeeded", "succeeded"]}, {"statuses": ["queued", "running"]},
            {"queue": "q3"}, {"queue": "q3", "statuses": ["dead"]},
            {"queue": "q5", "statuses": ["failed", "cancelled"]},
            {"job": job}, {"job": job, "statuses": ["failed"]}, {"schedule": schedule},
            {"schedule": schedule, "statuses": ["succeeded"]},
            {"since": now - timedelta(days=20)}, {"until": now - timedelta(days=30)},
            {"since": now - timedelta(days=31), "until": now - timedelta(days=29),
             "statuses": ["failed", "skipped"], "queue": "q1"},
            {"until": now - timedelta(days=10), "statuses": ["dead"]},
        ]
        for case in cases:
            expected = _select(runs, **case)
            by_status_only = set(case) <= {"statuses"}
            seen, cursor = [], None
            for _ in range(4):
                rows = await conn.fetch(q("list_runs"), *_args(**case, cursor=cursor, limit=7))
                total = rows[0]["total"]
                assert total == (len(expected) if by_status_only
                                 else min(len(expected), CAP)), case
                page = [r["id"] for r in rows if r["id"] is not None]
                seen += page[:7]
                if len(page) <= 7:
                    break
                cursor = page[6]
            assert seen == [r["id"] for r in expected[:len(seen)]], case
            assert len(seen) == min(len(expected), 28), case
    finally:
        await conn.close()


def _select(runs: list, *, job=None, schedule=None, statuses=None, since=None, until=None,
            queue=None) -> list:
    """The runs the filters select, in the list's order: a plain reading of the API."""
    kept = [r for r in runs
            if (job is None or r["job_id"] == job)
            and (schedule is None or r["schedule_id"] == schedule)
            and (statuses is None or r["status"] in statuses)
            and (since is None or r["created_at"] >= since)
            and (until is None or r["created_at"] < until)
            and (queue is None or r["queue"] == queue)]
    if since is None and until is None:
        return sorted(kept, key=lambda r: r["id"], reverse=True)
    return sorted(kept, key=lambda r: (r["created_at"], r["id"]), reverse=True)


async def _buffers(conn: asyncpg.Connection, args: tuple) -> int:
    plan = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {q('list_runs')}",
                               *args)
    top = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
    return top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)


async def test_the_dashboards_filters_read_a_bounded_number_of_buffers(db_url: str) -> None:
    # 300,000 runs over a year: 0.2% dead (600), a queue with 1/12 of the jobs.
    await history_seed.history(db_url, 300_000)
    conn = await _connect(db_url)
    try:
        now: datetime = await conn.fetchval("SELECT now()")
        schedule = await conn.fetchval(
            "SELECT schedule_id FROM runs WHERE schedule_id IS NOT NULL "
            "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
        # Pages of one run: what is left is what finding the page and counting cost. From
        # indexes alone, tens of buffers; a plan that read every run a filter passes
        # over, or every run it selects, from the table reads hundreds here (and more the
        # bigger the history).
        cases = {
            "status=dead": _args(statuses=["dead"], limit=1),
            "status=failed,timed_out,dead": _args(statuses=["failed", "timed_out", "dead"],
                                                  limit=1),
            "queue&status=dead": _args(queue="q3", statuses=["dead"], limit=1),
            "schedule": _args(schedule=schedule, limit=1),
            "since=30d": _args(since=now - timedelta(days=30), limit=1),
            "until=6 months ago": _args(until=now - timedelta(days=180), limit=1),
        }
        read = {name: await _buffers(conn, args) for name, args in cases.items()}
        assert all(n <= 120 for n in read.values()), read
    finally:
        await conn.close()
