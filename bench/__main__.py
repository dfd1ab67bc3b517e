import sys

from common.cli import run_main
from bench.cli import main

sys.exit(run_main(main))
