import sys

from common.cli import run_main
from quantize.cli import main

sys.exit(run_main(main))
