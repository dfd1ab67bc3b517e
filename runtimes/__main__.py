"""``python -m runtimes``: see runtimes/cli.py."""

import sys

from runtimes.cli import run

sys.exit(run())
