"""What every command line shares: exit codes, --version and the program name.

Each CLI's ``run()`` (the console script, and what ``python -m PKG`` calls) is
``run_main(main)``, so ``lowlight-export`` and ``python -m export`` exit with the same codes:
0 ok, 1 a check failed, 2 bad usage or a missing requirement, 130 interrupted.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lowlight_edge import DISTRIBUTION, version
from lowlight_edge.errors import LowlightError

PACKAGES = ("lowlight_edge", "export", "quantize", "runtimes", "bench")
# The file-system refusals a user fixes (exit 2, one line); writes are atomic, so nothing half-written remains.
FILESYSTEM_ERRNOS = {
    errno.ENOSPC: "free some space or choose another --out",
    errno.EDQUOT: "free some space or choose another --out",
    errno.EFBIG: "the file is larger than this system allows; choose another --out",
    errno.EROFS: "the file system is read-only; choose another --out",
    errno.EACCES: "no permission; choose a folder you can write to",
    errno.EPERM: "no permission; choose a folder you can write to",
}


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
    except OSError as err:
        if err.errno not in FILESYSTEM_ERRNOS:
            raise
        where = f" {err.filename}" if err.filename else ""
        print(f"error: cannot write{where}: {err.strerror or err}; {FILESYSTEM_ERRNOS[err.errno]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was left behind", file=sys.stderr)
        return 130


def suggest(name: str, choices: Sequence[str]) -> str:
    """' (did you mean X?)' when a close choice exists, else ''."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def version_line() -> str:
    """What ``--version`` prints: ``lowlight-edge <version>``."""
    return f"{DISTRIBUTION} {version()}"


def prog(module: str) -> str:
    """The program name for usage lines: the console script's (lowlight-export) or ``python -m MODULE``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name.startswith("lowlight-") else f"python -m {module}"


class _VersionAction(argparse.Action):
    """``--version``: print version_line() and exit 0 (metadata is read only when asked)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace, values, option_string=None) -> None:
        print(version_line())
        parser.exit(0)


def parser_for(module: str, **kwargs) -> argparse.ArgumentParser:
    """An ArgumentParser named after how it was run, with --version."""
    parser = argparse.ArgumentParser(prog=prog(module), **kwargs)
    parser.add_argument("--version", action=_VersionAction, help="print the lowlight-edge version and exit")
    return parser
