"""8. Years of history: the dashboard's calls against a `runs` table of RUNS rows.

A database seeded with set-based SQL (bench/history_seed.py: a year of runs over a few
thousand jobs, a realistic mix of statuses and triggers, vacuumed and analysed), then:

- Latency: one `sundial api` process; each call the dashboard makes (stats, the run list
  with each filter the API offers, cursors and totals, the jobs list, a job's page and
  health, queues, scheduler status, workers, /metrics) CALLS times after WARM_UP untimed
  ones, one request at a time with httpx; p50/p99 per call, and EXPLAIN (ANALYZE,
  BUFFERS) of its main query (execution time, shared buffers hit + read).
- HOT: a load of heartbeats and status changes on running runs (the statements the
  worker runs: heartbeat_runs, record_results) for LOAD_S seconds; n_tup_hot_upd /
  n_tup_upd of `runs` from pg_stat_user_tables over it.
- Retention: the scheduler's delete_old_runs batches on the seeded table with a
  retention that makes ~RETENTION_ROWS runs old; rows deleted per second, against the
  5,000 new runs/s it must keep up with.
- Bloat: pgstattuple of `runs` (dead tuples, free space) after that load window.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from bench import history_seed, infra
from bench.stats import summary_ms
from sundial.api.service import TOTAL_COUNT_LIMIT
from sundial.api.settings import ApiSettings
from sundial.core.sql import q
from sundial.scheduler.reaper import delete_old_runs

WARM_UP = 5
CALLS = 60
TARGET_P99_MS = 50.0
STEADY_RUNS_PER_S = 5000
RETENTION_ROWS = 200_000


async def _calls(conn: asyncpg.Connection) -> dict[str, str]:
    """Each GET the dashboard makes, with realistic arguments from the seeded data."""
    # The busiest scheduled job of the latest 100,000 runs, and a quiet one.
    busy_job, schedule = await conn.fetchrow(
        "SELECT r.job_id, s.id FROM runs r JOIN schedules s ON s.job_id = r.job_id "
        "WHERE r.id > (SELECT max(id) - 100000 FROM runs) "
        "GROUP BY r.job_id, s.id ORDER BY count(*) DESC LIMIT 1")
    some_job = await conn.fetchval("SELECT min(id) + 100 FROM jobs")
    mid = await conn.fetchval("SELECT (min(id) + max(id)) / 2 FROM runs")
    newest = await conn.fetchval("SELECT max(id) FROM runs")
    now = datetime.now(UTC)

    def ago(**delta: float) -> str:
        return (now - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")

    calls = {
        # The floor: the same process and client, no database (a busy machine's p99 is
        # read against it).
        "health (no database)": "/health",
        "stats": "/api/stats",
        "runs": "/api/runs",
        "runs ?cursor (deep)": f"/api/runs?cursor={mid}",
        "runs ?status=succeeded": "/api/runs?status=succeeded",
        "runs ?status=failed": "/api/runs?status=failed",
        "runs ?status=dead": "/api/runs?status=dead",
        "runs ?status=failed,timed_out,dead": "/api/runs?status=failed&status=timed_out&status=dead",
        "runs ?status=running": "/api/runs?status=running",
        "runs ?status=queued": "/api/runs?status=queued",
        "runs ?job": f"/api/runs?job={busy_job}",
        "runs ?job&status=failed": f"/api/runs?job={busy_job}&status=failed",
        "runs ?job&cursor": f"/api/runs?job={some_job}&cursor={mid}",
        "runs ?schedule": f"/api/runs?schedule={schedule}",
        "runs ?queue": "/api/runs?queue=q3",
        "runs ?queue&status=dead": "/api/runs?queue=q3&status=dead",
        "runs ?since=1h": f"/api/runs?since={ago(hours=1)}",
        "runs ?since=30d": f"/api/runs?since={ago(days=30)}",
        "runs ?until=6 months ago": f"/api/runs?until={ago(days=180)}",
        "runs ?since&until (1 day, 3 months ago)": f"/api/runs?since={ago(days=91)}&until={ago(days=90)}",
        "runs limit=500": "/api/runs?limit=500",
        "run": f"/api/runs/{newest - 5000}",
        "jobs": "/api/jobs",
        "job": f"/api/jobs/{busy_job}",
        "job health": f"/api/jobs/{busy_job}/health",
        "job health (30d)": f"/api/jobs/{busy_job}/health?window=30d",
        "schedules of a job": f"/api/schedules?job={busy_job}",
        "queues": "/api/queues",
        "scheduler status": "/api/scheduler/status",
        "workers": "/api/workers",
        "metrics": "/metrics",
    }
    return calls


async def _latency(http: httpx.AsyncClient, calls: dict[str, str], n: int) -> dict:
    out = {}
    for name, path in calls.items():
        times: list[float] = []
        status = 0
        for i in range(WARM_UP + n):
            started = time.perf_counter()
            response = await http.get(path)
            elapsed = time.perf_counter() - started
            status = response.status_code
            if i >= WARM_UP:
                times.append(elapsed)
        out[name] = {"path": path, "status": status, **summary_ms(times)}
    return out


def _default(name: str):
    return ApiSettings.model_fields[name].default


# The main query of each call, for EXPLAIN (ANALYZE, BUFFERS), with the API's arguments
# (its default settings, as the measured process runs).
def _explained(calls: dict[str, str]) -> dict[str, tuple[str, tuple]]:
    jobs, offline = _default("metrics_max_jobs"), _default("worker_offline_threshold_s")
    return {
        "stats": (q("stats"), ()),
        "metrics_runs_by_status": (q("metrics_runs_by_status"), ()),
        "metrics_job_runs": (q("metrics_job_runs"), (jobs,)),
        "metrics_queues": (q("metrics_queues"), (offline,)),
        "metrics_gauges": (q("metrics_gauges"), (offline, _default("scheduler_stale_after_s"))),
        "metrics_last_success": (q("metrics_last_success"), (jobs,)),
        "list_jobs": (q("list_jobs"), (None, 50, 0)),
        "list_queues": (q("list_queues"), ()),
        "list_workers": (q("list_workers"), (offline,)),
    }


async def _explain(conn: asyncpg.Connection, sql: str, args: tuple) -> dict:
    plan = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
    top = json.loads(plan)[0] if isinstance(plan, str) else plan[0]
    node = top["Plan"]
    return {"execution_ms": top["Execution Time"],
            "shared_hit": node.get("Shared Hit Blocks", 0),
            "shared_read": node.get("Shared Read Blocks", 0)}


async def _list_runs_plans(conn: asyncpg.Connection, calls: dict[str, str]) -> dict:
    """EXPLAIN of list_runs as the API binds it for each run-list call."""
    out = {}
    for name, path in calls.items():
        if path.partition("?")[0] != "/api/runs":
            continue
        params: dict[str, list[str]] = {}
        for part in path.partition("?")[2].split("&"):
            if part:
                k, _, v = part.partition("=")
                params.setdefault(k, []).append(v)
        one = {k: v[0] for k, v in params.items()}
        args = (int(one["job"]) if "job" in one else None,
                int(one["schedule"]) if "schedule" in one else None,
                params.get("status"),
                datetime.fromisoformat(one["since"]) if "since" in one else None,
                datetime.fromisoformat(one["until"]) if "until" in one else None,
                int(one["cursor"]) if "cursor" in one else None, int(one.get("limit", 50)),
                one.get("queue"), TOTAL_COUNT_LIMIT + 1)
        out[name] = await _explain(conn, q("list_runs"), args)
    return out


async def _hot_load(db: str, load_s: float) -> dict:
    """Heartbeats and status changes of running runs, as workers make them, for load_s."""
    conn = await asyncpg.connect(db)
    try:
        await conn.execute("SELECT pg_stat_reset_single_table_counters('runs'::regclass)")
        before = await _table_stats(conn)
        started = time.monotonic()
        beats = ends = 0
        while time.monotonic() - started < load_s:
            # A worker's slots: the running runs of one worker beat; a few end, as many start.
            rows = await conn.fetch(
                "SELECT id, attempt, worker_id FROM runs WHERE status = 'running' "
                "ORDER BY random() LIMIT 20")
            for worker in {r["worker_id"] for r in rows}:
                mine = [r for r in rows if r["worker_id"] == worker]
                await conn.execute(q("heartbeat_runs"), [r["id"] for r in mine],
                                   [r["attempt"] for r in mine], worker,
                                   ["tail of output"] * len(mine))
                beats += len(mine)
            done = rows[:2]
            if done:
                await conn.execute(
                    q("record_results"), done[0]["worker_id"], [done[0]["id"]],
                    [done[0]["attempt"]], ["succeeded"], [None], [None], [None], [0.0])
                ends += 1
            # A queued run starts in its place (claim's update: queued -> running).
            await conn.execute(
                "UPDATE runs SET status = 'running', started_at = now(), heartbeat_at = now(), "
                "worker_id = 'worker-1', updated_at = now() "
                "WHERE id = (SELECT id FROM runs WHERE status = 'queued' LIMIT 1)")
        await asyncio.sleep(0.7)   # the statistics collector's flush
        after = await _table_stats(conn)
    finally:
        await conn.close()
    upd = after["n_tup_upd"] - before["n_tup_upd"]
    hot = after["n_tup_hot_upd"] - before["n_tup_hot_upd"]
    return {"load_s": load_s, "heartbeats": beats, "status_changes": ends * 2,
            "updates": upd, "hot_updates": hot, "hot_ratio": hot / upd if upd else None}


async def _table_stats(conn: asyncpg.Connection) -> asyncpg.Record:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    return await conn.fetchrow("SELECT n_tup_upd, n_tup_hot_upd, n_dead_tup, n_live_tup "
                               "FROM pg_stat_user_tables WHERE relname = 'runs'")


async def _indexes(conn: asyncpg.Connection) -> list[dict]:
    rows = await conn.fetch(
        "SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS def, "
        "pg_relation_size(indexrelid) AS bytes FROM pg_index WHERE indrelid = 'runs'::regclass "
        "ORDER BY 1")
    return [dict(r) for r in rows]


async def _bloat(conn: asyncpg.Connection) -> dict:
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
    row = await conn.fetchrow("SELECT table_len, tuple_count, dead_tuple_count, "
                              "dead_tuple_percent, free_percent FROM pgstattuple('runs')")
    return dict(row)


async def _retention(db: str, rows: int) -> dict:
    """Delete the oldest ~rows runs with the scheduler's retention batches; rows/s."""
    conn = await asyncpg.connect(db)
    try:
        cutoff = await conn.fetchval(
            "SELECT created_at FROM runs ORDER BY id OFFSET $1 LIMIT 1", rows)
        days = await conn.fetchval("SELECT EXTRACT(EPOCH FROM now() - $1::timestamptz) / 86400",
                                   cutoff)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(db, min_size=1, max_size=1)
    try:
        started = time.monotonic()
        deleted = 0
        while True:
            n = await delete_old_runs(pool, retention_days=days, budget_s=5.0)
            deleted += n
            if n == 0 or time.monotonic() - started > 120:
                break
        elapsed = time.monotonic() - started
    finally:
        await pool.close()
    rate = deleted / elapsed if elapsed else None
    return {"deleted": deleted, "seconds": elapsed, "rate_per_s": rate,
            "vs_steady_load": rate / STEADY_RUNS_PER_S if rate else None}


