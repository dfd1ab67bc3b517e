import sys

from export.cli import run

sys.exit(run())
