import sys

from export.cli import main
from lowlight_edge.console import run_main

sys.exit(run_main(main))