async def measure(runs: int, load_s: float, calls_n: int = CALLS) -> dict:
    async with infra.database("history") as db:
        with infra.vhost("history") as amqp:
            started = time.monotonic()
            await history_seed.history(db, runs)
            seed_s = time.monotonic() - started
            conn = await asyncpg.connect(db)
            port = infra.free_port()
            env = infra.sundial_env(db, amqp, API_HOST="127.0.0.1", API_PORT=port)
            key = infra.api_key(env)
            api = infra.sundial("sundial-history-api", ["api"], env)
            try:
                calls = await _calls(conn)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                             headers={"Authorization": f"Bearer {key}"}) as http:
                    await infra.wait_until(lambda: _healthy(http), 60, "the API")
                    latency = await _latency(http, calls, calls_n)
                plans = {k: await _explain(conn, sql, args)
                         for k, (sql, args) in _explained(calls).items()}
                plans.update(await _list_runs_plans(conn, calls))
                indexes = await _indexes(conn)
                size_before = await conn.fetchval("SELECT pg_total_relation_size('runs')")
                hot = await _hot_load(db, load_s)
                bloat = await _bloat(conn)
                size_after = await conn.fetchval("SELECT pg_total_relation_size('runs')")
                retention = await _retention(db, min(RETENTION_ROWS, runs // 10))
            finally:
                api.stop()
                await conn.close()
    over = sorted(k for k, v in latency.items() if (v["p99_ms"] or 0) > TARGET_P99_MS)
    floor = latency["health (no database)"]
    return {"runs": runs, "seed_s": seed_s, "calls": latency, "target_p99_ms": TARGET_P99_MS,
            "over_target": over, "floor_p50_ms": floor["p50_ms"], "floor_p99_ms": floor["p99_ms"],
            "plans": plans, "indexes": indexes, "hot": hot,
            "bloat": {"window_s": load_s, **bloat, "total_bytes_before": size_before,
                      "total_bytes_after": size_after},
            "retention": retention,
            "command": f"sundial api; httpx GET, {calls_n} per call after {WARM_UP}"}


async def _healthy(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/health")).status_code == 200
    except httpx.HTTPError:
        return False
