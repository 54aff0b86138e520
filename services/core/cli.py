"""The `sundial` command.

Each service contributes its sub-commands through `<package>.commands.register(sub)`;
the heavy imports happen inside the command functions, so `sundial --help` is quick.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
from collections.abc import Callable, Sequence

from core.errors import SundialError
from core.health import SERVICES

COMMAND_MODULES = ("core.commands", "scheduler.commands", "worker.commands", "api.commands")
# The long-running services: SIGTERM stops them with exit 0 at any moment, start-up
# included. Until core.runtime.serve takes the signal over it is only noted (raising
# from a signal handler is lost when it lands inside an import's callback), and serve
# stops the service as soon as it starts (the services: core.health.SERVICES).
_stop_requested = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sundial",
        description="Sundial: a database-driven job scheduler (PostgreSQL + RabbitMQ).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # a service that is not installed contributes nothing
            raise
        module.register(sub)
    return parser


def run_async(main: Callable[..., object], *args: object) -> int:
    """Run a coroutine function; its return value (or 0) is the exit code."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        code = runner.run(main(*args))  # type: ignore[arg-type]
    return int(code or 0)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (the services' default): a faster event loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _note_stop(_signum: int, _frame: object) -> None:
    global _stop_requested
    _stop_requested = True


def stop_requested() -> bool:
    """Whether SIGTERM arrived before the service's event loop took the signal over."""
    return _stop_requested


def main(argv: Sequence[str] | None = None) -> int:
    # Run as `python -m core.cli`, this file is __main__, a module apart from the
    # core.cli that core.runtime asks: the note must land in that one.
    from core import cli

    previous = signal.signal(signal.SIGTERM, cli._note_stop)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in SERVICES:
        signal.signal(signal.SIGTERM, previous)
    try:
        code = args.func(args)
    except SundialError as exc:
        print(f"sundial: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
