"""``python -m runtimes``: see runtimes/cli.py."""

import sys

from lowlight_edge.console import run_main
from runtimes import cli

sys.exit(run_main(cli.main))
