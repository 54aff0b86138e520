"""Example Python jobs. `make run`'s worker imports this module (examples/ on PYTHONPATH,
WORKER_IMPORTS=reports), so the README's python job runs as written:

    sundial jobs add --name nightly-report --handler python \
        --payload '{"function": "reports.daily"}' --cron '0 2 * * *' --timezone Europe/Paris

Your own modules work the same way: see docs/handlers.md.
"""

from __future__ import annotations

from datetime import date

from sundial import PayloadError, current_run, job


@job("reports.daily")
def daily(day: str | None = None) -> dict:
    """A stand-in for a nightly report: says which day and which run made it."""
    if day is not None:
        try:
            date.fromisoformat(day)
        except ValueError:
            raise PayloadError(f"kwargs.day {day!r} is not a date like 2026-12-01") from None
    run = current_run()
    return {"report": f"daily report for {day or date.today().isoformat()}",
            "run_id": run.run_id, "attempt": run.attempt}
