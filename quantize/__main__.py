import sys

from quantize.cli import run

sys.exit(run())
