import sys

from bench.cli import main
from common.cli import run_main

sys.exit(run_main(main))
