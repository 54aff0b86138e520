"""The `sundial` command.

Each service contributes its sub-commands through `<package>.commands.register(sub)`;
the heavy imports happen inside the command functions, so `sundial --help` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

from sundial.core.errors import SundialError
from sundial.core.health import SERVICES

COMMAND_MODULES = ("sundial.core.commands", "sundial.scheduler.commands", "sundial.worker.commands",
                   "sundial.api.commands")
# The long-running services: SIGTERM stops them with exit 0 at any moment, start-up
# included. Until sundial.core.runtime.serve takes the signal over it is only noted, by
# sundial._early (raising from a signal handler is lost when it lands inside an import's
# callback), and serve stops the service as soon as it starts (sundial.core.health.SERVICES).


class _Version(argparse.Action):
    """--version: the version is looked up only when asked for (importlib.metadata is slow
    to load, and every other command would pay for it)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS,
                 help: str = "show program's version number and exit") -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from sundial import __version__

        print(f"sundial {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sundial",
        description="Sundial: a database-driven job scheduler (PostgreSQL + RabbitMQ).")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        # Every service ships in the one package: a module that does not import is a broken
        # installation, said as such, never a sub-command that silently goes missing.
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise SundialError(f"cannot load the commands of {name}: {exc} "
                               "(reinstall sundial, or fix what the message names)") from exc
        module.register(sub)
    return parser


def run_async(main: Callable[..., object], *args: object) -> int:
    """Run a coroutine function; its return value (or 0) is the exit code."""
    import asyncio  # here, not at the top: SIGTERM is taken over sooner (see main)

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


def stop_requested() -> bool:
    """Whether SIGTERM arrived before the service's event loop took the signal over."""
    from sundial import _early

    return _early.requested


def main(argv: Sequence[str] | None = None) -> int:
    from sundial import _early

    previous = _early.install()  # already noting under `sundial` and `python -m sundial`
    try:
        parser = build_parser()
    except SundialError as exc:
        signal.signal(signal.SIGTERM, previous)
        print(f"sundial: {exc}", file=sys.stderr)
        return 2
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
