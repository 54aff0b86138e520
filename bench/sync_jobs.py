"""The trivial sync job `python -m bench.sync_overhead` runs (imported by WORKER_IMPORTS)."""

from __future__ import annotations

from sundial import current_run, job


@job("bench.trivial")
def trivial(n: int) -> dict:
    return {"n": n, "run_id": current_run().run_id}
