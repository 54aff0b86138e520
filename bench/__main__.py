"""`python -m bench [--quick] [--only MEASURE ...]`: measure Sundial and its peers in one
run, write bench/results/<date>.json and render docs/benchmarks.md from it.

`python -m bench --render bench/results/<date>.json` only renders.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench import dispatch, drain, end_to_end, fire_lag, history, infra, outbox, peers, render, scale, steady, trigger

RESULTS = infra.ROOT / "bench" / "results"
MEASURES = ("dispatch", "end_to_end", "trigger", "fire_lag", "scale", "outbox", "e2e_peers",
            "steady", "history", "drain")

FULL = {"dispatch": 100_000, "dispatch_aps": 3_000, "dispatch_celery": 1_000,
        "dispatch_celery_cap_s": 60.0,
        "e2e": 20_000, "e2e_aps": 1_500, "workers": (1, 2, 4), "triggers": 1_000,
        "steady": 1_000, "steady_s": 60.0, "burst": 10_000,
        "scale": (10_000, 100_000, 1_000_000), "scale_aps": 1_000,
        "scale_celery": (10_000, 100_000), "idle_window_s": 30.0,
        "outbox_runs": 1_000_000, "outbox_drain_s": 60.0,
        "e2e_peers": 2_000, "peers_steady_s": 30.0,
        "steady_windows": steady.WINDOWS, "steady_ceiling_s": 8.0,
        "steady_schedules": 300_000, "steady_period_s": 60.0, "steady_load_s": 190.0,
        "steady_ladder_period_s": 20.0, "steady_ladder_s": 35.0, "steady_ladder_steps": 4,
        "history_runs": 10_000_000, "history_load_s": 60.0,
        "drain_runs": 1_000_000, "drain_fresh": 1_000, "drain_window_s": 120.0}
QUICK = {"dispatch": 10_000, "dispatch_aps": 500, "dispatch_celery": 1_000,
         "dispatch_celery_cap_s": 30.0,
         "e2e": 3_000, "e2e_aps": 300, "workers": (1, 2, 4), "triggers": 200,
         "steady": 1_000, "steady_s": 15.0, "burst": 10_000,
         "scale": (10_000, 100_000), "scale_aps": 300,
         "scale_celery": (10_000,), "idle_window_s": 10.0,
         "outbox_runs": 100_000, "outbox_drain_s": 15.0,
         "e2e_peers": 300, "peers_steady_s": 10.0,
         "steady_windows": ((500, 1), (2000, 4)), "steady_ceiling_s": 5.0,
         "steady_schedules": 30_000, "steady_period_s": 60.0, "steady_load_s": 40.0,
         "steady_ladder_period_s": 10.0, "steady_ladder_s": 25.0, "steady_ladder_steps": 2,
         "history_runs": 1_000_000, "history_load_s": 15.0,
         "drain_runs": 100_000, "drain_fresh": 1_000, "drain_window_s": 30.0}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              cwd=infra.ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "postgresql": _run(["psql", "--version"]).replace("psql (PostgreSQL) ", ""),
            "rabbitmq": _run(["rabbitmqctl", "version"]),
            "load_average": list(os.getloadavg())}


def versions() -> dict:
    return {"sundial": _run(["git", "rev-parse", "--short", "HEAD"]),
            **{d: _version(d) for d in ("apscheduler", "celery", "kombu", "amqp", "sqlalchemy",
                                         "asyncpg", "aio-pika", "aiormq", "anyio", "uvloop",
                                         "procrastinate", "psycopg", "psycopg2-binary")}}


async def _guarded(results: dict, key: str, make: Callable[[], Awaitable[dict]],
                   label: str) -> None:
    """One figure; a failure is recorded in the results instead of ending the run."""
    started = time.monotonic()
    print(f"bench: {label} ...", flush=True)
    try:
        results[key] = await make()
    except Exception as exc:  # the run goes on; the table says what failed
        traceback.print_exc()
        results[key] = {"error": f"{type(exc).__name__}: {exc}"}
    print(f"bench: {label} done in {time.monotonic() - started:.0f}s: "
          f"{json.dumps(results[key], default=str)[:300]}", flush=True)


async def measure(sizes: dict, only: set[str]) -> dict:
    out: dict[str, dict] = {}
    if "dispatch" in only:
        r = out["dispatch"] = {}
        n = sizes["dispatch"]
        await _guarded(r, "sundial", lambda: dispatch.sundial(n, timeout_s=600), "dispatch, Sundial")
        await _guarded(r, "apscheduler", lambda: dispatch.apscheduler(sizes["dispatch_aps"],
                                                                      timeout_s=600),
                       "dispatch, APScheduler 4")
        beat_n, cap = sizes["dispatch_celery"], sizes["dispatch_celery_cap_s"]
        await _guarded(r, "celery_beat", lambda: dispatch.celery_beat(beat_n, cap_s=cap),
                       "dispatch, Celery beat 5")
        await _guarded(r, "celery_beat_confirms",
                       lambda: dispatch.celery_beat(beat_n, cap_s=cap, confirms=True),
                       "dispatch, Celery beat 5 with confirm_publish")
        await _guarded(r, "procrastinate",
                       lambda: peers.procrastinate_dispatch(beat_n, timeout_s=300),
                       "dispatch, procrastinate")
    if "end_to_end" in only:
        r = out["end_to_end"] = {"sundial": {}, "apscheduler": {}}
        for w in sizes["workers"]:
            await _guarded(r["sundial"], str(w),
                           lambda w=w: end_to_end.sundial(sizes["e2e"], w, timeout_s=600),
                           f"end-to-end, Sundial, {w} workers")
            await _guarded(r["apscheduler"], str(w),
                           lambda w=w: end_to_end.apscheduler(sizes["e2e_aps"], w, timeout_s=600),
                           f"end-to-end, APScheduler 4, {w} workers")
        r["celery_beat"] = {"not_applicable": "beat only publishes; executing is Celery "
                                              "workers' job, not the scheduler's"}
    if "trigger" in only:
        r = out["trigger"] = {}
        await _guarded(r, "sundial", lambda: trigger.sundial(sizes["triggers"], timeout_s=120),
                       "trigger latency, Sundial")
        await _guarded(r, "apscheduler",
                       lambda: trigger.apscheduler(sizes["triggers"], timeout_s=120),
                       "trigger latency, APScheduler 4")
        r["celery_beat"] = {"not_applicable": "beat has no run-now; apply_async bypasses it"}
    if "fire_lag" in only:
        r = out["fire_lag"] = {"steady": {}, "burst": {}}
        n, d = sizes["steady"], sizes["steady_s"]
        await _guarded(r["steady"], "sundial", lambda: fire_lag.sundial_steady(n, d),
                       "fire lag, Sundial")
        await _guarded(r["steady"], "apscheduler", lambda: fire_lag.apscheduler_steady(n, d),
                       "fire lag, APScheduler 4")
        await _guarded(r["steady"], "celery_beat", lambda: fire_lag.celery_steady(n, d),
                       "fire lag, Celery beat 5")
        await _guarded(r["burst"], "sundial",
                       lambda: fire_lag.sundial_burst(sizes["burst"], timeout_s=300),
                       "burst, Sundial")
    if "scale" in only:
        r = out["scale"] = {"sundial": {}, "apscheduler": {}, "celery_beat": {}}
        w = sizes["idle_window_s"]
        for size in sizes["scale"]:
            await _guarded(r["sundial"], str(size), lambda size=size: scale.sundial(size, w),
                           f"scale, Sundial, {size:,} schedules")
        await _guarded(r["apscheduler"], str(sizes["scale_aps"]),
                       lambda: scale.apscheduler(sizes["scale_aps"], w),
                       "idle, APScheduler 4")
        for size in sizes["scale_celery"]:
            await _guarded(r["celery_beat"], str(size),
                           lambda size=size: scale.celery_beat(size, w),
                           f"idle, Celery beat 5, {size:,} entries")
    if "outbox" in only:
        await _guarded(out, "outbox", lambda: outbox.measure(sizes["outbox_runs"],
                                                             sizes["outbox_drain_s"]),
                       f"outbox, Sundial, {sizes['outbox_runs']:,} runs")
    if "e2e_peers" in only:
        r = out["e2e_peers"] = {"celery": {}, "procrastinate": {}}
        n = sizes["e2e_peers"]
        for w in sizes["workers"]:
            await _guarded(r["celery"], str(w), lambda w=w: peers.celery(n, w, timeout_s=300),
                           f"end-to-end, Celery beat + prefork worker, concurrency {w}")
            await _guarded(r["procrastinate"], str(w),
                           lambda w=w: peers.procrastinate(n, w, timeout_s=300),
                           f"end-to-end, procrastinate, {w} workers")
        await _guarded(r, "procrastinate_lag",
                       lambda: peers.procrastinate_steady(sizes["steady"], sizes["peers_steady_s"]),
                       "fire lag, procrastinate")
    if "steady" in only:
        await _guarded(out, "steady", lambda: steady.measure(sizes),
                       f"steady load, Sundial, {sizes['steady_schedules']:,} schedules, "
                       "next to RabbitMQ's ceiling")
    if "history" in only:
        await _guarded(out, "history", lambda: history.measure(sizes["history_runs"],
                                                               sizes["history_load_s"]),
                       f"history, Sundial, {sizes['history_runs']:,} runs")
    if "drain" in only:
        await _guarded(out, "drain", lambda: drain.measure(
            sizes["drain_runs"], sizes["drain_fresh"], sizes["drain_window_s"]),
            f"drain, Sundial, {sizes['drain_runs']:,} runs + {sizes['drain_fresh']:,} slots/s")
    return out


def merge(base_path: Path, rerun_path: Path) -> None:
    """A measure re-run by a later invocation replaces the base's, and the page says so."""
    base, rerun = json.loads(base_path.read_text()), json.loads(rerun_path.read_text())
    failed = sorted({name for name, measure in base["measures"].items() if name in rerun["measures"]
                     and "error" in json.dumps(measure)})
    added = sorted(set(rerun["measures"]) - set(base["measures"]))
    why = (f"because in the first one {', '.join(failed)} failed on a harness bug, since fixed"
           if failed else f"{', '.join(added) or 'they'} being measured after the first one")
    base["measures"].update(rerun["measures"])
    base.setdefault("notes", []).append(
        f"{', '.join(rerun['only'])} come from a second invocation at {rerun['date']} "
        f"(`python -m bench --only {' '.join(rerun['only'])}` at commit "
        f"{rerun['versions']['sundial']}; load average then "
        f"{', '.join(f'{x:.2f}' for x in rerun['machine']['load_average'])}, after it "
        f"{', '.join(f'{x:.2f}' for x in rerun.get('load_average_after') or [])}; results in "
        f"`{rerun_path.resolve().relative_to(infra.ROOT)}`), {why}; each of those "
        "measures still has all of its systems from one invocation.")
    base["targets"] = render.targets(base)
    base_path.write_text(json.dumps(base, indent=2, default=str) + "\n")
    render.write(base, base_path)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a fast check")
    parser.add_argument("--only", nargs="+", choices=MEASURES, default=list(MEASURES))
    parser.add_argument("--render", metavar="JSON", help="only render docs/benchmarks.md from it")
    parser.add_argument("--out", help="results file (default bench/results/<date>.json)")
    parser.add_argument("--merge", nargs=2, metavar=("BASE", "RERUN"),
                        help="take RERUN's measures into BASE (noting it), then render BASE")
    args = parser.parse_args()
    if args.merge:
        merge(Path(args.merge[0]), Path(args.merge[1]))
        return 0
    if args.render:
        render.write(json.loads(Path(args.render).read_text()), Path(args.render))
        return 0
    sizes = QUICK if args.quick else FULL
    started = datetime.now(UTC)
    results = {"date": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "quick": args.quick,
               "command": "make bench" if not args.quick else "python -m bench --quick",
               "only": args.only, "machine": machine(), "versions": versions(),
               "sizes": sizes}
    results["measures"] = asyncio.run(measure(sizes, set(args.only)))
    results["load_average_after"] = list(os.getloadavg())
    results["duration_s"] = (datetime.now(UTC) - started).total_seconds()
    results["targets"] = render.targets(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    path = Path(args.out) if args.out else RESULTS / f"{started:%Y-%m-%d}{suffix}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"bench: results in {path}")
    render.write(results, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
