"""Example Python jobs. `make run`'s worker imports this module (examples/ on PYTHONPATH,
WORKER_IMPORTS=reports), so the README's python job runs as written:

    sundial jobs add --name nightly-report --handler python \
        --payload '{"function": "reports.daily"}' --cron '0 2 * * *' --timezone Europe/Paris

`reports.summary` and `reports.cleanup` are declared here, with their schedules:
`make run` writes them with `sundial sync` (docs/jobs-in-code.md). Your own modules work
the same way: see docs/handlers.md.
"""

from __future__ import annotations

from datetime import date

from sundial import PayloadError, current_run, declare, job


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


# Declared in code: `sundial sync` creates the job `reports.summary` (handler python,
# calling this function with these kwargs) with two schedules, and keeps it as written here.
@job("reports.summary", every=60, kwargs={"scope": "demo"}, timeout_seconds=60,
     schedules=[{"key": "weekday-mornings", "cron": "0 8 * * 1-5", "timezone": "Europe/Paris"}],
     description="demo: a summary declared in code, every minute and at 08:00 on weekdays")
async def summary(scope: str) -> dict:
    run = current_run()
    return {"summary": f"{scope} summary", "run_id": run.run_id}


# A job of another handler, declared the same way.
declare("reports.cleanup", handler="sleep", payload={"seconds": 1}, cron="30 3 * * *",
        timezone="Europe/Paris", description="demo: a nightly stand-in declared in code")
