"""`python -m bench.sync_overhead [--runs N]`: what a trivial sync Python job costs per run
in a thread (WORKER_SYNC_PROCESSES=0) and in a child process of the worker's pool.

Calls the `python` handler as the worker does, one run after another, so the figure is
the handler's own overhead (hand-off, JSON both ways, the reply), not the database's or
the broker's. Also times starting a process (paid once per process, and after each kill).
"""

from __future__ import annotations

import argparse
import statistics
import time

import uvloop

from sundial.worker import registry
from sundial.worker.handlers import RunContext, current, python
from sundial.worker.processes import SyncPool
from sundial.worker.settings import WorkerSettings

ROUNDS = 5


async def per_run_us(handler, ctx: RunContext, runs: int) -> float:
    """The median over ROUNDS of the mean time per run, in microseconds."""
    payload = {"function": "bench.trivial", "args": [1]}
    for _ in range(50):  # warm up
        await handler(payload, ctx)
    means = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(runs):
            await handler(payload, ctx)
        means.append((time.perf_counter() - start) / runs * 1e6)
    return statistics.median(means)


async def main(runs: int) -> None:
    settings = WorkerSettings(WORKER_IMPORTS="bench.sync_jobs", WORKER_SYNC_PROCESSES=1)
    registry.import_modules(settings.imports)
    ctx = RunContext(settings, 1, 1, "bench.trivial", 1, 1)
    current.set(ctx)
    sync = SyncPool(settings)
    start = time.perf_counter()
    await sync.start()
    spawn_ms = (time.perf_counter() - start) * 1e3
    try:
        thread = await per_run_us(python.handler(None), ctx, runs)
        process = await per_run_us(python.handler(sync), ctx, runs)
    finally:
        await sync.close()
    print(f"thread:  {thread:7.0f} µs per run")
    print(f"process: {process:7.0f} µs per run ({process / thread:.1f}x the thread, "
          f"+{process - thread:.0f} µs)")
    print(f"starting a process: {spawn_ms:.0f} ms ({spawn_ms * 1e3 / process:.0f} runs' worth)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    uvloop.run(main(parser.parse_args().runs))
