"""procrastinate as a peer: its App on the bench's own database, one trivial task and, in
the process that defers them, BENCH_PERIODIC periodic tasks of it (periodic_id p0, p1, ...)
on the cron BENCH_CRON (five fields, or six with seconds last: croniter's order).

    python -m procrastinate --app bench.procrastinate_app.app worker --queues bench ...

procrastinate has no scheduler process: every worker runs the periodic deferrer for the
periodic tasks its app knows (the database keeps one job per task, periodic_id and slot).
"""

from __future__ import annotations

import os

from procrastinate import App, PsycopgConnector

QUEUE = "bench"
TASK = "bench.noop"

app = App(connector=PsycopgConnector(conninfo=os.environ.get("BENCH_PROCRASTINATE_DB", "")))


@app.task(name=TASK, queue=QUEUE)
async def noop(timestamp: int | None = None) -> None:
    """The trivial task (a periodic task is given its slot's timestamp)."""


for _i in range(int(os.environ.get("BENCH_PERIODIC", "0"))):
    app.periodic(cron=os.environ.get("BENCH_CRON", "* * * * *"), periodic_id=f"p{_i}")(noop)
