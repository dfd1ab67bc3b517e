import sys

from common.cli import run_main
from export.cli import main

sys.exit(run_main(main))
