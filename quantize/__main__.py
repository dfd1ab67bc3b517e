import sys

from lowlight_edge.console import run_main
from quantize.cli import main

sys.exit(run_main(main))
