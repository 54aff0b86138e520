"""`python -m sundial`: the `sundial` command."""

import sys

from sundial.core.cli import main

sys.exit(main())
