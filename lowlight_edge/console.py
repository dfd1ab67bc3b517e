"""Runs a CLI main function and maps errors to the project's exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from lowlight_edge.errors import LowlightError

PACKAGES = ("lowlight_edge", "export", "quantize", "runtimes", "bench")


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Call ``main``; a user error prints one line and returns its exit code, Ctrl-C returns 130."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for package in PACKAGES:  # our own progress at INFO; third-party chatter stays at WARNING
        logging.getLogger(package).setLevel(logging.INFO)
    try:
        return main(argv)
    except LowlightError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was left behind", file=sys.stderr)
        return 130


def suggest(name: str, choices: Sequence[str]) -> str:
    """' (did you mean X?)' when a close choice exists, else ''."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
