"""`python -m sundial` and the `sundial` command."""

import sys

from sundial import _early

_early.install()  # before the heavy imports: see sundial._early


def run() -> int:
    from sundial.core.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
