"""`sundial worker`: consume and execute runs."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run a worker (consume WORKER_QUEUES, execute runs)")
    p.set_defaults(func=_worker)


def _worker(_args: argparse.Namespace) -> int:
    from sundial.core.cli import run_async
    from sundial.core.logging import configure_logging
    from sundial.core.secrets import hide_process_secrets
    from sundial.core.settings import load_settings
    from sundial.worker.main import serve
    from sundial.worker.settings import WorkerSettings

    settings = load_settings(WorkerSettings)
    # Command jobs run as this user: they must not read the worker's environment
    # (DATABASE_URL, ENCRYPTION_KEY, ...) from /proc.
    hide_process_secrets()
    configure_logging(settings.log_level, settings.log_format, service="worker")
    return run_async(serve, settings)
