"""Core sub-commands: `sundial migrate` and `sundial healthcheck`."""

from __future__ import annotations

import argparse
import sys

from sundial.core import health
from sundial.core.cli import run_async


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="apply pending database migrations (safe to repeat)")
    p.add_argument("--create-database", action="store_true",
                   help="create the database first if it does not exist")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("healthcheck", help="exit 0 while the service's heartbeat is fresh")
    p.add_argument("service", choices=health.SERVICES)
    p.set_defaults(func=_healthcheck)


def _migrate(args: argparse.Namespace) -> int:
    from sundial.core.db import connect
    from sundial.core.logging import configure_logging
    from sundial.core.migrate import ensure_database, migrate
    from sundial.core.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, service="migrate")

    async def main() -> int:
        if args.create_database:
            await ensure_database(settings.database_url)
        conn = await connect(settings.database_url, attempts=10)
        try:
            applied = await migrate(conn)
        finally:
            await conn.close()
        print(f"migrations applied: {len(applied)}"
              + (f" ({', '.join(f'{v:04d}' for v in applied)})" if applied else " (up to date)"))
        return 0

    return run_async(main)


def _healthcheck(args: argparse.Namespace) -> int:
    from sundial.core.settings import load_settings

    settings = load_settings()
    age = health.age_s(settings.health_dir, args.service)
    limit = health.stale_after_s(args.service, settings.poll_interval_s,
                                 settings.worker_heartbeat_interval_s,
                                 settings.healthcheck_interval_s)
    if age is None:
        print(f"{args.service}: unhealthy (no heartbeat yet in {settings.health_dir})")
        return 1
    if age > limit:
        print(f"{args.service}: unhealthy (last heartbeat {age:.0f}s ago, limit {limit:.0f}s)")
        return 1
    print(f"{args.service}: healthy (last heartbeat {age:.1f}s ago)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(1)
