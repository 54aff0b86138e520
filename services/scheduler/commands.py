"""`sundial scheduler`: the daemon."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scheduler", help="run the scheduler daemon (several may run at once)")
    p.set_defaults(func=_scheduler)


def _scheduler(_args: argparse.Namespace) -> int:
    from sundial.core.cli import run_async
    from sundial.core.logging import configure_logging
    from sundial.core.settings import load_settings
    from sundial.scheduler.main import serve
    from sundial.scheduler.settings import SchedulerSettings

    settings = load_settings(SchedulerSettings)
    configure_logging(settings.log_level, settings.log_format, service="scheduler")
    return run_async(serve, settings)
